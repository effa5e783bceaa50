"""Faults a deployed Aerie meets, against real uWSGI processes: Redis away, tenants away, a slow peer.

The Redis outage and the tenants outage run on a stack of this module's own (Redis with
``appendfsync always``, tenants, projects), so stopping its parts cannot disturb the other
modules. What is checked is what the contract promises: a 503 with ``Retry-After`` while a
dependency is away and never a 500, full recovery afterwards, and no acknowledged write lost.
"""

from __future__ import annotations

import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests
from conftest import REPO, Http, tenants_env
from test_projects_service import new_tenant, projects_env

from aerie.local.redis_server import RedisServer, free_port
from aerie.testing.keys import TestKey
from aerie.testing.polling import wait_for
from aerie.testing.process import UwsgiService


@dataclass
class Stack:
    redis: RedisServer
    tenants: UwsgiService
    projects: UwsgiService


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, signing_key: TestKey) -> Iterator[Stack]:
    server = RedisServer(tmp_path_factory.mktemp("faults-redis"), appendfsync="always", password="faults-pass")
    logs = tmp_path_factory.mktemp("faults-logs")
    server.start()
    port = free_port()
    tenants = UwsgiService(
        REPO / "services" / "tenants", port, tenants_env(server, signing_key, port), log_path=logs / "tenants.log"
    )
    projects = UwsgiService(
        REPO / "services" / "projects",
        free_port(),
        projects_env(server, tenants.url),
        log_path=logs / "projects.log",
    )
    try:
        tenants.start()
        projects.start()
        yield Stack(server, tenants, projects)
    finally:
        projects.stop()
        tenants.stop()
        server.stop()


def fresh(method: str, url: str, **kw: object) -> requests.Response:
    """One request on a new connection (uWSGI closes each), so calls spread over the workers."""
    kw.setdefault("timeout", 10)
    return requests.request(method, url, **kw)  # type: ignore[arg-type]


def problem_is_unavailable(r: requests.Response) -> str | None:
    """Why ``r`` is not the contract's 503 (None when it is)."""
    if not r.headers.get("Retry-After"):
        return "503 without Retry-After"
    if not r.headers.get("Content-Type", "").startswith("application/problem+json"):
        return f"503 as {r.headers.get('Content-Type')}"
    try:
        body = r.json()
    except ValueError:
        return f"503 body {r.text[:200]}"
    if body.get("code") != "unavailable" or "Traceback" in r.text:
        return f"503 body {r.text[:200]}"
    return None


@dataclass
class Outcome:
    kind: str
    started: float
    status: int | None
    body: dict | None = None
    error: str | None = None


@dataclass
class Load:
    """A few threads calling ``ops`` in turn until stopped, keeping every outcome."""

    ops: dict[str, Callable[[], requests.Response]]
    threads: int = 3
    outcomes: list[Outcome] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _workers: list[threading.Thread] = field(default_factory=list)

    def __enter__(self) -> Load:
        for n in range(self.threads):
            t = threading.Thread(target=self._run, args=(n,), daemon=True)
            t.start()
            self._workers.append(t)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._workers:
            t.join(timeout=30)

    def _run(self, n: int) -> None:
        kinds = list(self.ops)
        i = n
        while not self._stop.is_set():
            kind = kinds[i % len(kinds)]
            i += 1
            started = time.monotonic()
            try:
                r = self.ops[kind]()
            except requests.RequestException as exc:
                self.outcomes.append(Outcome(kind, started, None, error=type(exc).__name__))
            else:
                try:
                    body = r.json()
                except ValueError:
                    body = None
                self.outcomes.append(Outcome(kind, started, r.status_code, body))
                why = problem_is_unavailable(r) if r.status_code == 503 else None
                if why:  # a 503 that breaks the contract counts as an unexpected status of its own
                    self.outcomes.append(Outcome(kind, started, -503, error=why))
            time.sleep(0.01)

    def count(self, kind: str, status: int, after: float = 0.0) -> int:
        return sum(1 for o in list(self.outcomes) if o.kind == kind and o.status == status and o.started > after)


