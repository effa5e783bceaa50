"""Start-up and shutdown of a service under the production uWSGI ini (shared/uwsgi/base.ini).

Cloud Foundry sends SIGTERM and, 10 s later, SIGKILL. A request in flight at SIGTERM must be
answered, and the process must be gone before the SIGKILL. A connection that arrives during
the stop must be refused (the router retries it on another instance), never accepted into the
listen queue and reset when the instance exits (a 502). A request is made slow without
any test-only code in the service: the test's own Redis is paused for writes
(``CLIENT PAUSE ... WRITE``), so a real ``POST /v1/tenants`` waits inside Redis while the
service is told to stop. At start-up, an app that cannot be imported must stop the whole
instance (``need-app``), never leave workers that answer 500.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import requests
from conftest import REPO, Http, tenants_env

from aerie.local.redis_server import RedisServer, free_port
from aerie.testing.keys import TestKey
from aerie.testing.polling import wait_for
from aerie.testing.process import UwsgiService

BASE_INI = REPO / "shared" / "uwsgi" / "base.ini"
#: How long Redis holds writes back: well past the moment SIGTERM arrives, well inside
#: uWSGI's 8 s worker-reload-mercy and Cloud Foundry's 10 s.
PAUSE_MS = 2500


@pytest.fixture(scope="module")
def own_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A Redis of this module's own: pausing the shared one would stall every other test."""
    server = RedisServer(tmp_path_factory.mktemp("lifecycle-redis"), password="lifecycle-pass", appendonly=False)
    server.start()
    yield server
    server.stop()


def paused_writes(client: redis.Redis) -> int:
    """Clients waiting on a write that CLIENT PAUSE holds back (not the stream readers' XREADGROUP BLOCK)."""
    clients = client.client_list()
    return sum(1 for c in clients if "b" in c["flags"] and c["cmd"] not in {"xreadgroup", "xread", "blpop", "brpop"})


def test_sigterm_lets_a_slow_request_finish(own_redis: RedisServer, signing_key: TestKey, tmp_path: Path) -> None:
    port = free_port()
    env = tenants_env(own_redis, signing_key, port)
    env["AERIE_REDIS_READ_TIMEOUT"] = "15"  # the pause below must slow the request, not fail it
    service = UwsgiService(REPO / "services" / "tenants", port, env, log_path=tmp_path / "tenants.log")
    control = redis.Redis.from_url(own_redis.url, decode_responses=True)
    answers: list[requests.Response | BaseException] = []
    try:
        service.start()
        service.wait_workers_loaded(2)  # a worker still loading its app would miss the signal
        http = Http(service.url)
        admin = http.bearer()
        slug = f"slow-{uuid.uuid4().hex[:10]}"

        def slow_create() -> None:
            try:
                answers.append(
                    requests.post(
                        f"{service.url}/v1/tenants", json={"slug": slug, "name": "Slow"}, headers=admin, timeout=30
                    )
                )
            except BaseException as exc:  # handed to the test thread, which asserts on it
                answers.append(exc)

        control.execute_command("CLIENT", "PAUSE", PAUSE_MS, "WRITE")
        paused_at = time.monotonic()
        caller = threading.Thread(target=slow_create, daemon=True)
        caller.start()
        # In flight for certain: the service's write is waiting inside Redis.
        assert wait_for(lambda: paused_writes(control) > 0, PAUSE_MS / 1000 - 0.5, interval=0.02), (
            "the request never reached Redis while it was paused"
        )
        assert service.process is not None
        service.process.terminate()
        code = service.process.wait(timeout=10)  # Cloud Foundry's SIGKILL comes at 10 s
        caller.join(timeout=10)
        assert answers, "the in-flight request got no answer"
        answer = answers[0]
        assert not isinstance(answer, BaseException), f"the in-flight request was dropped: {answer!r}"
        assert answer.status_code == 201, answer.text
        assert answer.json()["slug"] == slug
        # It really waited for Redis, so SIGTERM arrived while it was in flight.
        assert time.monotonic() - paused_at >= PAUSE_MS / 1000 * 0.8
        assert code == 0, service.log_tail()
        assert "graceful shutdown" in service.log_tail(20_000)
    finally:
        control.execute_command("CLIENT", "UNPAUSE")
        control.close()
        service.stop()
    # The acknowledged write is in Redis, not only in the response (storage: tenants:t:{id}).
    stored = redis.Redis.from_url(own_redis.url, decode_responses=True)
    try:
        assert stored.get(f"tenants:t:{answer.json()['id']}"), "the tenant acknowledged during shutdown is not stored"
    finally:
        stored.close()


