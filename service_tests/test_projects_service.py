"""The projects service under uWSGI beside the real tenants service: tokens, suspension, cascade."""

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
from conftest import KEYSPACE, REPO, Http, redis_client, service_env

from aerie.local.redis_server import RedisServer, free_port
from aerie.testing.polling import wait_for
from aerie.testing.process import UwsgiService


def projects_env(server: RedisServer, tenants_url: str) -> dict[str, str]:
    return service_env(server, tenants_url)


@pytest.fixture(scope="module")
def projects_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("logs") / "projects.log"


@pytest.fixture(scope="module")
def projects(redis_server: RedisServer, tenants: UwsgiService, projects_log: Path) -> Iterator[UwsgiService]:
    service = UwsgiService(
        REPO / "services" / "projects", free_port(), projects_env(redis_server, tenants.url), log_path=projects_log
    )
    service.start()
    yield service
    service.stop()


@pytest.fixture
def http(tenants: UwsgiService) -> Http:
    return Http(tenants.url)


def new_tenant(http: Http) -> tuple[dict, dict[str, str]]:
    """A fresh tenant and the headers of a projects client of it, from the real tenants service."""
    admin = http.bearer()
    r = http.request("POST", "/v1/tenants", json={"slug": f"p-{uuid.uuid4().hex[:12]}", "name": "P"}, headers=admin)
    assert r.status_code == 201, r.text
    tenant = r.json()
    r = http.request(
        "POST",
        f"/v1/tenants/{tenant['id']}/clients",
        json={"name": "app", "scopes": ["projects:read", "projects:write"]},
        headers=admin,
    )
    assert r.status_code == 201, r.text
    created = r.json()
    return tenant, http.bearer(http.token(created["client_id"], created["client_secret"]))


def project_keys(server: RedisServer, tenant_id: str) -> list[str]:
    r = redis_client(server)
    prefix = KEYSPACE.of_tenant(tenant_id).key(f"projects:{{{tenant_id}}}:")
    return [k for k in r.scan_iter(match=f"{prefix}*") if not k.endswith(":deleted")]


def durable_events(server: RedisServer, tenant_id: str) -> list[dict]:
    r = redis_client(server)
    stream = KEYSPACE.of_tenant(tenant_id).stream
    return [json.loads(f["event"]) for _id, f in r.xrange(stream) if f.get("tenant_id") == tenant_id]


def test_create_and_get_with_a_real_tenant_token(http: Http, projects: UwsgiService):
    tenant, headers = new_tenant(http)
    r = requests.post(f"{projects.url}/v1/projects", json={"name": "Launch Plan"}, headers=headers, timeout=5)
    assert r.status_code == 201, r.text
    project = r.json()
    assert project["tenant_id"] == tenant["id"] and project["slug"] == "launch-plan"
    assert r.headers["Location"] == f"/v1/projects/{project['id']}" and r.headers["ETag"] == '"1"'
    got = requests.get(f"{projects.url}{r.headers['Location']}", headers=headers, timeout=5)
    assert got.status_code == 200 and got.json() == project
    _other, other_headers = new_tenant(http)
    assert (
        requests.get(f"{projects.url}/v1/projects/{project['id']}", headers=other_headers, timeout=5).status_code == 404
    )


def test_a_body_that_stops_short_of_its_length_is_408_and_creates_nothing(
    http: Http, projects: UwsgiService, redis_server: RedisServer
):
    """A client that declares more body than it sends: the read is cut once the body falls
    behind its least rate (aerie.wsgi_guard) and raises; that answered 500 and logged an
    unhandled exception."""
    tenant, headers = new_tenant(http)
    body = b'{"name": "cut"}'
    head = (
        f"POST /v1/projects HTTP/1.1\r\nHost: test\r\nAuthorization: {headers['Authorization']}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body) + 10}\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", projects.port), timeout=15) as conn:
        conn.sendall(head.encode() + body)
        answer = b""
        while chunk := conn.recv(65536):
            answer += chunk
    status_line, _, rest = answer.partition(b"\r\n")
    assert status_line == b"HTTP/1.1 408 Request Timeout", answer
    assert json.loads(rest.partition(b"\r\n\r\n")[2])["code"] == "bad_request"
    assert project_keys(redis_server, tenant["id"]) == []


