"""The audit service under uWSGI with the real tenants service: backlog, crashes, rivals, the API.

Events are produced the way every service produces them (``EventPublisher`` onto the
durable stream), straight into the session's Redis, so thousands take a second; the
journeys through the real tenants service check that what it publishes lands with its
actor, client, address, user agent and request id.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import requests
from conftest import KEYSPACE, REPO, SVC_ID, SVC_SECRET, Http, redis_client, service_env

from aerie.events import EventContext, EventPublisher, new_event
from aerie.local.redis_server import RedisServer, free_port
from aerie.testing.polling import wait_for
from aerie.testing.process import UwsgiService

pytestmark = pytest.mark.audit


def audit_env(server: RedisServer, tenants_url: str) -> dict[str, str]:
    # Entries a killed instance left pending are taken over after a second (default 30 s).
    return service_env(server, tenants_url, AERIE_AUDIT_RECLAIM_IDLE_MS="1000")


def audit_instance(server: RedisServer, tenants: UwsgiService, log_dir: Path, index: int) -> UwsgiService:
    service = UwsgiService(
        REPO / "services" / "audit",
        free_port(),
        audit_env(server, tenants.url),
        log_path=log_dir / f"audit-{index}.log",
    )
    service.env["CF_INSTANCE_INDEX"] = str(index)
    return service


def process_tree(pid: int) -> list[int]:
    """``pid`` and its descendants (uWSGI's master and workers), from /proc."""
    found = [pid]
    for tid_dir in Path(f"/proc/{pid}/task").glob("*"):
        try:
            children = (tid_dir / "children").read_text().split()
        except OSError:
            continue
        for child in children:
            found += process_tree(int(child))
    return found


def kill_hard(service: UwsgiService) -> None:
    """SIGKILL the instance's master and every worker at once: no shutdown code runs."""
    assert service.process is not None
    for pid in process_tree(service.process.pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    service.process.wait(10)
    assert wait_for(lambda: not _port_open(service.url), 10)


def _port_open(url: str) -> bool:
    try:
        requests.get(f"{url}/health", timeout=0.5)
    except requests.RequestException:
        return False
    return True


@pytest.fixture(scope="module")
def log_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("audit-logs")


@pytest.fixture(scope="module")
def audit(redis_server: RedisServer, tenants: UwsgiService, log_dir: Path) -> Iterator[UwsgiService]:
    service = audit_instance(redis_server, tenants, log_dir, 0)
    service.start()
    yield service
    service.stop()


@pytest.fixture
def http(tenants: UwsgiService) -> Http:
    return Http(tenants.url)


@pytest.fixture
def r(redis_server: RedisServer) -> redis.Redis:
    return redis_client(redis_server)


# --- helpers -----------------------------------------------------------------------------


def produce(r: redis.Redis, tenant_ids: list[str | None], n: int) -> list[dict[str, Any]]:
    """``n`` events spread over ``tenant_ids``, published as the services publish them."""
    publisher = EventPublisher(KEYSPACE)
    ctx = EventContext({"type": "client", "id": "cli_load", "client_id": "cli_load"}, "req-load", "10.1.2.3", "load/1")
    events = [
        new_event("project.updated", tenant_ids[i % len(tenant_ids)], {"project": {"id": f"prj_{i}"}}, ctx)
        for i in range(n)
    ]
    for start in range(0, n, 500):
        pipe = r.pipeline(transaction=False)
        for e in events[start : start + 500]:
            publisher.add(pipe, e)
        pipe.execute()
    return events


def trail_ids(r: redis.Redis, tenant_id: str) -> list[tuple[int, str]]:
    """Every ``(seq, id)`` stored in a trail, straight from Redis."""
    return sorted((int(seq), json.loads(raw)["id"]) for seq, raw in r.hscan_iter(f"audit:{{{tenant_id}}}:entries"))


def recorded(r: redis.Redis, tenant_ids: list[str]) -> int:
    return sum(int(r.hget(f"audit:{{{t}}}:meta", "seq") or 0) for t in tenant_ids)


def assert_exactly_once(r: redis.Redis, events: list[dict[str, Any]], tenant_ids: list[str]) -> None:
    for tenant_id in tenant_ids:
        stored = trail_ids(r, tenant_id)
        expected = {e["id"] for e in events if e["tenant_id"] == tenant_id}
        assert [seq for seq, _ in stored] == list(range(1, len(stored) + 1)), "seqs are not gapless"
        counts = Counter(i for _, i in stored)
        assert not [i for i, c in counts.items() if c > 1], "duplicate entries"
        assert set(counts) == expected


def verify_all(audit: UwsgiService, admin: dict[str, str], tenant_ids: list[str]) -> None:
    for tenant_id in tenant_ids:
        result = requests.get(
            f"{audit.url}/v1/audit/verify", params={"tenant_id": tenant_id}, headers=admin, timeout=30
        ).json()
        assert result["valid"] is True and result["first_invalid_seq"] is None, (tenant_id, result)


def fresh_tenants(n: int) -> list[str]:
    return [f"ten_{uuid.uuid4().hex[:16]}" for _ in range(n)]


def new_tenant(http: Http, scopes: list[str], user_agent: str = "pytest-audit/1.0") -> tuple[dict, str, str]:
    """A real tenant and a client of it; returns the tenant, the client id and a token of it."""
    admin = http.bearer()
    r = http.request("POST", "/v1/tenants", json={"slug": f"a-{uuid.uuid4().hex[:12]}", "name": "A"}, headers=admin)
    assert r.status_code == 201, r.text
    tenant = r.json()
    r = http.request(
        "POST", f"/v1/tenants/{tenant['id']}/clients", json={"name": "auditor", "scopes": scopes}, headers=admin
    )
    assert r.status_code == 201, r.text
    client = r.json()
    token = requests.post(
        f"{http.base}/v1/oauth/token",
        data={"grant_type": "client_credentials"},
        auth=(client["client_id"], client["client_secret"]),
        headers={"User-Agent": user_agent, "X-Request-ID": "req-token-1"},
        timeout=5,
    ).json()["access_token"]
    return tenant, client["client_id"], token


# --- ingestion ---------------------------------------------------------------------------


def test_backlog_produced_while_audit_was_stopped_is_recorded_once(audit: UwsgiService, r: redis.Redis, http: Http):
    tenant_ids = fresh_tenants(7)
    audit.stop()
    try:
        events = produce(r, [*tenant_ids], 2000)
        time.sleep(0.3)
        assert recorded(r, tenant_ids) == 0
    finally:
        audit.start()
    assert wait_for(lambda: recorded(r, tenant_ids) >= 2000, 60, 0.2), recorded(r, tenant_ids)
    time.sleep(0.5)  # nothing more may arrive
    assert recorded(r, tenant_ids) == 2000
    assert_exactly_once(r, events, tenant_ids)
    verify_all(audit, http.bearer(), tenant_ids)


def test_sigkill_mid_ingestion_loses_and_duplicates_nothing(audit: UwsgiService, r: redis.Redis, http: Http):
    tenant_ids = fresh_tenants(5)
    audit.stop()
    events = produce(r, [*tenant_ids], 8000)
    audit.start(wait_ready=False)
    try:
        assert wait_for(lambda: recorded(r, tenant_ids) >= 300, 30, 0.01)
    finally:
        kill_hard(audit)
    at_kill = recorded(r, tenant_ids)
    assert at_kill < 8000, "ingestion finished before the kill; the test proves nothing"
    audit.start()
    assert wait_for(lambda: recorded(r, tenant_ids) >= 8000, 60, 0.2), recorded(r, tenant_ids)
    time.sleep(2.0)  # past the reclaim idle time: any redelivery would have landed by now
    assert recorded(r, tenant_ids) == 8000
    assert_exactly_once(r, events, tenant_ids)
    verify_all(audit, http.bearer(), tenant_ids)


def test_two_instances_share_the_stream_with_gapless_chains(
    audit: UwsgiService, r: redis.Redis, http: Http, redis_server: RedisServer, tenants: UwsgiService, log_dir: Path
):
    second = audit_instance(redis_server, tenants, log_dir, 1).start()
    try:
        tenant_ids = fresh_tenants(4)
        events = produce(r, tenant_ids, 5000)
        assert wait_for(lambda: recorded(r, tenant_ids) >= 5000, 60, 0.2), recorded(r, tenant_ids)
        time.sleep(0.5)
        assert recorded(r, tenant_ids) == 5000
        assert_exactly_once(r, events, tenant_ids)
        verify_all(second, http.bearer(), tenant_ids)
        # Both instances took part: a consumer appears in the group once it was handed events.
        consumers = {
            c["name"].rsplit("-", 1)[-1]
            for stream in KEYSPACE.streams
            if r.exists(stream)
            for c in r.xinfo_consumers(stream, "audit")
        }
        for instance in (audit, second):
            workers = {str(p) for p in process_tree(instance.process.pid)[1:]}  # type: ignore[union-attr]
            assert workers & consumers, f"{instance.url} consumed nothing"
    finally:
        second.stop()


# --- what the suite's own actions leave behind ------------------------------------------


def _token(headers: dict[str, str]) -> str:
    return headers["Authorization"].removeprefix("Bearer ")


def entries_of(audit: UwsgiService, token: str, **params: str) -> list[dict[str, Any]]:
    r = requests.get(
        f"{audit.url}/v1/audit/events", params=params, headers={"Authorization": f"Bearer {token}"}, timeout=5
    )
    assert r.status_code == 200, r.text
    return r.json()["items"]


def test_tenant_client_and_token_actions_carry_who_from_where(audit: UwsgiService, http: Http):
    tenant, client_id, token = new_tenant(http, ["audit:read"], user_agent="auditor-agent/2.0")
    denied = requests.post(
        f"{http.base}/v1/oauth/token",
        data={"grant_type": "client_credentials"},
        auth=(client_id, "wrong-secret"),
        headers={"X-Request-ID": "req-denied-1"},
        timeout=5,
    )
    assert denied.status_code == 401
    assert wait_for(lambda: len(entries_of(audit, token)) >= 3, 10)
    by_action = {e["action"]: e for e in entries_of(audit, token)}
    assert {"tenant.created", "client.created", "token.issued"} <= set(by_action)
    created = by_action["tenant.created"]
    assert created["actor"]["type"] == "platform" and created["target"] == {"type": "tenant", "id": tenant["id"]}
    issued = by_action["token.issued"]
    assert issued["actor"] == {"type": "client", "id": client_id, "client_id": client_id}
    assert issued["user_agent"] == "auditor-agent/2.0" and issued["request_id"] == "req-token-1"
    assert issued["ip"] == "127.0.0.1"
    assert by_action["client.created"]["target"] == {"type": "client", "id": client_id}
    # A wrong secret for the tenant's client is an attack on the tenant's credentials: the
    # denial names the tenant, and lands in the platform's trail and in the tenant's own.
    admin = http.bearer()

    def denials() -> list[dict[str, Any]]:
        return entries_of(audit, _token(admin), action="token.denied", target_id=client_id)

    assert wait_for(denials, 10)
    (denial,) = denials()
    assert denial["tenant_id"] == tenant["id"] and denial["request_id"] == "req-denied-1"
    assert [e["id"] for e in entries_of(audit, token, action="token.denied")] == [denial["id"]]
    assert denial["actor"]["client_id"] == client_id and denial["ip"] == "127.0.0.1"
    # Deleting the tenant keeps its trail: offboarding is part of the record.
    assert http.request("DELETE", f"/v1/tenants/{tenant['id']}", headers=admin).status_code == 204

    def deleted_recorded() -> bool:
        r = requests.get(
            f"{audit.url}/v1/audit/events",
            params={"tenant_id": tenant["id"], "action": "tenant.deleted"},
            headers=admin,
            timeout=5,
        )
        return bool(r.json()["items"])

    assert wait_for(deleted_recorded, 10)
    verify_all(audit, admin, [tenant["id"]])


def test_denied_token_requests_of_a_tenants_client_reach_its_trail_and_the_platforms(audit: UwsgiService, http: Http):
    """tenants names the client's tenant on a denial once the client proved its secret; audit
    records such a denial in that tenant's trail (the tenant sees what is tried with its
    credentials) and in the platform trail (which has every denial), once in each."""
    tenant, _, reader = new_tenant(http, ["audit:read"])
    admin = http.bearer()
    r = http.request(
        "POST", f"/v1/tenants/{tenant['id']}/clients", json={"name": "app", "scopes": ["projects:read"]}, headers=admin
    )
    assert r.status_code == 201, r.text
    client_id, secret = r.json()["client_id"], r.json()["client_secret"]

    def ask(**form: str) -> requests.Response:
        return requests.post(
            f"{http.base}/v1/oauth/token",
            data={"grant_type": "client_credentials", **form},
            auth=(client_id, secret),
            timeout=5,
        )

    assert ask(scope="tenants:write").status_code == 400  # a scope the client does not have
    assert http.request("DELETE", f"/v1/tenants/{tenant['id']}/clients/{client_id}", headers=admin).status_code == 204
    assert ask().status_code == 401  # a revoked client, with its right secret

    def denials(token: str, **params: str) -> list[dict[str, Any]]:
        return entries_of(audit, token, action="token.denied", target_id=client_id, **params)

    assert wait_for(lambda: len(denials(reader)) == 2 and len(denials(_token(admin))) == 2, 10)
    time.sleep(0.5)  # nothing more may arrive
    in_tenant, on_platform = denials(reader), denials(_token(admin))
    assert [e["metadata"]["error"] for e in in_tenant] == ["invalid_client", "invalid_scope"]
    chain = ("seq", "recorded_at", "prev_hash", "hash")
    assert [{k: v for k, v in e.items() if k not in chain} for e in in_tenant] == [
        {k: v for k, v in e.items() if k not in chain} for e in on_platform
    ]
    assert all(e["tenant_id"] == tenant["id"] and e["source"] == "event" for e in in_tenant)
    verify_all(audit, admin, [tenant["id"]])
    platform = requests.get(f"{audit.url}/v1/audit/verify", headers=admin, timeout=30).json()
    assert platform["valid"] is True, platform


def test_project_actions_carry_the_original_request(
    audit: UwsgiService, http: Http, redis_server: RedisServer, tenants: UwsgiService, log_dir: Path
):
    """A real projects service's writes land in the tenant's trail with who, from where, which request."""
    projects = UwsgiService(
        REPO / "services" / "projects",
        free_port(),
        {**audit_env(redis_server, tenants.url)},
        log_path=log_dir / "projects.log",
    ).start()
    try:
        tenant, client_id, token = new_tenant(http, ["audit:read", "projects:write", "projects:read"])
        r = requests.post(
            f"{projects.url}/v1/projects",
            json={"name": "Audited"},
            headers={"Authorization": f"Bearer {token}", "User-Agent": "console/3.1", "X-Request-ID": "req-prj-1"},
            timeout=5,
        )
        assert r.status_code == 201, r.text
        project = r.json()

        def created() -> list[dict[str, Any]]:
            return entries_of(audit, token, action="project.created", target_id=project["id"])

        assert wait_for(created, 10)
        (entry,) = created()
        assert entry["tenant_id"] == tenant["id"] and entry["target"] == {"type": "project", "id": project["id"]}
        assert entry["actor"] == {"type": "client", "id": client_id, "client_id": client_id}
        assert (entry["ip"], entry["user_agent"], entry["request_id"]) == ("127.0.0.1", "console/3.1", "req-prj-1")
        assert entry["metadata"]["project"]["name"] == "Audited"
    finally:
        projects.stop()


# --- the API over HTTP -------------------------------------------------------------------

SEED = [
    ("e1", "invoice.created", "u1", "invoice", "i1", "2026-01-01T00:00:01Z"),
    ("e2", "invoice.paid", "u2", "invoice", "i1", "2026-01-01T00:00:02Z"),
    ("e3", "invoice.created", "u1", "invoice", "i2", "2026-01-01T00:00:03Z"),
    ("e4", "user.login", "u2", "session", "s1", "2026-01-01T00:00:04Z"),
    ("e5", "invoice.voided", "u3", "invoice", "i2", "2026-01-01T00:00:05Z"),
    ("e6", "user.logout", "u2", "session", "s1", "2026-01-01T00:00:06Z"),
]


@pytest.fixture(scope="module")
def seeded(audit: UwsgiService, tenants: UwsgiService) -> dict[str, Any]:
    """Two real tenants; the first with SEED appended by a service client (a platform token)."""
    http = Http(tenants.url)
    tenant, _client_id, token = new_tenant(http, ["audit:read"])
    other, _other_client, other_token = new_tenant(http, ["audit:read"])
    service = http.bearer(http.token(SVC_ID, SVC_SECRET))
    prefix = uuid.uuid4().hex[:8]
    for key, action, actor, target_type, target_id, at in SEED:
        body = {
            "id": f"{prefix}-{key}",
            "tenant_id": tenant["id"],
            "action": action,
            "actor": {"type": "user", "id": actor},
            "target": {"type": target_type, "id": target_id},
            "occurred_at": at,
            "message": "=1+1" if key == "e4" else f"{action} {target_id}",
        }
        r = requests.post(f"{audit.url}/v1/audit/events", json=body, headers=service, timeout=5)
        assert r.status_code == 201, r.text
    return {"tenant": tenant, "token": token, "other": other, "other_token": other_token, "prefix": prefix}


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"action": "invoice.created"}, ["e3", "e1"]),
        ({"action": "invoice.*"}, ["e5", "e3", "e2", "e1"]),
        ({"actor_id": "u2"}, ["e6", "e4", "e2"]),
        ({"target_type": "session"}, ["e6", "e4"]),
        ({"target_id": "i2"}, ["e5", "e3"]),
        ({"until": "2026-01-01T00:00:03Z"}, ["e2", "e1"]),
        ({"since": "2026-01-01T00:00:05Z", "until": "2026-01-02T00:00:00Z"}, ["e6", "e5"]),
        ({"actor_id": "u2", "target_type": "invoice"}, ["e2"]),
    ],
)
def test_every_filter_over_http(audit: UwsgiService, seeded: dict[str, Any], params, expected):
    items = entries_of(audit, seeded["token"], **params)
    assert [e["id"] for e in items] == [f"{seeded['prefix']}-{k}" for k in expected]