def _get_health(port: int) -> str:
    """One ``GET /health`` on a new connection: "answered", "refused", or what went wrong."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
            conn.sendall(b"GET /health HTTP/1.1\r\nHost: test\r\n\r\n")
            answer = b""
            while chunk := conn.recv(65536):
                answer += chunk
    except ConnectionRefusedError:
        return "refused"
    except OSError as exc:
        return type(exc).__name__
    if answer.startswith(b"HTTP/1.1 200 "):
        return "answered"
    return answer.partition(b"\r\n")[0].decode(errors="replace") or "closed unanswered"


def test_sigterm_refuses_new_connections(own_redis: RedisServer, signing_key: TestKey, tmp_path: Path) -> None:
    """Under a steady stream (8 clients, each a new connection every 10 ms), SIGTERM: the
    requests in flight are answered and every later connection is refused at once, not queued
    for a second and reset when the instance exits."""
    port = free_port()
    service = UwsgiService(
        REPO / "services" / "tenants", port, tenants_env(own_redis, signing_key, port), log_path=tmp_path / "t.log"
    )
    outcomes: list[tuple[float, str]] = []  # (when the request started, how it ended)
    stop = threading.Event()

    def client() -> None:
        while not stop.is_set():
            started = time.monotonic()
            outcomes.append((started, _get_health(port)))
            time.sleep(0.01)

    clients = [threading.Thread(target=client, daemon=True) for _ in range(8)]
    try:
        service.start()
        service.wait_workers_loaded(2)  # a worker still loading its app would miss the signal
        for thread in clients:
            thread.start()
        time.sleep(1.0)
        assert service.process is not None
        signalled = time.monotonic()
        service.process.terminate()
        code = service.process.wait(timeout=10)
        exited = time.monotonic()
        time.sleep(0.3)  # connections after the exit: refused too
    finally:
        stop.set()
        for thread in clients:
            thread.join(15)
        service.stop()
    counts = Counter(outcome for _, outcome in outcomes)
    print(f"\nSIGTERM under a steady stream: exit after {exited - signalled:.2f}s, {dict(counts)}")
    assert code == 0, service.log_tail()
    before = Counter(outcome for started, outcome in outcomes if started < signalled)
    assert set(before) == {"answered"}, f"a request sent before SIGTERM was not answered: {before}"
    # Refused while the instance was still finishing its requests: the socket closed first.
    assert any(outcome == "refused" and started < exited for started, outcome in outcomes), outcomes[-20:]
    # Linux resets the connections already in the accept queue at the instant the listener
    # is shut down (inet_csk_listen_stop): a handful that raced the close, never one that
    # arrived after it (50 ms: the clients' threads take turns). On Cloud Foundry the router
    # has dropped the route before SIGTERM.
    closed_at = min(started for started, outcome in outcomes if outcome == "refused")
    dropped = [(started, outcome) for started, outcome in outcomes if outcome not in {"answered", "refused"}]
    assert all(outcome == "ConnectionResetError" and started < closed_at + 0.05 for started, outcome in dropped), (
        f"connections were dropped after the socket closed: {counts}"
    )
    assert len(dropped) <= 2, f"more than the close's own race was reset: {counts}"


def _broken_app(tmp_path: Path, module: str, source: str | None) -> UwsgiService:
    """A uWSGI instance with the production base.ini whose app module is broken in one way."""
    if source is not None:
        (tmp_path / f"{module}.py").write_text(source)
    (tmp_path / "uwsgi.ini").write_text(f"[uwsgi]\nmodule = {module}:application\npythonpath = %d\nini = {BASE_INI}\n")
    return UwsgiService(tmp_path, free_port(), {}, log_path=tmp_path / "uwsgi.log")


@pytest.mark.parametrize(
    ("module", "source", "says"),
    [
        ("raises_at_import", "raise ImportError(\"No module named 'a_missing_dependency'\")\n", "a_missing_dependency"),
        ("no_such_module_anywhere", None, "no_such_module_anywhere"),
        ("no_callable", "app = None  # 'application' is never defined\n", "callable not found"),
    ],
)
def test_an_app_that_cannot_load_stops_start_up(tmp_path: Path, module: str, source: str | None, says: str) -> None:
    service = _broken_app(tmp_path, module, source)
    served: list[int] = []
    try:
        service.start(wait_ready=False)
        assert service.process is not None
        deadline = time.monotonic() + 30
        while service.process.poll() is None and time.monotonic() < deadline:
            # Anything that answers at all would be the half-alive worker need-app forbids.
            with contextlib.suppress(requests.RequestException):
                served.append(requests.get(f"{service.url}/health", timeout=1).status_code)
            time.sleep(0.05)
        code = service.process.poll()
        assert code is not None, f"uWSGI is still running with an app that cannot load:\n{service.log_tail()}"
        assert code != 0
        assert served == [], f"a worker answered without an app: {served}"
        log = service.log_tail(20_000)
        assert "no app loaded" in log and says in log
    finally:
        service.stop()