def test_every_list_after_a_write_shows_it_whichever_worker_answers(http: Http, projects: UwsgiService):
    """Both workers cache list pages (projects.pages); a write through either is seen by both at once."""
    _tenant, headers = new_tenant(http)
    url = f"{projects.url}/v1/projects"

    def names_seen(times: int) -> set[tuple[str, ...]]:
        with requests.Session() as s:
            pages = [s.get(url, params={"limit": 50}, headers=headers, timeout=5) for _ in range(times)]
        assert all(p.status_code == 200 for p in pages), [p.text for p in pages if p.status_code != 200]
        return {tuple(item["name"] for item in p.json()["items"]) for p in pages}

    def from_many_threads() -> set[tuple[str, ...]]:
        seen: list[set[tuple[str, ...]]] = []
        threads = [threading.Thread(target=lambda: seen.append(names_seen(10))) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return set().union(*seen)

    first = requests.post(url, json={"name": "first"}, headers=headers, timeout=5).json()
    assert from_many_threads() == {("first",)}  # cached now, in every worker that answered
    requests.post(url, json={"name": "second"}, headers=headers, timeout=5).raise_for_status()
    assert from_many_threads() == {("first", "second")}
    r = requests.patch(f"{url}/{first['id']}", json={"name": "renamed"}, headers=headers, timeout=5)
    assert r.status_code == 200, r.text
    assert from_many_threads() == {("renamed", "second")}
    assert requests.delete(f"{url}/{first['id']}", headers=headers, timeout=5).status_code == 204
    assert from_many_threads() == {("second",)}


def test_suspension_bites_within_a_second(http: Http, projects: UwsgiService):
    tenant, headers = new_tenant(http)

    def create() -> int:  # a new connection each time, so requests spread over the workers
        return requests.post(
            f"{projects.url}/v1/projects", json={"name": "x" + uuid.uuid4().hex[:6]}, headers=headers, timeout=5
        ).status_code

    assert all(create() == 201 for _ in range(10))  # every worker has cached "active"
    r = http.request("POST", f"/v1/tenants/{tenant['id']}/suspend", headers=http.bearer())
    assert r.status_code == 200
    suspended_at = time.monotonic()
    while True:
        statuses = [create() for _ in range(10)]
        if set(statuses) == {403}:
            break
        assert time.monotonic() - suspended_at < 1.0, statuses
    reads = requests.get(f"{projects.url}/v1/projects", headers=headers, timeout=5)
    assert reads.status_code == 200 and len(reads.json()["items"]) == 10
    r = requests.post(f"{projects.url}/v1/projects", json={"name": "no"}, headers=headers, timeout=5)
    assert r.json()["code"] == "tenant_suspended"
    http.request("POST", f"/v1/tenants/{tenant['id']}/reactivate", headers=http.bearer())
    assert wait_for(lambda: create() == 201, 2.0)


def test_cascade_after_tenant_deletion(http: Http, projects: UwsgiService, redis_server: RedisServer):
    tenant, headers = new_tenant(http)
    _keep, keep_headers = new_tenant(http)
    made = [
        requests.post(f"{projects.url}/v1/projects", json={"name": name}, headers=headers, timeout=5).json()
        for name in ("One", "Two")
    ]
    kept = requests.post(f"{projects.url}/v1/projects", json={"name": "Kept"}, headers=keep_headers, timeout=5).json()
    assert project_keys(redis_server, tenant["id"])
    watching = SSEClient(projects.url, headers)
    try:
        assert wait_for(lambda: watching.status == 200, 5)
        assert http.request("DELETE", f"/v1/tenants/{tenant['id']}", headers=http.bearer()).status_code == 204
        assert wait_for(lambda: not project_keys(redis_server, tenant["id"]), 5.0)
        # each project went with its own event, on the durable stream (audit) and live
        deleted = [e for e in durable_events(redis_server, tenant["id"]) if e["type"] == "project.deleted"]
        assert sorted(e["data"]["project"]["id"] for e in deleted) == sorted(p["id"] for p in made)
        assert {e["data"]["cause"]["type"] for e in deleted} == {"tenant.deleted"}
        # Deleting the tenant revoked its clients, so its open stream ends within a second;
        # whatever it sent before that is the deletions, in order.
        assert wait_for(lambda: watching.closed, 5)
        got = [e["id"] for e in watching.events()]
        assert got == [e["id"] for e in deleted][: len(got)]
    finally:
        watching.close()
    assert requests.get(f"{projects.url}/v1/projects/{kept['id']}", headers=keep_headers, timeout=5).status_code == 200


def test_cascade_when_projects_was_stopped(
    http: Http, tenants: UwsgiService, redis_server: RedisServer, projects: UwsgiService
):
    tenant, headers = new_tenant(http)
    assert (
        requests.post(f"{projects.url}/v1/projects", json={"name": "Orphan"}, headers=headers, timeout=5).status_code
        == 201
    )
    projects.stop()
    try:
        assert http.request("DELETE", f"/v1/tenants/{tenant['id']}", headers=http.bearer()).status_code == 204
        time.sleep(0.5)
        assert project_keys(redis_server, tenant["id"])  # nobody removed them while projects was down
    finally:
        projects.start()
    assert wait_for(lambda: not project_keys(redis_server, tenant["id"]), 10.0)


def test_writes_are_503_when_tenants_is_down_and_nothing_cached(
    http: Http, tenants: UwsgiService, projects: UwsgiService, redis_server: RedisServer
):
    tenant, headers = new_tenant(http)
    # Reads only: workers fetch the JWKS, but none asks for this tenant's status.
    assert all(requests.get(f"{projects.url}/v1/projects", headers=headers, timeout=5).ok for _ in range(10))

    def write() -> requests.Response:
        return requests.post(f"{projects.url}/v1/projects", json={"name": "Blind"}, headers=headers, timeout=10)

    tenants.stop()
    try:
        # A worker subscribed when the tenant was created cached it from tenant.created, and
        # rightly lets writes through. A tenant event without a document makes every worker
        # forget the tenant: from then on nothing is cached and tenants is away.
        r = redis_client(redis_server)
        r.publish("aerie:event:tenant.updated", json.dumps({"id": "evt-forget", "tenant_id": tenant["id"]}))

        assert wait_for(lambda: write().status_code == 503, timeout=5)
        for r in [write() for _ in range(4)]:
            assert r.status_code == 503 and r.json()["code"] == "unavailable" and r.headers["Retry-After"]
        # Reads keep working where the worker holds the JWKS; a worker that never fetched it
        # (which worker takes a request is not ours to choose) answers 503, never 500.
        reads = [requests.get(f"{projects.url}/v1/projects", headers=headers, timeout=10) for _ in range(8)]
        assert all(r.status_code == 200 or r.json()["code"] == "unavailable" for r in reads)
        assert any(r.status_code == 200 for r in reads)
    finally:
        tenants.start()
        # Leave projects recovered for the next test: each worker's token provider fails at
        # once for a second after its last failed fetch (aerie_client.http.ClientCredentials).
        wait_for(lambda: all(write().status_code == 201 for _ in range(4)), timeout=10)


class SSEClient:
    """An open event stream on a raw socket, read by its own thread (recv returns what came)."""

    def __init__(self, base_url: str, headers: dict[str, str], last_event_id: str | None = None) -> None:
        host, port = urlsplit(base_url).hostname or "127.0.0.1", urlsplit(base_url).port or 80
        self.sock = socket.create_connection((host, port), timeout=30)
        lines = ["GET /v1/projects/events HTTP/1.1", f"Host: {host}:{port}", "Accept: text/event-stream"]
        lines += [f"{k}: {v}" for k, v in headers.items()]
        if last_event_id:
            lines.append(f"Last-Event-ID: {last_event_id}")
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        self.data = b""
        self.closed = False
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        try:
            while chunk := self.sock.recv(65536):
                with self._lock:
                    self.data += chunk
        except OSError:
            pass
        self.closed = True

    @property
    def status(self) -> int | None:
        head = self.data.split(b"\r\n", 1)[0].split()
        return int(head[1]) if len(head) > 1 else None

    def events(self) -> list[dict]:
        """The project events received so far, each checked to carry its event id as ``id:``."""
        with self._lock:
            body = self.data.partition(b"\r\n\r\n")[2].decode(errors="replace")
        out = []
        for block in body.split("\n\n")[:-1]:  # the last block may be incomplete
            fields = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line and line[0] != ":")
            if fields.get("event", "").startswith("project."):
                event = json.loads(fields["data"])
                assert fields["id"] == event["id"]
                out.append(event)
        return out

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()


