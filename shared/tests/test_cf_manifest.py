"""Every service's manifest, interpolated with each environment's vars, against the CF schema."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from aerie.cf.manifest import (
    SCHEMA_RELATIVE_PATH,
    ManifestError,
    interpolate,
    load_manifest,
    load_vars,
    manifest_vars,
    validate_manifest,
)
from aerie.cf.secrets import app_secret_vars, app_secrets, is_secret_var, secrets_service, secrets_vars

REPO = Path(__file__).resolve().parents[2]
SCHEMA = REPO / SCHEMA_RELATIVE_PATH
MANIFESTS = sorted((REPO / "services").glob("*/manifest.yml"))
ENVIRONMENTS = ("staging", "production")
RELEASE = {"version": "1.4.0", "commit": "0123abcd"}


@pytest.fixture(scope="module")
def secrets() -> dict[str, str]:
    return secrets_vars()


def _variables(environment: str, secrets: dict[str, str]) -> dict[str, object]:
    return {**load_vars([REPO / "manifests" / "vars" / f"{environment}.yml"]), **secrets, **RELEASE}


def test_every_service_has_a_manifest():
    names = {p.parent.name for p in MANIFESTS}
    assert {"tenants", "projects", "flags", "audit"} <= names


@pytest.mark.parametrize("environment", ENVIRONMENTS)
@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.parent.name)
def test_manifest_is_valid_after_interpolation(path, environment, secrets):
    manifest = interpolate(load_manifest(path), _variables(environment, secrets))
    validate_manifest(manifest, SCHEMA)
    (app,) = manifest["applications"]  # one app per manifest: only those can roll
    assert app["name"] == f"aerie-{path.parent.name}"
    assert isinstance(app["instances"], int) and app["instances"] >= 1


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.parent.name)
def test_manifest_runs_uwsgi_as_cloud_foundry_needs(path, secrets):
    (app,) = interpolate(load_manifest(path), _variables("staging", secrets))["applications"]
    assert app["command"] == "exec uwsgi --ini uwsgi.ini"
    assert app["memory"] == "128M"
    assert (app["health-check-type"], app["health-check-http-endpoint"]) == ("http", "/health")
    assert (app["readiness-health-check-type"], app["readiness-health-check-http-endpoint"]) == ("http", "/ready")
    assert app["services"] == ["aerie-redis", f"aerie-secrets-{path.parent.name}"]
    # The stage installs wheels built for cflinuxfs4's Python: another stack could not load them.
    assert app["stack"] == "cflinuxfs4"
    env = app["env"]
    assert env["VERSION"] == "1.4.0" and env["AERIE_COMMIT"] == "0123abcd"
    assert env["AERIE_REDIS_SERVICE"] == "aerie-redis"
    assert env["AERIE_TENANTS_URL"] == env["AERIE_ISSUER"] == "https://aerie-tenants.apps.staging.example.com"
    assert env["AERIE_JWKS_URL"].endswith("/.well-known/jwks.json")
    assert all(isinstance(v, str) for v in env.values()), "env values reach the app as strings"
    for value in secrets.values():
        assert value not in env.values(), "`cf env` would show it"


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.parent.name)
def test_manifest_carries_no_secret_and_binds_the_apps_secrets_service(path):
    manifest = yaml.safe_load(path.read_text())
    assert not [n for n in manifest_vars(manifest) if is_secret_var(n)], "a secret ((var)) would land in `cf env`"
    (app,) = manifest["applications"]
    assert not set(app_secret_vars(path.parent.name)) & set(app["env"]), "set by the bound secrets service"
    assert secrets_service(path.parent.name) in app["services"]


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.parent.name)
def test_each_apps_secrets_are_in_the_secrets_file_and_only_its_own(path, secrets):
    service = path.parent.name
    expected = (
        {"signing_keys", "bootstrap_client_id", "bootstrap_client_secret", "service_clients"}
        if service == "tenants"
        else {f"{service}_client_id", f"{service}_client_secret"}
    )
    assert set(app_secret_vars(service).values()) == expected
    assert expected <= secrets.keys()
    assert all(is_secret_var(n) for n in expected)
    held = app_secrets(service, secrets)
    assert all(isinstance(v, str) and v for v in held.values())


@pytest.mark.parametrize("environment", ENVIRONMENTS)
def test_vars_files_hold_no_secrets(environment):
    variables = load_vars([REPO / "manifests" / "vars" / f"{environment}.yml"])
    assert not [n for n in variables if is_secret_var(n) or "secret" in n or "password" in n]
    used = set().union(*(manifest_vars(load_manifest(p)) for p in MANIFESTS))
    public_needed = {n for n in used if not is_secret_var(n)} - set(RELEASE)
    assert public_needed <= variables.keys(), f"missing in {environment}.yml: {public_needed - variables.keys()}"


def test_whole_value_var_keeps_its_type_and_spliced_var_is_text():
    out = interpolate(
        {"instances": "((n))", "route": "app.((domain))", "flag": "on=((b))"}, {"n": 3, "domain": "x.io", "b": True}
    )
    assert out == {"instances": 3, "route": "app.x.io", "flag": "on=true"}


def test_dotted_var_reads_into_a_mapping():
    assert interpolate({"a": "((db.host))"}, {"db": {"host": "h"}}) == {"a": "h"}


def test_every_missing_var_is_named():
    with pytest.raises(ManifestError) as caught:
        interpolate({"a": ["((one))", {"b": "x-((two))"}], "c": "((three))"}, {"three": 1})
    assert str(caught.value) == "no value for ((one)), ((two))"


def test_structure_inside_a_string_is_rejected():
    with pytest.raises(ManifestError, match=r"\(\(m\)\) holds a structure"):
        interpolate({"a": "x-((m))"}, {"m": {"k": 1}})


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"instances": "2"}, "instances: '2' is not of type 'integer'"),
        ({"health_check_type": "http"}, "Additional properties are not allowed"),
        ({"health-check-type": "tcp"}, "health-check-type: 'tcp' is not one of"),
    ],
)
def test_schema_rejects_what_cf_push_would(change, message, secrets):
    manifest = interpolate(
        load_manifest(REPO / "services" / "tenants" / "manifest.yml"), _variables("staging", secrets)
    )
    manifest["applications"][0].update(change)
    with pytest.raises(ManifestError, match=re.escape(message)):
        validate_manifest(manifest, SCHEMA)


def test_broken_yaml_names_the_file(tmp_path):
    bad = tmp_path / "manifest.yml"
    bad.write_text("applications: [\n")
    with pytest.raises(ManifestError, match=str(bad)):
        load_manifest(bad)