def test_queries_and_exports_are_isolated_per_tenant(audit: UwsgiService, seeded: dict[str, Any]):
    mine = entries_of(audit, seeded["token"], limit="2")
    theirs = entries_of(audit, seeded["other_token"])
    assert all(e["tenant_id"] == seeded["other"]["id"] for e in theirs)
    assert not {e["id"] for e in theirs} & {e["id"] for e in mine}
    other = {"Authorization": f"Bearer {seeded['other_token']}"}
    one = requests.get(f"{audit.url}/v1/audit/events/{mine[0]['id']}", headers=other, timeout=5)
    assert one.status_code == 404 and one.json()["code"] == "not_found"
    for path in ("/v1/audit/events", "/v1/audit/export", "/v1/audit/verify"):
        r = requests.get(f"{audit.url}{path}", params={"tenant_id": seeded["tenant"]["id"]}, headers=other, timeout=5)
        assert r.status_code == 403 and r.json()["code"] == "forbidden", path
    for fmt in ("ndjson", "csv"):
        export = requests.get(f"{audit.url}/v1/audit/export", params={"format": fmt}, headers=other, timeout=5)
        assert export.status_code == 200 and seeded["prefix"] not in export.text
        assert seeded["tenant"]["id"] not in export.text
    mine_export = requests.get(
        f"{audit.url}/v1/audit/export",
        params={"format": "csv", "action": "user.login"},
        headers={"Authorization": f"Bearer {seeded['token']}"},
        timeout=5,
    )
    assert mine_export.headers["Content-Type"].startswith("text/csv")
    assert "'=1+1" in mine_export.text  # a formula is text in a spreadsheet


