"""Redis must not evict, must persist, and when full refuses writes with a 503 the client can retry.

Real uWSGI services against redis-server processes configured as a cache plan would
configure them (``allkeys-lru``, no persistence) and one at its ``maxmemory`` under
``noeviction``.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import requests
from conftest import REPO, Http, service_env, tenants_env

from aerie.local.redis_server import RedisServer, free_port
from aerie.testing.http import basic_auth
from aerie.testing.keys import TestKey
from aerie.testing.process import UwsgiService

PROBLEM_JSON = "application/problem+json"


def start_tenants(server: RedisServer, key: TestKey, log: Path, *, wait_ready: bool = True) -> UwsgiService:
    port = free_port()
    service = UwsgiService(REPO / "services" / "tenants", port, tenants_env(server, key, port), log_path=log)
    return service.start(ready_path="/ready" if wait_ready else "/health")


def log_count(service: UwsgiService, text: str) -> int:
    return service.log_path.read_text(errors="replace").count(text)


# -- /ready refuses a Redis that evicts or forgets ------------------------------------------------


@pytest.mark.parametrize(
    ("options", "reason"),
    [
        ({"maxmemory_policy": "allkeys-lru"}, "maxmemory-policy is allkeys-lru"),
        ({"appendonly": False, "save": ""}, "no persistence"),
    ],
    ids=["allkeys-lru", "no-persistence"],
)
def test_ready_fails_with_the_reason_and_logs_it_once(
    tmp_path: Path, signing_key: TestKey, options: dict[str, Any], reason: str
) -> None:
    server = RedisServer(tmp_path / "redis", password="unsafe-pass", **options).start()
    service = start_tenants(server, signing_key, tmp_path / "tenants.log", wait_ready=False)
    try:
        probes = 20
        for _ in range(probes):
            r = requests.get(f"{service.url}/ready", timeout=5)
            assert r.status_code == 503 and r.headers["Retry-After"]
            assert r.json()["failed"] == ["redis"] and reason in r.json()["details"]["redis"]
        # One line per worker that answered a probe (two workers), not one per probe.
        assert 1 <= log_count(service, "readiness check failed") <= 2
    finally:
        service.stop()
        server.stop()


def test_a_probe_costs_one_ping_and_the_configuration_is_read_once_per_interval(
    tmp_path: Path, signing_key: TestKey
) -> None:
    server = RedisServer(tmp_path / "redis", password="probe-pass").start()
    service = start_tenants(server, signing_key, tmp_path / "tenants.log")
    control = redis.Redis.from_url(server.url, decode_responses=True)
    try:
        control.config_resetstat()
        probes = 40
        for _ in range(probes):
            assert requests.get(f"{service.url}/ready", timeout=5).status_code == 200
        stats = control.info("commandstats")
        # Counted so far: this test's CONFIG RESETSTAT, not yet the INFO that reads them.
        config = int(stats.get("cmdstat_config", {}).get("calls", 0)) - 1
        info = int(stats.get("cmdstat_info", {}).get("calls", 0))
        pings = int(stats.get("cmdstat_ping", {}).get("calls", 0))
        print(f"\n{probes} probes: {pings} PING, {config} CONFIG GET, {info} INFO")
        # Each worker read the configuration at most once (3 CONFIG GETs in one round trip),
        # well inside the 30 s interval: the probes' cost is their PING.
        assert config <= 2 * 3 and info == 0
        assert probes <= pings <= probes + 4
    finally:
        service.stop()
        server.stop()


# -- a full Redis: 503 with Retry-After, nothing half-written --------------------------------------


class FullStack:
    def __init__(self, server: RedisServer, tenants: UwsgiService, projects: UwsgiService, flags: UwsgiService) -> None:
        self.server = server
        self.tenants = tenants
        self.projects = projects
        self.flags = flags
        self.control = redis.Redis.from_url(server.url, decode_responses=True)

    def fill(self) -> None:
        """Redis past its ``maxmemory`` (noeviction): every write that may grow memory is refused."""
        used = int(self.control.info("memory")["used_memory"])
        self.control.config_set("maxmemory", used // 2)

    def drain(self) -> None:
        self.control.config_set("maxmemory", 0)

    def snapshot(self) -> dict[str, bytes | None]:
        """Every key's serialized value, streams aside (consumers acknowledge under OOM: XACK frees)."""
        raw = redis.Redis.from_url(self.server.url)
        return {
            k.decode(): raw.dump(k)  # type: ignore[misc]
            for k in raw.scan_iter(count=1000)
            if raw.type(k) != b"stream"
        }