def latencies_ms(url: str, headers: dict[str, str], n: int = 200) -> list[float]:
    """``n`` sequential GETs, each on a new connection (uWSGI's http-socket closes them)."""
    out = []
    for _ in range(n):
        started = time.perf_counter()
        r = requests.get(url, headers=headers, timeout=10)
        out.append((time.perf_counter() - started) * 1000)
        assert r.status_code == 200, r.text
    return sorted(out)


def percentile(sorted_ms: list[float], p: float) -> float:
    return sorted_ms[min(len(sorted_ms) - 1, max(0, round(p / 100 * len(sorted_ms)) - 1))]


def instance_pss_mb(service: UwsgiService) -> float:
    """Memory of the uWSGI master and its workers together (PSS: shared pages counted once), MB."""
    assert service.process is not None
    pids = [service.process.pid]
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == service.process.pid:
                pids.append(int(stat.parent.name))
    total_kb = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total_kb += int(line.split()[1])
    return total_kb / 1024


def test_fifty_open_streams_leave_the_api_its_latency(http: Http, projects: UwsgiService):
    """50 streams open on one instance (2 workers): GET latency stays, every stream gets every event."""
    _tenant, headers = new_tenant(http)
    project = requests.post(f"{projects.url}/v1/projects", json={"name": "Measured"}, headers=headers, timeout=5)
    assert project.status_code == 201, project.text
    url = f"{projects.url}/v1/projects/{project.json()['id']}"
    latencies_ms(url, headers, 20)  # warm both workers (JWKS, tenant cache)
    quiet = latencies_ms(url, headers)
    pss_quiet = instance_pss_mb(projects)

    streams = [SSEClient(projects.url, headers) for _ in range(50)]
    try:
        assert wait_for(lambda: all(s.status is not None for s in streams), 10)
        assert [s.status for s in streams] == [200] * 50
        busy = latencies_ms(url, headers)
        pss_busy = instance_pss_mb(projects)
        created = [
            requests.post(f"{projects.url}/v1/projects", json={"name": f"Fan {i}"}, headers=headers, timeout=5).json()
            for i in range(3)
        ]
        want = [p["id"] for p in created]
        assert wait_for(lambda: all(len(s.events()) >= 3 for s in streams), 10)
        for s in streams:
            assert [e["data"]["project"]["id"] for e in s.events()] == want
    finally:
        for s in streams:
            s.close()
    figures = {
        "p50_ms": (round(percentile(quiet, 50), 2), round(percentile(busy, 50), 2)),
        "p99_ms": (round(percentile(quiet, 99), 2), round(percentile(busy, 99), 2)),
        "pss_mb": (round(pss_quiet, 1), round(pss_busy, 1)),
    }
    print(f"\nwithout streams / with 50 streams: {figures}")
    # Ratios with generous bounds (the machine is shared and noisy): a starved API would be
    # many times slower, or time out, not 2-4 times.
    assert percentile(busy, 50) < 2.5 * percentile(quiet, 50) + 2, figures
    assert percentile(busy, 99) < 4 * percentile(quiet, 99) + 10, figures
    assert pss_busy < 128, figures  # the instance's memory limit