def dechunk(framed: bytes) -> bytes:
    """A chunked body's content; fails unless it ends with the last (empty) chunk."""
    body = bytearray()
    rest = framed
    while True:
        size_line, _, rest = rest.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            return bytes(body)
        body += rest[:size]
        assert rest[size : size + 2] == b"\r\n", "a chunk not followed by CRLF"
        rest = rest[size + 2 :]


def test_a_reader_that_pauses_still_gets_the_whole_export(audit: UwsgiService, r: redis.Redis, http: Http):
    """An export stalled by its reader for longer than uWSGI's socket timeout (4 s) used to be
    cut there, and the cut download looked complete (200, no length, connection closed)."""
    [tenant_id] = fresh_tenants(1)
    events = produce(r, [tenant_id], 10_000)  # about 6 MB of NDJSON: more than the sockets buffer
    assert wait_for(lambda: recorded(r, [tenant_id]) >= len(events), 60, 0.2)
    request = (
        f"GET /v1/audit/export?tenant_id={tenant_id} HTTP/1.1\r\nHost: test\r\n"
        f"Authorization: {http.bearer()['Authorization']}\r\n\r\n"
    )
    received = bytearray()
    with socket.socket() as conn:
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)  # before connecting: a small window
        conn.settimeout(30)
        conn.connect(("127.0.0.1", audit.port))
        conn.sendall(request.encode())
        received += conn.recv(65536)
        time.sleep(6)
        while chunk := conn.recv(1 << 20):
            received += chunk
    head, _, framed = bytes(received).partition(b"\r\n\r\n")
    assert head.split(b"\r\n")[0].endswith(b"200 OK"), head
    # An HTTP/1.1 reader gets it chunked: a cut download can no longer pass for a whole one.
    assert b"transfer-encoding: chunked" in head.lower(), head
    body = dechunk(framed)
    assert body.endswith(b"\n"), body[-200:]
    lines = [json.loads(line) for line in body.splitlines()]
    assert [entry["seq"] for entry in lines] == list(range(1, len(events) + 1))