@pytest.fixture(scope="module")
def full_stack(tmp_path_factory: pytest.TempPathFactory, signing_key: TestKey) -> Iterator[FullStack]:
    base = tmp_path_factory.mktemp("redis-full")
    server = RedisServer(base / "redis", password="full-pass").start()
    started: list[UwsgiService] = []
    try:
        tenants = start_tenants(server, signing_key, base / "tenants.log")
        started.append(tenants)
        for name in ("projects", "flags"):
            service = UwsgiService(
                REPO / "services" / name, free_port(), service_env(server, tenants.url), log_path=base / f"{name}.log"
            )
            started.append(service.start())
        yield FullStack(server, *started)
    finally:
        for service in reversed(started):
            service.stop()
        server.stop()


def new_client(http: Http) -> tuple[str, str, dict[str, str]]:
    admin = http.bearer()
    r = http.request("POST", "/v1/tenants", json={"slug": f"f-{uuid.uuid4().hex[:12]}", "name": "F"}, headers=admin)
    assert r.status_code == 201, r.text
    scopes = ["projects:read", "projects:write", "flags:read", "flags:write"]
    r = http.request(
        "POST", f"/v1/tenants/{r.json()['id']}/clients", json={"name": "app", "scopes": scopes}, headers=admin
    )
    assert r.status_code == 201, r.text
    client_id, secret = r.json()["client_id"], r.json()["client_secret"]
    return client_id, secret, http.bearer(http.token(client_id, secret))


def assert_retry_later(r: requests.Response) -> None:
    assert r.status_code == 503, r.text
    assert int(r.headers["Retry-After"]) >= 1


def test_writes_to_a_full_redis_answer_503_with_retry_after_and_leave_nothing(full_stack: FullStack) -> None:
    stack = full_stack
    http = Http(stack.tenants.url)
    client_id, secret, headers = new_client(http)
    admin = http.bearer()  # flag definitions are the platform's
    key = f"f-{uuid.uuid4().hex[:8]}"
    assert requests.put(f"{stack.flags.url}/v1/flags/{key}-ok", json={"default": True}, headers=admin, timeout=5).ok
    before = stack.snapshot()
    stack.fill()
    try:
        r = requests.post(f"{stack.projects.url}/v1/projects", json={"name": "Refused"}, headers=headers, timeout=5)
        assert_retry_later(r)
        assert r.headers["Content-Type"].startswith(PROBLEM_JSON) and r.json()["code"] == "unavailable"

        r = requests.put(f"{stack.flags.url}/v1/flags/{key}", json={"default": False}, headers=admin, timeout=5)
        assert_retry_later(r)
        assert r.headers["Content-Type"].startswith(PROBLEM_JSON)

        r = requests.post(
            f"{stack.tenants.url}/v1/oauth/token",
            data={"grant_type": "client_credentials"},
            headers={"Authorization": basic_auth(client_id, secret)},
            timeout=5,
        )
        assert_retry_later(r)
        assert r.json()["error"] == "temporarily_unavailable" and "access_token" not in r.json()

        slug = f"refused-{uuid.uuid4().hex[:8]}"
        r = requests.post(f"{stack.tenants.url}/v1/tenants", json={"slug": slug, "name": "R"}, headers=admin, timeout=5)
        assert_retry_later(r)

        assert stack.snapshot() == before, "a refused write left something behind"
        assert log_count(stack.projects, "redis is full: write refused") == 1
        assert log_count(stack.flags, "redis is full: write refused") == 1
        # Full is not misconfigured: the instances stay ready, reads go on.
        for service in (stack.tenants, stack.projects, stack.flags):
            assert requests.get(f"{service.url}/ready", timeout=5).status_code == 200
        r = requests.get(f"{stack.flags.url}/v1/flags/{key}-ok", headers=admin, timeout=5)
        assert r.status_code == 200
    finally:
        stack.drain()
    names = [
        p["name"] for p in requests.get(f"{stack.projects.url}/v1/projects", headers=headers, timeout=5).json()["items"]
    ]
    assert "Refused" not in names
    assert requests.get(f"{stack.flags.url}/v1/flags/{key}", headers=admin, timeout=5).status_code == 404
    # Once memory is there again, the same writes succeed.
    r = requests.post(f"{stack.projects.url}/v1/projects", json={"name": "Accepted"}, headers=headers, timeout=5)
    assert r.status_code == 201, r.text
    assert requests.put(f"{stack.flags.url}/v1/flags/{key}", json={"default": False}, headers=admin, timeout=5).ok
    assert http.token(client_id, secret)