def test_resume_with_last_event_id_over_the_real_server(http: Http, projects: UwsgiService):
    _tenant, headers = new_tenant(http)
    first = SSEClient(projects.url, headers)
    try:
        assert wait_for(lambda: first.status == 200, 5)
        a = requests.post(f"{projects.url}/v1/projects", json={"name": "One"}, headers=headers, timeout=5).json()
        assert wait_for(lambda: len(first.events()) == 1, 5)
    finally:
        first.close()
    seen = first.events()[0]["id"]
    b = requests.post(f"{projects.url}/v1/projects", json={"name": "Two"}, headers=headers, timeout=5).json()
    requests.patch(f"{projects.url}/v1/projects/{a['id']}", json={"name": "Uno"}, headers=headers, timeout=5)
    again = SSEClient(projects.url, headers, last_event_id=seen)
    try:
        assert wait_for(lambda: len(again.events()) == 2, 5)
        got = again.events()
        assert [(e["type"], e["data"]["project"]["id"]) for e in got] == [
            ("project.created", b["id"]),
            ("project.updated", a["id"]),
        ]
    finally:
        again.close()


def test_abandoned_streams_free_their_threads(http: Http, projects: UwsgiService):
    """Three times 50 streams, each dropped: more than the 144 an instance holds, so hang-ups free slots."""
    _tenant, headers = new_tenant(http)
    for round_ in range(3):
        opened = [SSEClient(projects.url, headers) for _ in range(50)]
        assert wait_for(lambda: all(s.status is not None for s in opened), 10)  # noqa: B023
        assert [s.status for s in opened] == [200] * 50, (
            round_,
            [s.status for s in opened],
            [s.data[-150:] for s in opened if s.status != 200][:2],
        )
        for s in opened:
            s.close()
        time.sleep(1.5)
    r = requests.get(f"{projects.url}/v1/projects", headers=headers, timeout=5)
    assert r.status_code == 200
