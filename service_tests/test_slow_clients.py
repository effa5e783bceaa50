"""Clients that send their request slowly, over raw sockets to the real uWSGI (shared/uwsgi/base.ini).

Each instance serves from 2 workers of 2 threads, and uWSGI's ``http-socket`` reads a request's
head on the thread that accepted it, waiting ``socket-timeout`` for each read: a client that
sends a byte a second never trips it, and four of them held every thread (a normal client got
1 answer of 4 in 20 s). A request's head must arrive within
:data:`aerie.wsgi_guard.HEAD_DEADLINE` of its connection being accepted, and its body at
:data:`aerie.wsgi_guard.MIN_BODY_RATE` once :data:`aerie.wsgi_guard.BODY_GRACE` has passed.
The slow client is answered 408 (a problem document) and cut, and normal clients keep being
served.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
from conftest import BOOT_ID, BOOT_SECRET, start_service

from aerie.local.redis_server import RedisServer
from aerie.testing.http import basic_auth
from aerie.testing.process import UwsgiService
from aerie.wsgi_guard import BODY_GRACE, HEAD_DEADLINE

#: Slow connections opened at once: twice the threads of an instance (2 workers x 2 threads).
SLOW_CLIENTS = 8


@dataclass
class Cut:
    """How a slow connection ended: after how many seconds, and what the server sent first."""

    seconds: float
    received: bytes
    sent: int


class Dribbler(threading.Thread):
    """A connection that sends ``prefix`` at once, then ``rest`` one byte every ``interval`` seconds."""

    def __init__(self, port: int, prefix: bytes, rest: bytes, interval: float = 1.0) -> None:
        super().__init__(daemon=True)
        self.port, self.prefix, self.rest, self.interval = port, prefix, rest, interval
        self.cut: Cut | None = None
        self.connected = threading.Event()

    def run(self) -> None:
        start = time.monotonic()
        received, sent = b"", 0
        with socket.create_connection(("127.0.0.1", self.port), timeout=60) as conn:
            self.connected.set()
            conn.settimeout(self.interval)
            try:
                conn.sendall(self.prefix)
                for byte in self.rest:
                    try:
                        chunk = conn.recv(65536)
                    except TimeoutError:
                        conn.sendall(bytes([byte]))
                        sent += 1
                        continue
                    received += chunk
                    if not chunk:
                        break
                # The server has spoken or closed: read what is left of its answer.
                conn.settimeout(5)
                while chunk := conn.recv(65536):
                    received += chunk
            except OSError:  # a reset, or the server closing while we still send
                pass
        self.cut = Cut(time.monotonic() - start, received, sent)


def slow_head(port: int) -> Dribbler:
    return Dribbler(port, b"GET /health HTTP/1.1\r\nHost: test\r\nX-Slow: ", b"a" * 120 + b"\r\n\r\n")


def status_of(received: bytes) -> int | None:
    line = received.split(b"\r\n", 1)[0]
    return int(line.split(b" ")[1]) if line.startswith(b"HTTP/1.") else None


def assert_timeout_problem(received: bytes) -> None:
    head, _, body = received.partition(b"\r\n\r\n")
    assert status_of(received) == 408, received
    assert b"application/problem+json" in head, received
    assert b'"status": 408' in body and b'"code": "bad_request"' in body, received


@pytest.fixture(scope="module")
def projects(
    redis_server: RedisServer, tenants: UwsgiService, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[UwsgiService]:
    service = start_service("projects", redis_server, tenants.url, Path(tmp_path_factory.mktemp("slow-logs")))
    service.wait_workers_loaded()
    yield service
    service.stop()


def normal_requests(url: str, count: int, gap: float = 0.25) -> list[float]:
    """Seconds each of ``count`` plain ``GET /health`` took to answer 200, one after the other."""
    took = []
    for _ in range(count):
        start = time.monotonic()
        r = requests.get(f"{url}/health", timeout=15)
        assert r.status_code == 200, r.text
        took.append(time.monotonic() - start)
        time.sleep(gap)
    return took


def test_slow_heads_are_cut_and_normal_clients_keep_being_served(projects: UwsgiService) -> None:
    slow = [slow_head(projects.port) for _ in range(SLOW_CLIENTS)]
    for client in slow:
        client.start()
        client.connected.wait(5)
    time.sleep(0.2)  # every slow head is accepted or queued before the normal client comes

    took = normal_requests(projects.url, 12)

    # Every thread may hold a slow head until its deadline, and the slow connections queued
    # before the normal client's are accepted first: two rounds of the deadline at most.
    assert max(took) < 2 * HEAD_DEADLINE + 1.5, took
    assert sorted(took)[len(took) // 2] < 0.5, took
    for client in slow:
        client.join(2 * HEAD_DEADLINE + 5)
        assert client.cut is not None, "a slow head was not cut"
        assert client.cut.seconds < 2 * HEAD_DEADLINE + 2, client.cut
        # Cut long before it could finish: 124 bytes at a byte a second.
        assert client.cut.sent <= 2 * HEAD_DEADLINE + 2, client.cut
        if client.cut.received:
            assert_timeout_problem(client.cut.received)


def token_form_request(framing: str) -> tuple[bytes, bytes]:
    """The head of a token request and its body, in ``framing`` (``length`` or ``chunked``)."""
    form = b"grant_type=client_credentials"
    head = (
        b"POST /v1/oauth/token HTTP/1.1\r\nHost: test\r\n"
        b"Content-Type: application/x-www-form-urlencoded\r\n"
        b"Authorization: " + basic_auth(BOOT_ID, BOOT_SECRET).encode() + b"\r\n"
    )
    if framing == "chunked":
        return head + b"Transfer-Encoding: chunked\r\n\r\n", b"%x\r\n%s\r\n0\r\n\r\n" % (len(form), form)
    return head + b"Content-Length: %d\r\n\r\n" % len(form), form


@pytest.mark.parametrize("framing", ["length", "chunked"])
def test_a_slow_body_is_answered_408(tenants: UwsgiService, framing: str) -> None:
    head, body = token_form_request(framing)
    client = Dribbler(tenants.port, head + body[:5], body[5:])
    client.start()
    client.join(BODY_GRACE + 10)
    assert client.cut is not None, "a slow body was not cut"
    # A few bytes in BODY_GRACE is far below the least rate a body must keep.
    assert BODY_GRACE - 0.5 < client.cut.seconds < BODY_GRACE + 2, client.cut
    assert_timeout_problem(client.cut.received)


def test_a_body_that_arrives_in_time_is_served(tenants: UwsgiService) -> None:
    head, body = token_form_request("length")
    client = Dribbler(tenants.port, head + body[:-3], body[-3:], interval=0.3)
    client.start()
    client.join(10)
    assert client.cut is not None and status_of(client.cut.received) == 200, client.cut
