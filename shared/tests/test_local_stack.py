"""The local stack: secrets made once, ``local.env``, the Cloud Foundry-shaped service env, start/stop."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import sys
from pathlib import Path

import jwt
import pytest
import requests

import aerie
from aerie.config import Settings
from aerie.local import secrets as local_secrets
from aerie.local.redis_server import free_port
from aerie.local.stack import LocalStack, StackError, discover_services, resolve_ports

BASE_INI = Path(aerie.__file__).resolve().parents[1] / "uwsgi" / "base.ini"

DUMMY_APP = """
import json, os

if os.environ.get("BREAK_ON_IMPORT"):
    raise RuntimeError("this service is broken on purpose")

SHOWN = ["PORT", "CF_INSTANCE_INDEX", "VCAP_SERVICES", "VCAP_APPLICATION", "AERIE_CLIENT_ID", "AERIE_ISSUER"]

def application(environ, start_response):
    body = json.dumps({k: os.environ.get(k) for k in SHOWN}).encode()
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]
"""


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def read_env_file(path: Path) -> dict[str, str]:
    return dict(line.split("=", 1) for line in path.read_text().splitlines() if line)


def make_repo(root: Path, services: dict[str, str | None]) -> Path:
    """A repository with ``services/<name>/``; a value is that service's uwsgi.ini (None: no ini)."""
    for name, ini in services.items():
        folder = root / "services" / name
        folder.mkdir(parents=True)
        if ini is not None:
            (folder / "uwsgi.ini").write_text(ini)
            (folder / "app.py").write_text(DUMMY_APP)
    return root


def dummy_ini() -> str:
    # The real production settings, so the test also proves graceful SIGTERM with them.
    return f"[uwsgi]\nwsgi-file = app.py\nini = {BASE_INI}\nprocesses = 1\nthreads = 2\n"


# Secrets ---------------------------------------------------------------------------------


def test_secrets_are_made_once_private_and_reused(tmp_path):
    path = tmp_path / ".aerie" / "secrets.json"
    first = local_secrets.load_or_create(path)
    assert mode(path) == 0o600
    again = local_secrets.load_or_create(path)
    assert again == first
    assert first.bootstrap_client_id == "aerie-bootstrap"
    assert len(first.bootstrap_client_secret) >= 43  # 32 random bytes, URL-safe base64
    assert first.redis_password != first.bootstrap_client_secret
    assert set(first.service_clients) == {"projects", "flags", "audit", "console"}
    for name, client in first.service_clients.items():
        assert client.client_id == f"svc-{name}"
        if name == "console":
            # It only exchanges people's sign-ins: it can mint no token of its own.
            assert (client.scopes, client.grants) == (("platform:admin",), ("token-exchange",))
        else:
            assert (client.scopes, client.grants) == (("platform:read", "audit:write"), ("client_credentials",))
    assert len({c.secret for c in first.service_clients.values()}) == 4


def test_signing_key_is_a_private_rs256_jwk_set_that_signs(tmp_path):
    keys = local_secrets.load_or_create(tmp_path / "secrets.json").signing_keys
    (jwk,) = keys["keys"]
    assert jwk["kty"] == "RSA" and jwk["alg"] == "RS256" and jwk["use"] == "sig" and jwk["kid"]
    assert "d" in jwk
    private = jwt.PyJWK(jwk)
    assert private.key.key_size == 2048
    token = jwt.encode({"sub": "x"}, private.key, algorithm="RS256", headers={"kid": jwk["kid"]})
    public = jwt.PyJWK({k: v for k, v in jwk.items() if k not in {"d", "p", "q", "dp", "dq", "qi"}})
    assert jwt.decode(token, public.key, algorithms=["RS256"]) == {"sub": "x"}


def test_a_new_service_gets_a_client_and_nothing_else_changes(tmp_path):
    path = tmp_path / "secrets.json"
    before = local_secrets.load_or_create(path)
    after = local_secrets.load_or_create(path, ["projects", "flags", "audit", "billing"])
    assert after.service_clients["billing"].client_id == "svc-billing"
    assert after.signing_keys == before.signing_keys
    assert after.bootstrap_client_secret == before.bootstrap_client_secret
    assert after.service_clients["projects"] == before.service_clients["projects"]
    assert local_secrets.load_or_create(path) == after
    assert mode(path) == 0o600


def test_an_unusable_secrets_file_is_reported_not_replaced(tmp_path):
    path = tmp_path / "secrets.json"
    path.write_text('{"signing_keys": {}}')
    with pytest.raises(RuntimeError, match="make clean"):
        local_secrets.load_or_create(path)
    assert path.read_text() == '{"signing_keys": {}}'


# local.env and the services' environment -------------------------------------------------