def test_redis_restart_under_load_loses_no_acknowledged_write(stack: Stack) -> None:
    http = Http(stack.tenants.url)
    admin = http.bearer()
    tenant, headers = new_tenant(http)
    projects_url = f"{stack.projects.url}/v1/projects"
    load = Load(
        {
            "tenant.create": lambda: fresh(
                "POST",
                f"{stack.tenants.url}/v1/tenants",
                json={"slug": f"o-{uuid.uuid4().hex[:12]}", "name": "O"},
                headers=admin,
            ),
            "project.create": lambda: fresh(
                "POST", projects_url, json={"name": uuid.uuid4().hex[:10]}, headers=headers
            ),
            "project.list": lambda: fresh("GET", projects_url, headers=headers, params={"limit": 5}),
            "tenant.get": lambda: fresh("GET", f"{stack.tenants.url}/v1/tenants/{tenant['id']}", headers=admin),
        }
    )
    with load:
        assert wait_for(lambda: load.count("tenant.create", 201) >= 5 and load.count("project.create", 201) >= 5, 20)
        stack.redis.kill()  # SIGKILL: only appendfsync always keeps what was acknowledged
        down_at = time.monotonic()
        try:
            assert wait_for(lambda: all(load.count(kind, 503, down_at) >= 2 for kind in load.ops), 20), (
                "the outage never showed as 503 on every route"
            )
            # Both processes stay alive and say what is missing.
            assert fresh("GET", f"{stack.projects.url}/health").status_code == 200
            ready = fresh("GET", f"{stack.tenants.url}/ready")
            assert ready.status_code == 503 and "redis" in ready.json()["failed"], (ready.status_code, ready.text)
        finally:
            stack.redis.start()
        up_at = time.monotonic()
        assert wait_for(
            lambda: all(load.count(kind, 201, up_at) >= 3 for kind in ("tenant.create", "project.create")), 30
        ), "writes did not recover after Redis came back"
    outcomes = list(load.outcomes)
    unexpected = [o for o in outcomes if o.status not in (200, 201, 503)]
    assert not unexpected, unexpected[:10]
    assert sum(1 for o in outcomes if o.status == 503) > 0

    # Full recovery: every worker of both services answers again.
    for url in (stack.tenants.url, stack.projects.url):
        answers = [fresh("GET", f"{url}/ready") for _ in range(6)]
        assert all(r.status_code == 200 for r in answers), [(url, r.status_code, r.text) for r in answers]
    assert all(fresh("GET", projects_url, headers=headers).status_code == 200 for _ in range(10))

    # No acknowledged write lost: every 201 is readable after the restart.
    acked_tenants = {o.body["id"] for o in outcomes if o.kind == "tenant.create" and o.status == 201 and o.body}
    acked_projects = {o.body["id"] for o in outcomes if o.kind == "project.create" and o.status == 201 and o.body}
    assert not acked_tenants - list_ids(f"{stack.tenants.url}/v1/tenants", admin)
    assert not acked_projects - list_ids(projects_url, headers)


def list_ids(url: str, headers: dict[str, str]) -> set[str]:
    ids: set[str] = set()
    cursor: str | None = None
    while True:
        params: dict[str, str | int] = {"limit": 200, **({"cursor": cursor} if cursor else {})}
        r = fresh("GET", url, headers=headers, params=params)
        assert r.status_code == 200, r.text
        page = r.json()
        ids.update(item["id"] for item in page["items"])
        cursor = page["next_cursor"]
        if not cursor:
            return ids


def test_after_a_redis_restart_revocation_still_reaches_every_worker(stack: Stack) -> None:
    """The pub/sub subscribers must reconnect by themselves, or a revoked client keeps working."""
    http = Http(stack.tenants.url)
    admin = http.bearer()
    tenant, _ = new_tenant(http)
    client = http.request(
        "POST",
        f"/v1/tenants/{tenant['id']}/clients",
        json={"name": "rev", "scopes": ["tenants:read", "projects:read"]},
        headers=admin,
    ).json()
    headers = http.bearer(http.token(client["client_id"], client["client_secret"]))
    stack.redis.kill()
    stack.redis.start()
    assert wait_for(lambda: fresh("GET", f"{stack.tenants.url}/ready").status_code == 200, 20)
    targets = [f"{stack.tenants.url}/v1/tenants/{tenant['id']}", f"{stack.projects.url}/v1/projects"]
    assert wait_for(lambda: all(fresh("GET", t, headers=headers).status_code == 200 for t in targets * 5), 20)
    r = http.request("DELETE", f"/v1/tenants/{tenant['id']}/clients/{client['client_id']}", headers=admin)
    assert r.status_code == 204
    # The contract's second, plus the subscribers' reconnect back-off (at most 2 s).
    assert wait_for(lambda: {fresh("GET", t, headers=headers).status_code for t in targets * 5} == {401}, 5)


