"""Service tests: each service as a real uWSGI process, over HTTP, with a real Redis."""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import requests

from aerie.config import RedisSettings
from aerie.keyspace import Keyspace
from aerie.local.dev_idp import AUDIENCE, DevIdentityProvider
from aerie.local.redis_cluster import RedisCluster
from aerie.local.redis_server import RedisServer, free_port
from aerie.local.stack import LocalStack
from aerie.redis import RedisProvider
from aerie.testing.browser import chromium
from aerie.testing.http import basic_auth
from aerie.testing.keys import TestKey
from aerie.testing.process import UwsgiService
from aerie.testing.rate_limits import NO_RATE_LIMITS

REPO = Path(__file__).resolve().parents[1]
BOOT_ID = "aerie-bootstrap"
BOOT_SECRET = "service-test-bootstrap-secret-0123456789abcdef"
SVC_ID, SVC_SECRET = "svc-projects", "service-test-projects-secret-0123456789abcdef"


#: ``AERIE_SERVICE_TESTS_REDIS_CLUSTER=1`` (tox -e cluster): the services of the tests that reach
#: Redis only through them run on a local Redis Cluster instead of one Redis.
ON_CLUSTER = os.environ.get("AERIE_SERVICE_TESTS_REDIS_CLUSTER") == "1"
#: The services' key layout on this run (``aerie.keyspace``): sharded, as they shard it, on a cluster.
KEYSPACE = Keyspace(16 if ON_CLUSTER else 0)
#: For a test that restarts or reconfigures the one Redis itself (a cluster's failover has its own test).
single_redis_only = pytest.mark.skipif(
    ON_CLUSTER, reason="restarts the one Redis; test_redis_cluster.py fails a cluster over"
)


def redis_provider(server: RedisServer | RedisCluster) -> RedisProvider:
    """A :class:`RedisProvider` of the session's Redis, as the services configure theirs."""
    if isinstance(server, RedisCluster):
        return RedisProvider(RedisSettings(url=server.url, cluster=True, shards=KEYSPACE.count))
    return RedisProvider(RedisSettings(url=server.url))


def redis_client(server: RedisServer | RedisCluster, *, decode: bool = True) -> redis.Redis:
    """A test's own client of the session's Redis: a ``RedisCluster`` on a cluster run."""
    if isinstance(server, RedisCluster):
        return redis.RedisCluster(  # type: ignore[return-value]
            host="127.0.0.1", port=server.ports[0], password=server.password, decode_responses=decode
        )
    return redis.Redis.from_url(server.url, decode_responses=decode)


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """One Redis (a :class:`RedisServer`) or, on a cluster run, the cluster (its ``port`` a seed)."""
    if ON_CLUSTER:
        cluster = RedisCluster(tmp_path_factory.mktemp("redis-cluster"), password="svc-test-pass").start()
        yield cluster
        cluster.stop()
        return
    # appendfsync always: a test that restarts Redis must not lose an acknowledged write.
    server = RedisServer(tmp_path_factory.mktemp("redis"), appendfsync="always", password="svc-test-pass")
    server.start()
    yield server
    server.stop()


def _port(server: RedisServer | RedisCluster) -> int:
    return server.ports[0] if isinstance(server, RedisCluster) else server.port


@pytest.fixture(scope="session")
def signing_key() -> TestKey:
    return TestKey("svc-k1")


def vcap_services(server: RedisServer | RedisCluster) -> str:
    """A p.redis binding of ``server``; a cluster's is tagged ``cluster``, as a cluster plan's is."""
    binding = {
        "name": "aerie-redis",
        "label": "p.redis",
        "tags": ["redis", "cluster"] if isinstance(server, RedisCluster) else ["redis"],
        "plan": "test",
        "credentials": {"host": "127.0.0.1", "port": _port(server), "password": server.password},
    }
    return json.dumps({"p.redis": [binding]})


def redis_env(server: RedisServer | RedisCluster) -> dict[str, str]:
    env = {"VCAP_SERVICES": vcap_services(server)}
    if isinstance(server, RedisCluster):
        env["AERIE_REDIS_SEEDS"] = ",".join(f"127.0.0.1:{port}" for port in server.ports)
    return env


def service_env(server: RedisServer, tenants_url: str, **extra: str) -> dict[str, str]:
    """What every service but tenants starts with: Redis, the issuer, its own client."""
    return {
        **redis_env(server),
        "AERIE_TENANTS_URL": tenants_url,
        "AERIE_CLIENT_ID": SVC_ID,
        "AERIE_CLIENT_SECRET": SVC_SECRET,
        **NO_RATE_LIMITS,
        **extra,
    }