def test_local_env_names_every_service_and_the_bootstrap_client(tmp_path):
    stack = LocalStack(make_repo(tmp_path, {}), tmp_path / ".aerie")
    path = stack.write_env_file()
    assert path == tmp_path / ".aerie" / "local.env"
    assert mode(path) == 0o600
    assert mode(tmp_path / ".aerie") == 0o700
    env = read_env_file(path)
    s = stack.secrets
    assert env == {
        "AERIE_TENANTS_URL": "http://127.0.0.1:8081",
        "AERIE_PROJECTS_URL": "http://127.0.0.1:8082",
        "AERIE_FLAGS_URL": "http://127.0.0.1:8083",
        "AERIE_AUDIT_URL": "http://127.0.0.1:8084",
        "AERIE_CONSOLE_URL": "http://127.0.0.1:8085",
        "AERIE_BOOTSTRAP_CLIENT_ID": "aerie-bootstrap",
        "AERIE_BOOTSTRAP_CLIENT_SECRET": s.bootstrap_client_secret,
        "REDIS_URL": f"redis://:{s.redis_password}@127.0.0.1:6380/0",
        "AERIE_DEV_IDP_URL": "http://127.0.0.1:9400",
    }
    assert env == stack.env()


def test_tenants_trusts_the_dev_provider_beside_the_callers_own(tmp_path, monkeypatch):
    own = [{"issuer": "https://login.example.com", "audience": "aerie"}]
    monkeypatch.setenv("AERIE_IDENTITY_PROVIDERS", json.dumps(own))
    stack = LocalStack(make_repo(tmp_path, {}), tmp_path / ".aerie", services=["tenants"], idp_port=9499)
    env = stack.service_env("tenants")
    assert json.loads(env["AERIE_IDENTITY_PROVIDERS"]) == [
        *own,
        {"issuer": "http://127.0.0.1:9499", "audience": "aerie-local"},
    ]
    assert env["AERIE_BOOTSTRAP_ADMIN_EMAIL"] == "admin@example.com"
    monkeypatch.delenv("AERIE_IDENTITY_PROVIDERS")
    providers = json.loads(stack.service_env("tenants")["AERIE_IDENTITY_PROVIDERS"])
    assert providers == [{"issuer": "http://127.0.0.1:9499", "audience": "aerie-local"}]


def test_tenants_env_parses_as_cloud_foundry_would_give_it(tmp_path):
    stack = LocalStack(make_repo(tmp_path, {}), tmp_path / ".aerie", services=["tenants"], redis_port=6391)
    env = stack.service_env("tenants")
    settings = Settings.from_env("tenants", env)
    assert settings.redis.url == f"redis://:{stack.secrets.redis_password}@127.0.0.1:6391/0"
    assert settings.port == 8081 and settings.instance_index == 0
    assert settings.issuer == settings.tenants_url == "http://127.0.0.1:8081"
    assert settings.version and settings.commit
    assert json.loads(env["VCAP_APPLICATION"])["application_name"] == "tenants"
    assert json.loads(env["AERIE_SIGNING_KEYS"]) == stack.secrets.signing_keys
    assert env["AERIE_BOOTSTRAP_CLIENT_SECRET"] == stack.secrets.bootstrap_client_secret
    service_clients = {c["client_id"]: c for c in json.loads(env["AERIE_SERVICE_CLIENTS"])}
    projects = stack.secrets.service_clients["projects"]
    assert service_clients["svc-projects"] == {
        "client_id": "svc-projects",
        "secret_sha256": hashlib.sha256(projects.secret.encode()).hexdigest(),
        "scopes": ["platform:read", "audit:write"],
    }
    assert "AERIE_CLIENT_SECRET" not in env


def test_other_services_get_their_own_client_and_no_issuer_secrets(tmp_path):
    stack = LocalStack(make_repo(tmp_path, {}), tmp_path / ".aerie", services=["tenants", "flags"])
    env = stack.service_env("flags")
    settings = Settings.from_env("flags", env)
    assert settings.client_id == "svc-flags"
    assert settings.client_secret == stack.secrets.service_clients["flags"].secret
    assert settings.jwks_url == "http://127.0.0.1:8081/.well-known/jwks.json"
    assert settings.port == 8083
    assert not {"AERIE_SIGNING_KEYS", "AERIE_BOOTSTRAP_CLIENT_SECRET", "AERIE_SERVICE_CLIENTS"} & set(env)


def test_services_are_found_by_uwsgi_ini_in_start_order(tmp_path):
    repo = make_repo(tmp_path, {"audit": "", "zeta": "", "flags": "", "tenants": "", "projects": None})
    assert discover_services(repo) == ["tenants", "flags", "audit", "zeta"]