def test_tenants_away_dependants_serve_what_does_not_need_it_and_recover(stack: Stack) -> None:
    """Projects keeps serving what it can answer alone, refuses the rest with 503, and recovers.

    A tenant's status reaches projects with the ``tenant.*`` events, so while pub/sub is up
    projects needs tenants for nothing a known tenant does. A Redis restart in the middle of
    the tenants outage empties those caches (events may have been missed), and from then on
    writes need a lookup that only a returning tenants service can answer.
    """
    http = Http(stack.tenants.url)
    _tenant, headers = new_tenant(http)
    projects_url = f"{stack.projects.url}/v1/projects"

    def create() -> requests.Response:
        return fresh("POST", projects_url, json={"name": uuid.uuid4().hex[:10]}, headers=headers)

    assert all(create().status_code == 201 for _ in range(8))  # every worker knows the tenant
    stack.tenants.stop()
    try:
        assert all(fresh("GET", projects_url, headers=headers).status_code == 200 for _ in range(6))
        assert all(create().status_code == 201 for _ in range(6))
        assert fresh("GET", f"{stack.projects.url}/health").status_code == 200

        def ready_names_tenants() -> bool:
            r = fresh("GET", f"{stack.projects.url}/ready")
            return r.status_code == 503 and "tenants" in r.json().get("failed", [])

        assert wait_for(ready_names_tenants, 10), "projects' /ready does not say that tenants is away"
        stack.redis.kill()
        stack.redis.start()

        def reads_back() -> bool:  # they need only Redis and the cached JWKS
            return all(fresh("GET", projects_url, headers=headers).status_code == 200 for _ in range(6))

        assert wait_for(reads_back, 20), "reads did not come back with Redis while tenants was away"
        blind = [create() for _ in range(6)]
        assert all(r.status_code == 503 and problem_is_unavailable(r) is None for r in blind), [
            (r.status_code, r.text[:100]) for r in blind
        ]
    finally:
        stack.tenants.start()
    assert wait_for(lambda: all(create().status_code == 201 for _ in range(6)), 15), (
        "no recovery after tenants came back"
    )


class SilentPeer:
    """A TCP server that accepts connections and never answers: a peer stuck in a GC pause or a deadlock."""

    def __init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        self._held: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            self._held.append(conn)

    def close(self) -> None:
        self._listener.close()
        for conn in self._held:
            conn.close()


def test_a_silent_tenants_service_costs_a_timeout_not_a_worker(
    redis_server: RedisServer, tenants: UwsgiService, tmp_path: Path
) -> None:
    """Projects asks a tenants service that never answers; the real one still serves the JWKS."""
    peer = SilentPeer()
    env = projects_env(redis_server, peer.url)
    env["AERIE_ISSUER"] = tenants.url
    env["AERIE_JWKS_URL"] = f"{tenants.url}/.well-known/jwks.json"
    projects = UwsgiService(REPO / "services" / "projects", free_port(), env, log_path=tmp_path / "projects.log")
    # Made before projects starts: its tenant.created event (which every process takes the
    # tenant from) is gone by then, so projects must ask the silent peer.
    _tenant, headers = new_tenant(Http(tenants.url))
    try:
        projects.start(ready_path="/health")  # its /ready rightly says 503: tenants does not answer
        url = f"{projects.url}/v1/projects"
        results: list[tuple[float, requests.Response | Exception]] = []

        def write() -> None:
            started = time.monotonic()
            try:
                r = fresh("POST", url, json={"name": uuid.uuid4().hex[:8]}, headers=headers, timeout=30)
            except requests.RequestException as exc:
                results.append((time.monotonic() - started, exc))
            else:
                results.append((time.monotonic() - started, r))

        writers = [threading.Thread(target=write, daemon=True) for _ in range(6)]
        for w in writers:
            w.start()
        # For as long as the writes wait on tenants, the workers answer what needs no peer.
        health: list[int] = []
        reads: list[int] = []
        deadline = time.monotonic() + 30
        while any(w.is_alive() for w in writers) and time.monotonic() < deadline:
            health.append(fresh("GET", f"{projects.url}/health", timeout=5).status_code)
            reads.append(fresh("GET", url, headers=headers, timeout=10).status_code)
            time.sleep(0.05)
        for w in writers:
            w.join(timeout=30)
        assert len(health) >= 3, "the writes did not wait on the silent peer at all"
        assert set(health) == {200} and set(reads) == {200}, (health, reads)
        assert len(results) == 6
        for elapsed, r in results:
            assert isinstance(r, requests.Response), r
            assert r.status_code == 503 and problem_is_unavailable(r) is None, r.text
            # The client's 1 s connect + 3 s read timeout, one token fetch at a time and a
            # 1 s failure back-off; far below uWSGI's 30 s harakiri.
            assert elapsed < 15, elapsed
        # No worker is left stuck: all of them answer again at once.
        assert all(fresh("GET", f"{projects.url}/health", timeout=5).status_code == 200 for _ in range(10))
    finally:
        projects.stop()
        peer.close()
