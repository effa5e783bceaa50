"""The flags service under uWSGI: two instances on one Redis beside the real tenants service.

Measures how fast a change made through one instance reaches the other (the contract: within
100 ms), and shows tenant attributes from the tenants service deciding a ``tenant.created_at``
rule, kept current by ``tenant.*`` events.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests
from conftest import REPO, Http, service_env

from aerie.local.redis_server import RedisServer, free_port
from aerie.testing.memory import tree_memory
from aerie.testing.polling import wait_for
from aerie.testing.process import UwsgiService

pytestmark = pytest.mark.flags

#: Requests in a row that must all show a change before it counts as seen: each lands on
#: either of an instance's two workers, and every worker keeps its own snapshot.
CONFIRMATIONS = 4


def flags_env(server: RedisServer, tenants_url: str, index: int) -> dict[str, str]:
    return service_env(server, tenants_url, CF_INSTANCE_INDEX=str(index))


@pytest.fixture(scope="module")
def flags_pair(
    redis_server: RedisServer, tenants: UwsgiService, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[UwsgiService, UwsgiService]]:
    """Two instances of flags, as ``cf scale -i 2`` would run them: same Redis, own processes."""
    logs: Path = tmp_path_factory.mktemp("logs")
    pair = [
        UwsgiService(
            REPO / "services" / "flags",
            free_port(),
            flags_env(redis_server, tenants.url, index),
            log_path=logs / f"flags-{index}.log",
        )
        for index in (0, 1)
    ]
    try:
        for service in pair:
            service.start()
        yield pair[0], pair[1]
    finally:
        for service in pair:
            service.stop()


@pytest.fixture
def http(tenants: UwsgiService) -> Http:
    return Http(tenants.url)


def new_tenant(http: Http, **fields: str) -> tuple[dict, dict[str, str]]:
    """A fresh tenant and the headers of a flags client of it, from the real tenants service."""
    admin = http.bearer()
    body = {"slug": f"f-{uuid.uuid4().hex[:12]}", "name": "F", **fields}
    r = http.request("POST", "/v1/tenants", json=body, headers=admin)
    assert r.status_code == 201, r.text
    tenant = r.json()
    r = http.request(
        "POST",
        f"/v1/tenants/{tenant['id']}/clients",
        json={"name": "app", "scopes": ["flags:read", "flags:write"]},
        headers=admin,
    )
    assert r.status_code == 201, r.text
    created = r.json()
    return tenant, http.bearer(http.token(created["client_id"], created["client_secret"]))


def evaluate(service: UwsgiService, headers: dict[str, str], key: str, context: dict | None = None) -> dict:
    r = requests.post(
        f"{service.url}/v1/evaluate", json={"context": context or {}, "keys": [key]}, headers=headers, timeout=5
    )
    assert r.status_code == 200, r.text
    return r.json()["flags"][key]


def test_a_change_through_one_instance_is_seen_by_the_other_within_100_ms(
    http: Http, flags_pair: tuple[UwsgiService, UwsgiService]
):
    first, second = flags_pair
    admin = http.bearer()
    _tenant, headers = new_tenant(http)
    key = f"prop-{uuid.uuid4().hex[:8]}"
    r = requests.put(f"{first.url}/v1/flags/{key}", json={"default": False}, headers=admin, timeout=5)
    assert r.status_code == 201, r.text
    assert wait_for(lambda: evaluate(second, headers, key)["reason"] == "DEFAULT", 5.0)
    stale_until: list[float] = []  # per change: when the last request still answering the old value was sent
    first_fresh: list[float] = []  # per change: when the first answer with the new value arrived
    for round_ in range(10):
        value = round_ % 2 == 0
        r = requests.put(f"{first.url}/v1/flags/{key}", json={"default": value}, headers=admin, timeout=5)
        assert r.status_code == 200, r.text
        acknowledged = time.monotonic()
        streak, last_stale, fresh_at = 0, 0.0, None
        while streak < CONFIRMATIONS:
            sent = time.monotonic() - acknowledged
            if evaluate(second, headers, key)["value"] is value:
                streak += 1
                fresh_at = fresh_at if fresh_at is not None else time.monotonic() - acknowledged
            else:
                streak, last_stale = 0, sent
            assert sent < 2.0, "the change never arrived"
        stale_until.append(last_stale)
        first_fresh.append(fresh_at or 0.0)
    print(
        f"\npropagation between instances over {len(first_fresh)} changes: a stale answer was last requested "
        f"{max(stale_until) * 1000:.1f} ms after the write's acknowledgement; the first fresh answer arrived after "
        f"{sorted(first_fresh)[len(first_fresh) // 2] * 1000:.1f} ms (median), {max(first_fresh) * 1000:.1f} ms (max), "
        "request time included"
    )
    # The bound is on when the other instance still answered the old value, so the time the
    # requests themselves take (a busy machine) does not count against the propagation.
    assert max(stale_until) < 0.100, stale_until


def test_tenant_created_at_and_plan_from_the_tenants_service(http: Http, flags_pair: tuple[UwsgiService, UwsgiService]):
    first, second = flags_pair
    admin = http.bearer()
    tenant, headers = new_tenant(http, plan="free")
    key = f"new-dashboard-{uuid.uuid4().hex[:6]}"
    rules = [
        {"conditions": [{"attribute": "tenant.plan", "op": "eq", "values": ["enterprise"]}], "serve": "vip"},
        {
            "conditions": [{"attribute": "tenant.created_at", "op": "after", "values": ["2017-01-01T00:00:00Z"]}],
            "serve": "new",
        },
    ]
    body = {"default": "old", "rules": rules}
    assert requests.put(f"{first.url}/v1/flags/{key}", json=body, headers=admin, timeout=5).status_code == 201
    assert wait_for(lambda: evaluate(second, headers, key)["value"] == "new", 5.0)
    assert evaluate(second, headers, key) == {
        "value": "new",
        "variant": None,
        "reason": "TARGETING_MATCH",
        "rule": "rules[1]",
        "revision": 1,
    }
    # A plan change in tenants reaches flags by the tenant.updated event, not a cache expiry.
    r = http.request("PATCH", f"/v1/tenants/{tenant['id']}", json={"plan": "enterprise"}, headers=admin)
    assert r.status_code == 200, r.text
    for service in flags_pair:
        assert wait_for(lambda s=service: all(evaluate(s, headers, key)["value"] == "vip" for _ in range(4)), 2.0)


def test_values_no_service_can_store_are_refused_and_every_read_keeps_working(
    http: Http, flags_pair: tuple[UwsgiService, UwsgiService]
):
    """A flag whose default is past 64 bits used to be stored: its PUT, then the list and every
    evaluation of all flags, answered 500 from then on. NaN was stored as null."""
    first, second = flags_pair
    admin = {**http.bearer(), "Content-Type": "application/json"}
    _, headers = new_tenant(http)
    key = f"unstorable-{uuid.uuid4().hex[:6]}"
    url = f"{first.url}/v1/flags/{key}"
    for raw, status, field in [
        ('{"default": 123456789012345678901234567890}', 422, "default"),
        ('{"default": 1e400}', 422, "default"),
        ('{"default": false, "description": "a\\ud800b"}', 422, "description"),
        ('{"default": NaN}', 400, None),
    ]:
        r = requests.put(url, data=raw.encode(), headers=admin, timeout=5)
        assert r.status_code == status, r.text
        assert r.headers["Content-Type"] == "application/problem+json"
        if field:
            assert [e["field"] for e in r.json()["errors"]] == [field]
    context = {"user_id": "u-1", "n": 2**70}
    r = requests.post(f"{second.url}/v1/evaluate", json={"context": context}, headers=headers, timeout=5)
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "context.n", r.text
    assert requests.get(url, headers=admin, timeout=5).status_code == 404
    assert requests.get(f"{first.url}/v1/flags?limit=200", headers=admin, timeout=5).status_code == 200
    r = requests.post(f"{second.url}/v1/evaluate", json={"context": {"user_id": "u-1"}}, headers=headers, timeout=5)
    assert r.status_code == 200 and key not in r.json()["flags"], r.text


def test_overrides_snapshot_and_stream_over_http(http: Http, flags_pair: tuple[UwsgiService, UwsgiService]):
    first, second = flags_pair
    admin = http.bearer()
    tenant, headers = new_tenant(http)
    other, other_headers = new_tenant(http)
    key = f"ovr-{uuid.uuid4().hex[:6]}"
    assert (
        requests.put(
            f"{first.url}/v1/flags/{key}", json={"default": False, "allow_overrides": "user"}, headers=admin, timeout=5
        ).status_code
        == 201
    )
    # The second instance has heard of the flag before its stream opens, so flag.created is no
    # event of this stream (on a Redis Cluster the fan-out crosses the cluster bus first).
    deadline = time.monotonic() + 10
    while evaluate(second, headers, key)["reason"] == "ERROR" and time.monotonic() < deadline:
        time.sleep(0.05)
    with requests.get(f"{second.url}/v1/flags/stream", headers=headers, stream=True, timeout=10) as stream:
        assert stream.status_code == 200 and stream.headers["Content-Type"].startswith("text/event-stream")
        time.sleep(0.3)
        # The other tenant's override first: its event must never reach this stream.
        r = requests.put(
            f"{first.url}/v1/flags/{key}/overrides/tenant", json={"value": False}, headers=other_headers, timeout=5
        )
        assert r.status_code == 200, r.text
        r = requests.put(
            f"{first.url}/v1/flags/{key}/overrides/tenant", json={"value": True}, headers=headers, timeout=5
        )
        assert r.status_code == 200, r.text
        lines = []
        for line in stream.iter_lines(chunk_size=1, decode_unicode=True):  # unbuffered: frames are small
            lines.append(line)
            if line.startswith("data: ") and '"flag.override.set"' in line:
                break
    data = [json.loads(line[len("data: ") :]) for line in lines if line.startswith("data: ")]
    assert [(d["type"], d["tenant_id"]) for d in data] == [("flag.override.set", tenant["id"])]
    snapshot = requests.get(f"{second.url}/v1/flags/snapshot", headers=headers, timeout=5).json()
    assert snapshot["tenant_id"] == tenant["id"] and snapshot["overrides"]["tenant"] == {key: True}
    assert snapshot["tenant"]["plan"] == tenant["plan"] and snapshot["tenant"]["created_at"] == tenant["created_at"]
    assert evaluate(second, other_headers, key)["value"] is False and other["id"] != tenant["id"]


class RawStream:
    """An open ``/v1/flags/stream`` on a raw socket, read by its own thread."""

    def __init__(self, base_url: str, headers: dict[str, str]) -> None:
        parts = urlsplit(base_url)
        self.sock = socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 80), timeout=30)
        lines = ["GET /v1/flags/stream HTTP/1.1", f"Host: {parts.netloc}", "Accept: text/event-stream"]
        lines += [f"{k}: {v}" for k, v in headers.items()]
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        self.data = b""
        self._lock = threading.Lock()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        with contextlib.suppress(OSError):
            while chunk := self.sock.recv(65536):
                with self._lock:
                    self.data += chunk

    @property
    def status(self) -> int | None:
        head = self.data.split(b"\r\n", 1)[0].split()
        return int(head[1]) if len(head) > 1 else None

    def keys(self) -> list[str]:
        """The flag keys of the definition events received so far."""
        with self._lock:
            body = self.data.partition(b"\r\n\r\n")[2].decode(errors="replace")
        return [
            json.loads(line[len("data: ") :])["data"]["flag"]["key"]
            for line in body.splitlines()
            if line.startswith("data: ") and '"flag.' in line
        ]

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()


def test_fifty_streams_fit_an_instance_and_leave_evaluation_its_latency(
    http: Http, flags_pair: tuple[UwsgiService, UwsgiService]
):
    """50 open streams on one instance (its stream mule), in its 128M, evaluation as fast."""
    first, _second = flags_pair
    assert first.process is not None
    _tenant, headers = new_tenant(http)
    key = f"mem-{uuid.uuid4().hex[:8]}"
    admin = http.bearer()
    assert requests.put(f"{first.url}/v1/flags/{key}", json={"default": 1}, headers=admin, timeout=5).status_code == 201

    def latencies_ms(n: int = 200) -> list[float]:
        out = []
        for _ in range(n):
            started = time.perf_counter()
            evaluate(first, headers, key)
            out.append((time.perf_counter() - started) * 1000)
        return sorted(out)

    latencies_ms(20)  # both workers warm (JWKS, tenant attributes)
    quiet, pss_quiet = latencies_ms(), tree_memory(first.process.pid).pss_mib
    streams = [RawStream(first.url, headers) for _ in range(50)]
    try:
        assert wait_for(lambda: all(s.status is not None for s in streams), 10)
        assert [s.status for s in streams] == [200] * 50
        busy, pss_busy = latencies_ms(), tree_memory(first.process.pid).pss_mib
        r = requests.put(f"{first.url}/v1/flags/{key}", json={"default": 2}, headers=admin, timeout=5)
        assert r.status_code == 200, r.text
        assert wait_for(lambda: all(s.keys() == [key] for s in streams), 5)
    finally:
        for s in streams:
            s.close()
    figures = {
        "p50_ms": (round(quiet[len(quiet) // 2], 2), round(busy[len(busy) // 2], 2)),
        "p99_ms": (round(quiet[-2], 2), round(busy[-2], 2)),
        "pss_mb": (round(pss_quiet, 1), round(pss_busy, 1)),
    }
    print(f"\nflags without streams / with 50 streams: {figures}")
    assert busy[len(busy) // 2] < 2.5 * quiet[len(quiet) // 2] + 2, figures  # generous: the machine is shared
    assert pss_busy < 128, figures  # the instance's memory limit (manifest)