def test_ports_flags_beat_env_and_specific_beats_base():
    env = {"AERIE_FLAGS_PORT": "9003", "AERIE_AUDIT_PORT": "9004"}
    assert resolve_ports([], environ=env) == {
        "tenants": 8081,
        "projects": 8082,
        "flags": 9003,
        "audit": 9004,
        "console": 8085,
    }
    ports = resolve_ports(["zeta"], base_port=7000, overrides={"audit": 7777}, environ=env)
    assert ports == {"tenants": 7000, "projects": 7001, "flags": 7002, "audit": 7777, "console": 7004, "zeta": 7005}
    with pytest.raises(StackError, match="AERIE_TENANTS_PORT"):
        resolve_ports([], environ={"AERIE_TENANTS_PORT": "eighty"})


def test_a_second_stack_on_the_same_state_directory_is_refused(tmp_path):
    state = tmp_path / ".aerie"
    state.mkdir()
    (state / "stack.pid").write_text(f"{os.getppid()}\n")  # a live process that is not this one
    stack = LocalStack(make_repo(tmp_path / "repo", {}), state, redis_port=free_port())
    with pytest.raises(StackError, match="another stack"):
        stack.start()
    assert (state / "stack.pid").read_text().strip() == str(os.getppid())


# Starting and stopping for real ------------------------------------------------------------

needs_uwsgi = pytest.mark.skipif(
    not (Path(sys.executable).parent / "uwsgi").exists() and shutil.which("uwsgi") is None,
    reason="pyuwsgi is not installed (pip install -e 'shared[local]')",
)


@needs_uwsgi
@pytest.mark.timeout(60)
def test_stack_starts_a_service_under_uwsgi_and_stops_it_gracefully(tmp_path):
    repo = make_repo(tmp_path / "repo", {"dummy": dummy_ini()})
    with LocalStack.isolated(repo, tmp_path / "state", ready_timeout=30) as stack:
        assert stack.services == ["dummy"]
        url = stack.url("dummy")
        resp = requests.get(url + "/ready", timeout=5)
        assert resp.status_code == 200
        seen = resp.json()
        assert seen["PORT"] == str(stack.ports["dummy"])
        assert seen["AERIE_CLIENT_ID"] == "svc-dummy"
        assert json.loads(seen["VCAP_SERVICES"])["p.redis"][0]["credentials"]["port"] == stack.redis_port
        assert read_env_file(tmp_path / "state" / "local.env") == stack.env()
        discovery = requests.get(stack.idp_url + "/.well-known/openid-configuration", timeout=5).json()
        assert discovery["issuer"] == stack.env()["AERIE_DEV_IDP_URL"] == stack.idp_url
        running = list(stack._running)
        redis = stack._redis
        idp = stack._idp
        assert idp is not None and idp.process is not None
        idp_process = idp.process
    assert all(svc.process.returncode == 0 for svc in running)  # uWSGI's graceful exit, not a kill
    assert redis is not None and redis.process is not None and redis.process.poll() is not None
    assert idp_process.poll() is not None and stack._idp is None
    assert (tmp_path / "state" / "logs" / "dev-idp.log").exists()
    assert not (tmp_path / "state" / "stack.pid").exists()
    assert "goodbye to uWSGI" in (tmp_path / "state" / "logs" / "dummy.log").read_text()


@needs_uwsgi
@pytest.mark.timeout(60)
def test_a_service_that_cannot_start_fails_the_stack_with_its_log(tmp_path):
    repo = make_repo(tmp_path / "repo", {"dummy": dummy_ini()})
    stack = LocalStack.isolated(repo, tmp_path / "state", ready_timeout=30, extra_env={"BREAK_ON_IMPORT": "1"})
    with pytest.raises(StackError, match=r"(?s)dummy exited .*broken on purpose"):
        stack.start()
    assert stack._running == [] and stack._redis is None and stack._idp is None
    assert not (tmp_path / "state" / "local.env").exists()


def test_the_banner_says_how_to_sign_the_sample_people_in(tmp_path):
    from aerie.local.cli import _banner

    repo = make_repo(tmp_path / "repo", {})
    at_home = _banner(LocalStack(repo, repo / ".aerie", services=[], idp_port=9401), 1.0)
    assert "  .venv/bin/python -m aerie.local.sign_in admin@example.com" in at_home
    assert "aerie.local.sign_in alice@example.com" in at_home
    assert "http://127.0.0.1:9401" in at_home
    elsewhere = _banner(LocalStack(repo, tmp_path / "state", services=[], idp_port=9401), 1.0)
    told = "AERIE_DEV_IDP_URL=http://127.0.0.1:9401 .venv/bin/python -m aerie.local.sign_in"
    assert f"{told} admin@example.com" in elsewhere
