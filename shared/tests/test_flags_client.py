"""The Python flags client against a small real HTTP server that the tests control.

The server (http.server in a thread) serves ``/v1/flags/snapshot`` and an SSE
``/v1/flags/stream`` the way the flags service does; a test changes the snapshot, pushes
events, refuses the stream, or kills the server and brings it back on the same port.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import random
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from aerie.testing.polling import wait_for
from aerie_client.flags.client import Flag, FlagsClient
from aerie_client.flags.evaluation import Evaluation
from aerie_client.flags.sync import Backoff

TOKEN = "token-for-tests"
NEW_DASHBOARD = Flag("new-dashboard", default=False)
CHECKOUT = Flag("checkout", default="legacy")
UNKNOWN = Flag("no-such-flag", default="fallback")


def snapshot_body(
    revision: int, *, dashboard_for_team: bool = True, checkout_default: str = "control"
) -> dict[str, Any]:
    return {
        "flags": {
            "new-dashboard": {
                "key": "new-dashboard",
                "enabled": True,
                "default": False,
                "allow_overrides": "user",
                "rules": [
                    {
                        "conditions": [{"attribute": "tenant.plan", "op": "eq", "values": ["team"]}],
                        "serve": dashboard_for_team,
                    }
                ],
            },
            "checkout": {
                "key": "checkout",
                "enabled": True,
                "default": checkout_default,
                "variants": [{"name": "control", "weight": 50}, {"name": "treatment", "weight": 50}],
                "rules": [],
                "allow_overrides": "tenant",
            },
        },
        "overrides": {"tenant": {}, "users": {"new-dashboard": {"vip": False}}},
        "tenant": {"plan": "team", "created_at": "2024-03-01T12:00:00Z", "language": "en"},
        "tenant_id": "tnt-1",
        "revision": revision,
    }


class FakeFlagsService:
    """The two routes the client uses, on a port that survives a restart."""

    def __init__(self, port: int = 0) -> None:
        self.snapshot: Any = snapshot_body(1)
        self.stream_status = 200
        self.chunked = False
        self.heartbeat_s = 0.5
        self.snapshot_requests = 0
        self.stream_requests = 0
        self.bad_auth = 0
        self._streams: list[queue.Queue[bytes | None]] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", port), self._handler())
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()

    def set_snapshot(self, body: Any) -> None:
        with self._lock:
            self.snapshot = body

    def push(self, event_type: str = "flag.updated", data: dict[str, Any] | None = None) -> None:
        frame = f"id: evt_{random.getrandbits(32)}\nevent: {event_type}\ndata: {json.dumps(data or {})}\n\n".encode()
        with self._lock:
            for stream in self._streams:
                stream.put(frame)

    def open_streams(self) -> int:
        with self._lock:
            return len(self._streams)

    def stop(self) -> None:
        """Kill the server: no new connections, and every open stream is cut."""
        self._server.shutdown()
        self._server.server_close()
        with self._lock:
            for stream in self._streams:
                stream.put(None)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        service = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                if self.headers.get("Authorization") != f"Bearer {TOKEN}":
                    service.bad_auth += 1
                    self._send(401, b'{"code": "unauthorized"}')
                elif self.path == "/v1/flags/snapshot":
                    service.snapshot_requests += 1
                    with service._lock:
                        body = service.snapshot
                    self._send(200, body if isinstance(body, bytes) else json.dumps(body).encode())
                elif self.path == "/v1/flags/stream":
                    service.stream_requests += 1
                    self._stream()
                else:
                    self._send(404, b"{}")

            def _send(self, status: int, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _stream(self) -> None:
                if service.stream_status != 200:
                    self._send(service.stream_status, b'{"code": "unavailable"}')
                    return
                events: queue.Queue[bytes | None] = queue.Queue()
                chunked = service.chunked
                if chunked:
                    self.protocol_version = "HTTP/1.1"
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Cache-Control", "no-cache")
                if chunked:
                    self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                with service._lock:
                    service._streams.append(events)
                try:
                    self._write(b"retry: 1000\n: flag changes\n\n", chunked)
                    while True:
                        try:
                            frame = events.get(timeout=service.heartbeat_s)
                        except queue.Empty:
                            frame = b": heartbeat\n\n"
                        if frame is None:
                            break
                        self._write(frame, chunked)
                except OSError:
                    pass
                finally:
                    with service._lock:
                        service._streams.remove(events)
                    self.close_connection = True

            def _write(self, data: bytes, chunked: bool) -> None:
                if chunked:
                    data = f"{len(data):x}\r\n".encode() + data + b"\r\n"
                self.wfile.write(data)
                self.wfile.flush()

        return Handler


class Token:
    def __init__(self) -> None:
        self.invalidated: list[str] = []

    def token(self) -> str:
        return TOKEN

    def invalidate(self, token: str) -> None:
        self.invalidated.append(token)


@pytest.fixture
def service() -> Iterator[FakeFlagsService]:
    server = FakeFlagsService()
    yield server
    with contextlib.suppress(Exception):
        server.stop()


def make_client(url: str, **options: Any) -> FlagsClient:
    settings: dict[str, Any] = {
        "poll_interval_s": 60.0,
        "safety_poll_s": 60.0,
        "debounce_s": 0.02,
        "reconnect_delay_s": 0.05,
        "backoff_initial_s": 0.05,
        "backoff_max_s": 0.5,
        "connect_timeout_s": 0.5,
        "read_timeout_s": 2.0,
    }
    settings.update(options)
    return FlagsClient(url, Token(), **settings)


@pytest.fixture
def clients() -> Iterator[list[FlagsClient]]:
    made: list[FlagsClient] = []
    yield made
    for client in made:
        client.close()


def started(clients: list[FlagsClient], url: str, **options: Any) -> FlagsClient:
    client = make_client(url, **options)
    clients.append(client)
    assert client.start(timeout_s=5)
    return client


def settled(client: FlagsClient) -> bool:
    """The stream is up and the refetch its connect asked for is done: later changes need an event."""
    syncer = client.syncer
    return syncer is not None and syncer.stream_connected and syncer.fetches >= 2 and not syncer.refresh_pending


def free_port() -> int:
    server = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    port = server.server_address[1]
    server.server_close()
    return port


# -- the first fetch, and what the snapshot decides -------------------------------------


def test_initial_fetch_evaluates_locally_like_the_server(service, clients):
    client = started(clients, service.url)
    # tenant.plan comes from the snapshot, as the server adds it; the caller cannot spoof it.
    assert client.evaluate(NEW_DASHBOARD, user_id="u1", tenant={"plan": "free"}) == Evaluation(
        True, None, "TARGETING_MATCH", "rules[0]"
    )
    assert client.is_enabled(NEW_DASHBOARD, user_id="u1") is True
    assert client.evaluate(NEW_DASHBOARD, user_id="vip") == Evaluation(False, None, "TARGETING_MATCH", "override:user")
    assert client.value(CHECKOUT, user_id="u1") == "control"
    assert client.evaluate(CHECKOUT).variant == "control"
    assert client.revision == 1
    assert service.snapshot_requests >= 1 and service.bad_auth == 0


def test_unknown_flag_answers_the_declared_default_with_error(service, clients):
    client = started(clients, service.url)
    assert client.evaluate(UNKNOWN, user_id="u1") == Evaluation("fallback", None, "ERROR", None)
    assert client.is_enabled(Flag("no-such-flag", default=True)) is True


def test_a_service_never_reached_answers_declared_defaults_with_error(clients):
    client = make_client(f"http://127.0.0.1:{free_port()}")
    clients.append(client)
    assert client.start(timeout_s=0.3) is False
    assert client.evaluate(NEW_DASHBOARD, user_id="u1") == Evaluation(False, None, "ERROR", None)
    assert client.value(CHECKOUT) == "legacy"
    assert wait_for(lambda: client.syncer is not None and client.syncer.failed_fetches >= 2)
    assert client.evaluate(NEW_DASHBOARD).reason == "ERROR"  # never STALE: nothing was ever known


def test_a_client_evaluating_before_start_starts_itself(service, clients):
    client = make_client(service.url)
    clients.append(client)
    client.evaluate(NEW_DASHBOARD)  # starts the threads; may still answer ERROR
    assert wait_for(lambda: client.evaluate(NEW_DASHBOARD).reason == "TARGETING_MATCH")


# -- staying current ----------------------------------------------------------------


@pytest.mark.parametrize("chunked", [False, True], ids=["until-close", "chunked"])
def test_an_update_arrives_through_the_stream(service, clients, chunked):
    service.chunked = chunked
    service.heartbeat_s = 30  # an event must get through on its own, not pushed out by later bytes
    client = started(clients, service.url)  # polls only every 60 s: the stream must carry it
    assert wait_for(lambda: settled(client) and service.open_streams() == 1)
    service.set_snapshot(snapshot_body(2, dashboard_for_team=False))
    service.push("flag.updated")
    assert wait_for(lambda: client.revision == 2, timeout=2)
    assert client.evaluate(NEW_DASHBOARD, user_id="u1") == Evaluation(False, None, "TARGETING_MATCH", "rules[0]")


def test_a_burst_of_events_costs_few_fetches(service, clients):
    client = started(clients, service.url, debounce_s=0.3)
    assert wait_for(lambda: settled(client))
    before = service.snapshot_requests
    for revision in range(2, 22):
        service.set_snapshot(snapshot_body(revision))
        service.push("flag.override.set")
    assert wait_for(lambda: client.revision == 21)
    assert service.snapshot_requests - before <= 3


def test_stream_refused_falls_back_to_polling(service, clients):
    service.stream_status = 503  # e.g. the service's cap on open streams
    client = started(clients, service.url, poll_interval_s=0.2)
    service.set_snapshot(snapshot_body(2, checkout_default="treatment"))
    assert wait_for(lambda: client.value(CHECKOUT) == "treatment")
    assert not client.syncer.stream_connected and service.stream_requests >= 1
    assert client.evaluate(CHECKOUT).reason == "DEFAULT"  # the service answers: not stale


def test_server_killed_serves_the_last_values_as_stale(service, clients):
    client = started(clients, service.url)
    assert wait_for(lambda: client.syncer.stream_connected)
    service.stop()
    assert wait_for(lambda: client.evaluate(NEW_DASHBOARD, user_id="u1").reason == "STALE")
    assert client.evaluate(NEW_DASHBOARD, user_id="u1") == Evaluation(True, None, "STALE", "rules[0]")
    assert client.evaluate(NEW_DASHBOARD, user_id="vip") == Evaluation(False, None, "STALE", "override:user")
    assert client.evaluate(CHECKOUT) == Evaluation("control", "control", "STALE", None)
    assert client.evaluate(UNKNOWN).reason == "ERROR"


def test_reconnects_with_backoff_after_the_server_comes_back(service, clients):
    client = started(clients, service.url)
    assert wait_for(lambda: client.syncer.stream_connected)
    port = service.port
    service.stop()
    assert wait_for(lambda: client.stale)
    connects_before = client.syncer.stream_connects
    downtime_failures = client.syncer.failed_fetches
    # Down for a while: attempts back off instead of spinning.
    assert not wait_for(lambda: client.syncer.failed_fetches > downtime_failures + 40, timeout=1.5)

    back = FakeFlagsService(port)
    try:
        back.set_snapshot(snapshot_body(7, checkout_default="treatment"))
        assert wait_for(lambda: client.revision == 7, timeout=5)
        assert wait_for(lambda: client.syncer.stream_connected and back.open_streams() == 1, timeout=5)
        assert client.syncer.stream_connects > connects_before
        assert client.evaluate(CHECKOUT) == Evaluation("treatment", "treatment", "DEFAULT", None)
        # And the new stream carries changes again.
        back.set_snapshot(snapshot_body(8, checkout_default="control"))
        back.push()
        assert wait_for(lambda: client.revision == 8)
    finally:
        back.stop()


def test_a_malformed_snapshot_keeps_the_last_state_marked_stale(service, clients):
    client = started(clients, service.url, poll_interval_s=0.1)
    assert wait_for(lambda: client.syncer.stream_connected)
    service.set_snapshot(b"<html>proxy error</html>")
    service.push()
    assert wait_for(lambda: client.stale)
    assert client.evaluate(NEW_DASHBOARD, user_id="u1") == Evaluation(True, None, "STALE", "rules[0]")
    service.set_snapshot(snapshot_body(3))
    assert wait_for(lambda: client.revision == 3 and not client.stale)


def test_close_stops_the_threads_and_answers_stale(service, clients):
    before = set(threading.enumerate())  # earlier tests' clients may still be winding down
    client = started(clients, service.url)
    assert wait_for(lambda: client.syncer.stream_connected)
    threads = {t for t in set(threading.enumerate()) - before if t.name.startswith("aerie-flags-")}
    assert threads
    client.close()
    assert wait_for(lambda: not any(t.is_alive() for t in threads), timeout=10), [t.name for t in threads]
    assert wait_for(lambda: service.open_streams() == 0, timeout=10)
    assert client.evaluate(NEW_DASHBOARD, user_id="u1").reason == "STALE"


def test_a_fetch_landing_after_close_keeps_the_client_stale(service, clients):
    client = started(clients, service.url)
    assert client.evaluate(NEW_DASHBOARD, user_id="u1").reason != "STALE"
    client.close()
    client._set_snapshot(client._snapshot)  # the syncer's callback, from a fetch in flight at close()
    assert client.stale and client.evaluate(NEW_DASHBOARD, user_id="u1").reason == "STALE"


def test_a_refused_token_is_invalidated(service, clients):
    class Rotating(Token):
        def __init__(self) -> None:
            super().__init__()
            self.current = "expired"

        def token(self) -> str:
            return self.current

        def invalidate(self, token: str) -> None:
            super().invalidate(token)
            self.current = TOKEN

    provider = Rotating()
    client = FlagsClient(service.url, provider, backoff_initial_s=0.05, debounce_s=0.01)
    clients.append(client)
    assert client.start(timeout_s=5)
    assert "expired" in provider.invalidated and client.evaluate(NEW_DASHBOARD).reason == "TARGETING_MATCH"


# -- processes and threads ----------------------------------------------------------


def test_a_forked_child_gets_a_working_client(service, clients):
    client = started(clients, service.url)
    assert wait_for(lambda: settled(client))
    parent_syncer = client.syncer
    # A change the parent has not seen (no event): only the child's own fetch can find it.
    service.set_snapshot(snapshot_body(5, checkout_default="treatment"))
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report through the pipe, never return into pytest
        verdict = "fail"
        try:
            inherited = client.evaluate(NEW_DASHBOARD, user_id="u1").value is True
            fresh = wait_for(lambda: client.revision == 5, timeout=5)
            own_threads = client.syncer is not None and client.syncer is not parent_syncer
            value = client.value(CHECKOUT)
            verdict = f"{inherited} {fresh} {own_threads} {value}"
        finally:
            os.write(write_end, verdict.encode())
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end) as pipe:
        verdict = pipe.read()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert verdict == "True True True treatment"
    assert client.syncer is parent_syncer and parent_syncer.stream_connected  # the parent is untouched


def test_many_threads_evaluate_while_updates_arrive(service, clients):
    client = started(clients, service.url)
    assert wait_for(lambda: settled(client))
    allowed = {
        Evaluation(True, None, "TARGETING_MATCH", "rules[0]"),
        Evaluation(False, None, "TARGETING_MATCH", "rules[0]"),
    }
    problems: list[Any] = []
    stop = threading.Event()

    def evaluate_many() -> None:
        count = 0
        while not stop.is_set() or count < 2000:
            result = client.evaluate(NEW_DASHBOARD, user_id=f"user-{count}")
            if result not in allowed:
                problems.append(result)
            count += 1

    workers = [threading.Thread(target=evaluate_many) for _ in range(4)]
    for worker in workers:
        worker.start()
    for revision in range(2, 8):
        service.set_snapshot(snapshot_body(revision, dashboard_for_team=revision % 2 == 0))
        service.push()
        assert wait_for(lambda revision=revision: client.revision == revision)
    stop.set()
    for worker in workers:
        worker.join(10)
    assert not problems, problems[:5]
    assert client.evaluate(NEW_DASHBOARD, user_id="u") == Evaluation(False, None, "TARGETING_MATCH", "rules[0]")


def test_evaluation_never_raises_on_odd_calls(service, clients):
    client = started(clients, service.url)
    assert client.evaluate(NEW_DASHBOARD, user_id=object(), tenant=None, flag="x").reason == "TARGETING_MATCH"
    assert client.evaluate("not-a-flag").reason == "ERROR"  # type: ignore[arg-type]
    assert client.evaluate(Flag(None, default=1)).value == 1  # type: ignore[arg-type]


# -- backoff --------------------------------------------------------------------------


def test_backoff_grows_with_jitter_up_to_its_cap_and_resets():
    backoff = Backoff(0.5, 8.0, random.Random(1))
    delays = [backoff.next_delay() for _ in range(12)]
    ceilings = [min(8.0, 0.5 * 2**n) for n in range(12)]
    assert all(ceiling / 10 <= delay <= ceiling for delay, ceiling in zip(delays, ceilings, strict=True))
    assert len({round(d, 6) for d in delays[6:]}) > 1  # jittered, not lockstep
    backoff.reset()
    assert backoff.next_delay() <= 0.5