def tenants_env(server: RedisServer, key: TestKey, port: int, idp_url: str | None = None) -> dict[str, str]:
    url = f"http://127.0.0.1:{port}"
    trusted = [{"issuer": idp_url, "audience": AUDIENCE}] if idp_url else []
    return {
        "AERIE_IDENTITY_PROVIDERS": json.dumps(trusted),
        "AERIE_BOOTSTRAP_ADMIN_EMAIL": "admin@example.com",
        **redis_env(server),
        "AERIE_TENANTS_URL": url,
        "AERIE_ISSUER": url,
        "AERIE_SIGNING_KEYS": json.dumps(key.private_jwks()),
        "AERIE_BOOTSTRAP_CLIENT_ID": BOOT_ID,
        "AERIE_BOOTSTRAP_CLIENT_SECRET": BOOT_SECRET,
        **NO_RATE_LIMITS,
        "AERIE_SERVICE_CLIENTS": json.dumps(
            [
                {
                    "client_id": SVC_ID,
                    "secret_sha256": hashlib.sha256(SVC_SECRET.encode()).hexdigest(),
                    "scopes": ["platform:read", "audit:write"],
                }
            ]
        ),
    }


def start_service(name: str, server: RedisServer, tenants_url: str, log_dir: Path, **extra: str) -> UwsgiService:
    """One instance of ``services/<name>`` under uWSGI beside the tenants service, started and ready."""
    env = service_env(server, tenants_url, **extra)
    service = UwsgiService(REPO / "services" / name, free_port(), env, log_path=log_dir / f"{name}.log")
    service.start()
    return service


def tenant_with_token(http: Http, scopes: list[str]) -> tuple[dict, str]:
    """A fresh tenant from the real tenants service, and a token of a new client of it with ``scopes``."""
    admin = http.bearer()
    r = http.request("POST", "/v1/tenants", json={"slug": f"t-{uuid.uuid4().hex[:12]}", "name": "T"}, headers=admin)
    assert r.status_code == 201, r.text
    tenant = r.json()
    body = {"name": "app", "scopes": scopes}
    r = http.request("POST", f"/v1/tenants/{tenant['id']}/clients", json=body, headers=admin)
    assert r.status_code == 201, r.text
    return tenant, http.token(r.json()["client_id"], r.json()["client_secret"])


@pytest.fixture(scope="session")
def dev_idp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The local stack's development OpenID Connect provider, as a real process; its issuer URL."""
    provider = DevIdentityProvider(free_port(), tmp_path_factory.mktemp("idp") / "dev-idp.log")
    provider.start()
    yield provider.url
    provider.stop()


@pytest.fixture(scope="session")
def tenants(
    redis_server: RedisServer, signing_key: TestKey, tmp_path_factory: pytest.TempPathFactory, dev_idp: str
) -> Iterator[UwsgiService]:
    port = free_port()
    service = UwsgiService(
        REPO / "services" / "tenants",
        port,
        tenants_env(redis_server, signing_key, port, dev_idp),
        log_path=tmp_path_factory.mktemp("logs") / "tenants.log",
    )
    service.start()
    yield service
    service.stop()


class Http:
    """A requests session against one service, with token helpers."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.s = requests.Session()

    def token(self, client_id: str = BOOT_ID, secret: str = BOOT_SECRET, **form: str) -> str:
        r = self.s.post(
            f"{self.base}/v1/oauth/token",
            data={"grant_type": "client_credentials", **form},
            headers={"Authorization": basic_auth(client_id, secret)},
            timeout=5,
        )
        assert r.status_code == 200, r.text
        return r.json()["access_token"]

    def bearer(self, token: str | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {token or self.token()}"}

    def request(self, method: str, path: str, **kw: object) -> requests.Response:
        kw.setdefault("timeout", 5)
        return self.s.request(method, f"{self.base}{path}", **kw)  # type: ignore[arg-type]


@pytest.fixture
def http(tenants: UwsgiService) -> Http:
    return Http(tenants.url)


# --- the browser tier (service_tests/browser) ---------------------------------------------


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    """The console journeys' one stack for the tier: each names what it makes uniquely, so
    none sees another's (test_faults.py has a ``stack`` of its own)."""
    with LocalStack.isolated(REPO, tmp_path_factory.mktemp("console-stack"), ready_timeout=120) as running:
        yield running


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Headless Chromium for one module's journeys."""
    driver = chromium()
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()