def test_tampering_in_redis_is_reported(audit: UwsgiService, seeded: dict[str, Any], r: redis.Redis):
    headers = {"Authorization": f"Bearer {seeded['token']}"}
    before = requests.get(f"{audit.url}/v1/audit/verify", headers=headers, timeout=5).json()
    assert before["valid"] is True and before["entries"] == before["head"]["seq"]
    target = next(e for e in entries_of(audit, seeded["token"]) if e["id"].endswith("-e2"))
    key = f"audit:{{{seeded['tenant']['id']}}}:entries"
    raw = r.hget(key, target["seq"])
    forged = {**json.loads(raw), "actor": {"type": "user", "id": "someone-else", "client_id": None}}
    r.hset(key, target["seq"], json.dumps(forged))
    try:
        after = requests.get(f"{audit.url}/v1/audit/verify", headers=headers, timeout=5).json()
        assert after["valid"] is False and after["first_invalid_seq"] == target["seq"]
    finally:
        r.hset(key, target["seq"], raw)
    assert requests.get(f"{audit.url}/v1/audit/verify", headers=headers, timeout=5).json()["valid"] is True


@pytest.mark.parametrize(
    ("path", "params", "field"),
    [
        ("/v1/audit/export", {"format": "xlsx"}, "format"),
        ("/v1/audit/export", {"since": "not-a-time"}, "since"),
        ("/v1/audit/events", {"since": "2026-01-01"}, "since"),
        ("/v1/audit/events", {"until": "2026-01-01T25:00:00Z"}, "until"),
        ("/v1/audit/events", {"since": "2026-02-01T00:00:00Z", "until": "2026-01-01T00:00:00Z"}, "until"),
        ("/v1/audit/events", {"limit": "0"}, "limit"),
        ("/v1/audit/events", {"limit": "201"}, "limit"),
        ("/v1/audit/events", {"limit": "-1"}, "limit"),
        ("/v1/audit/events", {"cursor": "!!"}, "cursor"),
        ("/v1/audit/events", {"action": "DROP TABLE"}, "action"),
        ("/v1/audit/events", {"target_type": ""}, "target_type"),
        ("/v1/audit/events", {"target_id": ""}, "target_id"),
        ("/v1/audit/events", {"actor_id": ""}, "actor_id"),
        ("/v1/audit/events", {"tenant_id": "x/y"}, "tenant_id"),
        ("/v1/audit/events", {"unknown": "1"}, "unknown"),
    ],
)
def test_bad_input_on_every_parameter(audit: UwsgiService, seeded: dict[str, Any], path, params, field):
    r = requests.get(
        f"{audit.url}{path}", params=params, headers={"Authorization": f"Bearer {seeded['token']}"}, timeout=5
    )
    assert r.status_code == 422, r.text
    assert r.headers["Content-Type"] == "application/problem+json"
    body = r.json()
    assert body["code"] == "validation_error" and field in [e["field"] for e in body["errors"]]


def test_a_foreign_cursor_is_refused(audit: UwsgiService, seeded: dict[str, Any]):
    r = requests.get(
        f"{audit.url}/v1/audit/events",
        params={"limit": "1"},
        headers={"Authorization": f"Bearer {seeded['token']}"},
        timeout=5,
    )
    cursor = r.json()["next_cursor"]
    assert cursor
    foreign = requests.get(
        f"{audit.url}/v1/audit/events",
        params={"cursor": cursor},
        headers={"Authorization": f"Bearer {seeded['other_token']}"},
        timeout=5,
    )
    assert foreign.status_code == 422 and foreign.json()["errors"][0]["field"] == "cursor"
