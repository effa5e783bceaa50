"""The request as uWSGI's HTTP parser hands it over, checked before any service code sees it.

:func:`guarded` wraps each service's WSGI callable (``services/<name>/<name>/wsgi.py``), the
outermost layer of every request a worker serves. It covers what uWSGI 2.0's ``http-socket``
does without a word:

- **Heads that do not fit.** uWSGI packs the request line and the headers into one buffer
  (``buffer-size`` in ``shared/uwsgi/base.ini``) and drops any variable that no longer fits,
  logging a warning and serving the request anyway: a long query string left
  ``QUERY_STRING`` out (a filtered list came back unfiltered) and a long path left
  ``PATH_INFO`` out (a ``KeyError`` in Falcon). A request missing one of them, or whose
  target is longer than :data:`MAX_TARGET_BYTES`, is answered 414; headers over
  :data:`MAX_HEADER_BYTES` or :data:`MAX_HEADER_FIELDS` are answered 431. Both limits sit
  well inside the buffer, so every head within them reaches the app whole. A head larger
  than the buffer never reaches Python: uWSGI closes the connection unanswered.
- **Chunked request bodies.** uWSGI 2.0 gives the app no ``Content-Length`` and an empty
  ``wsgi.input`` for them (``wsgi-manage-chunked-input`` exists only in uWSGI's development
  branch, 2.1). Here ``wsgi.input`` becomes the body uWSGI de-chunks
  (``uwsgi.chunked_read``, bounded by ``chunked-input-limit`` and ``chunked-input-timeout``)
  and ``wsgi.input_terminated`` is set, the flag servers that de-chunk give (mod_wsgi,
  gunicorn, uWSGI 2.1), so ``aerie.middleware.read_body`` reads it to its end under the
  same 1 MiB limit as any body. A ``Transfer-Encoding`` other than ``chunked``, or one
  beside a ``Content-Length``, is refused (400): two framings that disagree are how
  requests are smuggled past a proxy.

- **Slow clients.** A thread reads a request's head before any Python runs, waiting
  ``socket-timeout`` for each read and nothing for the whole, and a body only as fast as
  it comes: four clients sending a byte a second held every thread of an instance.
  :class:`SlowClientWatch`, a thread in each worker, answers 408 and cuts a head that has
  not arrived :data:`HEAD_DEADLINE` after its connection was accepted, and a body that
  falls behind :data:`MIN_BODY_RATE` once :data:`BODY_GRACE` has passed.

Refusals are problem documents in the contract's shape (code ``bad_request``: the contract
has no code of its own for 414 or 431), with the request id echoed as everywhere else,
and one log line each (logger ``aerie.http``), since they never reach the access log.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import socket
import struct
import termios
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from aerie.errors import PROBLEM_JSON, TITLES
from aerie.middleware import REQUEST_ID_RE

__all__ = [
    "BODY_GRACE",
    "HEAD_DEADLINE",
    "MAX_HEADER_BYTES",
    "MAX_HEADER_FIELDS",
    "MAX_TARGET_BYTES",
    "MIN_BODY_RATE",
    "ChunkedBody",
    "SlowClientWatch",
    "guarded",
]

#: The longest request target (path and query) served; longer is 414.
MAX_TARGET_BYTES = 8 * 1024
#: The most header bytes served (``Name: value`` lines, as sent); more is 431.
MAX_HEADER_BYTES = 32 * 1024
#: The most header fields served; more is 431. uWSGI itself holds about 118 (``max-vars``).
MAX_HEADER_FIELDS = 100

#: Seconds a request's head may take to arrive once a thread has accepted its connection.
#: Behind the Cloud Foundry router the head comes in one write (the router reads it whole
#: before it connects), and any client sends it within a round trip of connecting; a second
#: covers retransmits of lost segments too (Linux waits 200 ms at least before one). Each
#: slow head holds a thread this long, so a normal client waits a second for each four
#: queued before it: 8 held one 2.2 s, 50 held one 14.7 s (service_tests/test_slow_clients.py).
HEAD_DEADLINE = 1.0
#: Seconds a body may take before it must keep :data:`MIN_BODY_RATE`: over curl's one-second
#: wait for ``100 Continue``, which uWSGI's http-socket never sends.
BODY_GRACE = 2.0
#: The least bytes a second a body must arrive at, on average, once :data:`BODY_GRACE` has
#: passed: 2 s + 1 MiB / 64 KiB/s = 18 s for the largest body served, inside ``harakiri``.
MIN_BODY_RATE = 64 * 1024
#: Seconds between two looks at a worker's connections.
WATCH_INTERVAL = 0.25

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]

log = logging.getLogger("aerie.http")

try:
    import uwsgi  # type: ignore[import-not-found]  # present only inside uWSGI processes

    _chunked_read: Callable[[], bytes] | None = uwsgi.chunked_read
    _connection_fd: Callable[[], int] | None = uwsgi.connection_fd
except (ImportError, AttributeError):
    _chunked_read = _connection_fd = None

#: Status lines of the refusals, in RFC 9110's words (Python's own differ between versions).
_REASONS = {
    400: "Bad Request",
    408: "Request Timeout",
    414: "URI Too Long",
    431: "Request Header Fields Too Large",
}
# CONTENT_TYPE and CONTENT_LENGTH are headers that reach WSGI without the HTTP_ prefix.
_UNPREFIXED_HEADERS = ("CONTENT_TYPE", "CONTENT_LENGTH")


class ChunkedBody:
    """``wsgi.input`` for a chunked request: the de-chunked body, read up to its end.

    ``read_chunk`` returns the next chunk's data and ``b""`` after the last one, and raises
    ``OSError`` when the framing is broken, a chunk is larger than uWSGI buffers, or the
    client stops sending (what ``uwsgi.chunked_read`` does). Only as much is pulled as a
    ``read`` asks for, so a reader's own limit bounds what is buffered.
    """

    def __init__(self, read_chunk: Callable[[], bytes]) -> None:
        self._read_chunk = read_chunk
        self._buffer = bytearray()
        self._ended = False

    def read(self, size: int | None = -1) -> bytes:
        wanted = -1 if size is None or size < 0 else size
        while not self._ended and (wanted < 0 or len(self._buffer) < wanted):
            chunk = self._read_chunk()
            if chunk:
                self._buffer += chunk
            else:
                self._ended = True
        if wanted < 0 or wanted >= len(self._buffer):
            data = bytes(self._buffer)
            self._buffer.clear()
        else:
            data = bytes(self._buffer[:wanted])
            del self._buffer[:wanted]
        return data


# struct tcp_info (linux/tcp.h): offsets of tcpi_bytes_received (4.1) and tcpi_data_segs_out (4.6).
_TCPI_BYTES_RECEIVED, _TCPI_DATA_SEGS_OUT, _TCPI_SIZE = 128, 156, 160


@dataclass
class _Connection:
    """A socket of this worker, as the watch first saw it."""

    since: float
    client: bool  # accepted on one of the worker's HTTP ports
    settled: bool = False  # its head has arrived, or it has been answered: no longer watched


@dataclass
class _BodyRead:
    """A request whose body is being read: where the deadline counts from."""

    inode: int
    start: float
    received: int  # the socket's tcpi_bytes_received when the head had arrived
    reading: bool = False
    timed_out: bool = False


@dataclass
class SlowClientWatch:
    """Cuts the connections of one worker whose request head or body arrives too slowly.

    uWSGI's ``http-socket`` reads a request's head on the thread that accepted the
    connection, before any Python runs, waiting at most ``socket-timeout`` for each read
    and nothing for the whole (core/utils.c ``wsgi_req_recv``; ``harakiri`` starts only
    once the head is in). A client sending a byte a second holds the thread for as long as
    it likes, and four such clients held every thread of an instance. Nothing in uWSGI 2.0
    bounds the whole head, so this thread does, looking at the worker's sockets every
    :data:`WATCH_INTERVAL`:

    - a connection accepted on an HTTP port more than :data:`HEAD_DEADLINE` ago, whose
      request never reached the app, that has been sent nothing (offloaded streams have
      their response head) and whose bytes have all been read, is a head still arriving:
      it is answered 408 and shut down, which ends uWSGI's read (it then closes it);
    - a body read by the app (:meth:`body_input`) that has fallen behind
      :data:`MIN_BODY_RATE` once :data:`BODY_GRACE` has passed, by the socket's own count
      of bytes received, has its reading side shut down: the read fails, and the request is
      answered 408 by :func:`guarded`.
    """

    ports: frozenset[int]
    connections: dict[int, _Connection] = field(default_factory=dict)  # by socket inode
    served: dict[int, int] = field(default_factory=dict)  # fd -> inode of the request on it in the app
    bodies: dict[int, _BodyRead] = field(default_factory=dict)  # by fd

    _started_in: int = -1

    @classmethod
    def start(cls) -> SlowClientWatch | None:
        """This worker's watch, started once per process; None outside a uWSGI worker."""
        global _watch
        if _connection_fd is None or uwsgi.worker_id() < 1:  # a mule, or the master
            return None
        if _watch is not None and _watch._started_in == os.getpid():
            return _watch
        ports = frozenset(port for _inode, fd in _sockets() if (port := _listening_port(fd)) is not None)
        if not ports:
            return None
        watch = cls(ports)
        watch._started_in = os.getpid()
        threading.Thread(target=watch._run, name="aerie-slow-client-watch", daemon=True).start()
        _watch = watch
        return watch

    def entered(self) -> int:
        """Note that the current request's head has arrived; the fd of its connection."""
        fd = _connection_fd()  # type: ignore[misc]  # start() returned None without it
        self.served[fd] = os.fstat(fd).st_ino
        return fd

    def body_input(self, fd: int, environ: dict[str, Any]) -> _BodyRead:
        """Put the request's body under the rate :data:`MIN_BODY_RATE` while it is read."""
        body = _BodyRead(self.served[fd], time.monotonic(), _tcp_info(fd)[0])
        self.bodies[fd] = body
        environ["wsgi.input"] = _DeadlineInput(environ["wsgi.input"], body)
        return body

    def _run(self) -> None:
        while True:
            time.sleep(WATCH_INTERVAL)
            try:
                self.look(time.monotonic())
            except Exception:  # never let the watch die: the next look may fare better
                log.exception("slow client watch failed")

    def look(self, now: float) -> None:
        """Cut what is too slow now."""
        present = dict(_sockets())  # inode -> fd
        for inode in self.connections.keys() - present.keys():
            del self.connections[inode]
        heads = 0
        for inode, fd in present.items():
            conn = self.connections.get(inode)
            if conn is None:
                self.connections[inode] = _Connection(now, _is_client(fd, inode, self.ports))
            elif conn.client and not conn.settled and now - conn.since > HEAD_DEADLINE:
                if self.served.get(fd) == inode:
                    conn.settled = True
                else:
                    verdict = _cut_slow_head(fd, inode)
                    conn.settled = verdict is not None
                    heads += verdict is True
        for fd, body in list(self.bodies.items()):
            elapsed = now - body.start
            if body.reading and not body.timed_out and elapsed > BODY_GRACE:
                with _socket_of(fd, body.inode) as sock:
                    if sock is None:
                        continue
                    received, _sent = _tcp_info(sock.fileno())
                    if _pending(sock.fileno()) or received - body.received >= (elapsed - BODY_GRACE) * MIN_BODY_RATE:
                        continue
                    body.timed_out = True
                    with contextlib.suppress(OSError):
                        sock.shutdown(socket.SHUT_RD)
                log.info("request body too slow", extra={"seconds": round(elapsed, 1), "status": 408})
        if heads:
            log.info("request heads too slow", extra={"connections": heads, "status": 408})


_watch: SlowClientWatch | None = None


class _DeadlineInput:
    """``wsgi.input`` whose reads the watch may end when the body falls behind its rate."""

    def __init__(self, inner: Any, body: _BodyRead) -> None:
        self._inner = inner
        self._body = body

    def read(self, size: int | None = -1) -> bytes:
        return _deadline_call(self._inner.read, self._body)(size)

    def readline(self, size: int | None = -1) -> bytes:
        return _deadline_call(self._inner.readline, self._body)(size)

    def readlines(self, hint: int | None = -1) -> list[bytes]:
        return _deadline_call(self._inner.readlines, self._body)(hint)

    def __iter__(self) -> _DeadlineInput:
        return self

    def __next__(self) -> bytes:
        line = self.readline()
        if not line:
            raise StopIteration
        return line


def _deadline_call(read: Callable[..., Any], body: _BodyRead) -> Callable[..., Any]:
    def call(*args: Any) -> Any:
        if body.timed_out:
            raise OSError("the request body arrived too slowly")
        body.reading = True
        try:
            return read(*args)
        finally:
            body.reading = False

    return call


def _sockets() -> list[tuple[int, int]]:
    """(inode, fd) of every socket this process holds."""
    found = []
    for name in os.listdir("/proc/self/fd"):
        try:
            link = os.readlink(f"/proc/self/fd/{name}")
        except OSError:
            continue
        if link.startswith("socket:["):
            found.append((int(link[8:-1]), int(name)))
    return found


@contextlib.contextmanager
def _socket_of(fd: int, inode: int | None = None) -> Iterator[socket.socket | None]:
    """A socket object over a duplicate of ``fd`` (so a close elsewhere cannot hand us another
    connection), or None when ``fd`` is gone or is no longer the socket ``inode``."""
    try:
        dup = os.dup(fd)
    except OSError:
        yield None
        return
    try:
        if inode is not None and os.fstat(dup).st_ino != inode:
            yield None
            return
        sock = socket.socket(fileno=dup)
    except OSError:
        os.close(dup)
        yield None
        return
    with sock:
        yield sock


def _listening_port(fd: int) -> int | None:
    with _socket_of(fd) as sock:
        if sock is None or sock.type != socket.SOCK_STREAM or sock.family not in (socket.AF_INET, socket.AF_INET6):
            return None
        if not sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN):
            return None
        return int(sock.getsockname()[1])


def _is_client(fd: int, inode: int, ports: frozenset[int]) -> bool:
    with _socket_of(fd, inode) as sock:
        if sock is None or sock.type != socket.SOCK_STREAM or sock.family not in (socket.AF_INET, socket.AF_INET6):
            return False
        try:
            return not sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN) and sock.getsockname()[1] in ports
        except OSError:
            return False


def _tcp_info(fd: int) -> tuple[int, int]:
    """The bytes a TCP socket has received and the data segments it has sent."""
    with _socket_of(fd) as sock:
        if sock is None:
            return 0, 0
        try:
            info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, _TCPI_SIZE)
        except OSError:
            return 0, 0
    if len(info) < _TCPI_SIZE:
        return 0, 0
    return struct.unpack_from("Q", info, _TCPI_BYTES_RECEIVED)[0], struct.unpack_from("I", info, _TCPI_DATA_SEGS_OUT)[0]


def _event_queue_targets() -> set[tuple[int, int]]:
    """(fd, inode) of what this process's epoll instances watch: uWSGI's offload thread
    (streams routed to a mule) polls its connections so, request threads poll() a head."""
    targets = set()
    for name in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{name}") != "anon_inode:[eventpoll]":
                continue
            with open(f"/proc/self/fdinfo/{name}") as info:
                lines = info.read().splitlines()
        except OSError:
            continue
        for line in lines:
            if line.startswith("tfd:"):
                fields = line.split()
                inode = next((int(f[4:], 16) for f in fields if f.startswith("ino:")), 0)
                targets.add((int(fields[1]), inode))
    return targets


def _pending(fd: int) -> int:
    """Bytes received and not read yet: the reader is behind, not the client."""
    try:
        return struct.unpack("i", fcntl.ioctl(fd, termios.FIONREAD, b"\0\0\0\0"))[0]
    except OSError:
        return 0


def _cut_slow_head(fd: int, inode: int) -> bool | None:
    """Answer 408 and shut down a connection whose head is late: True; False when it turns
    out to be answered already (an offloaded stream); None to look again later."""
    with _socket_of(fd, inode) as sock:
        if sock is None:
            return False
        if _tcp_info(sock.fileno())[1] or (fd, inode) in _event_queue_targets():
            return False
        if _pending(sock.fileno()):
            return None
        with contextlib.suppress(OSError):
            # Reading side first, so the head cannot complete behind the answer.
            sock.shutdown(socket.SHUT_RD)
            sock.send(_head_timeout_answer(), socket.MSG_DONTWAIT)
            sock.shutdown(socket.SHUT_WR)
    return True


def _timeout_document(request_id: str) -> bytes:
    return json.dumps(
        {
            "type": "urn:aerie:problem:bad_request",
            "title": TITLES["bad_request"],
            "status": 408,
            "detail": _TIMEOUT_DETAIL,
            "code": "bad_request",
            "request_id": request_id,
        }
    ).encode()


_TIMEOUT_DETAIL = "The request did not arrive in time."


def _head_timeout_answer() -> bytes:
    request_id = os.urandom(16).hex()
    body = _timeout_document(request_id)
    head = (
        f"HTTP/1.1 408 Request Timeout\r\nContent-Type: {PROBLEM_JSON}\r\nContent-Length: {len(body)}\r\n"
        f"X-Request-ID: {request_id}\r\nConnection: close\r\n\r\n"
    )
    return head.encode() + body


def guarded(app: WSGIApp, *, chunked_read: Callable[[], bytes] | None = None) -> WSGIApp:
    """``app`` behind the checks above. ``chunked_read`` defaults to uWSGI's own (tests pass theirs)."""
    read_chunk = chunked_read or _chunked_read
    watch = SlowClientWatch.start()

    def application(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        fd = watch.entered() if watch is not None else -1
        refusal = _refusal(environ)
        if refusal is None and "HTTP_TRANSFER_ENCODING" in environ:
            refusal = _take_chunked_body(environ, read_chunk)
        if refusal is not None:
            return _problem(environ, start_response, *refusal)
        if watch is None or not (
            environ.get("CONTENT_LENGTH", "0") not in ("", "0") or "HTTP_TRANSFER_ENCODING" in environ
        ):
            return app(environ, start_response)
        body = watch.body_input(fd, environ)
        try:
            return _answer_unless_late(app, environ, start_response, body)
        finally:
            watch.bodies.pop(fd, None)

    return application


def _answer_unless_late(
    app: WSGIApp, environ: dict[str, Any], start_response: Callable[..., Any], body: _BodyRead
) -> Iterable[bytes]:
    """The app's answer, or 408 when its body was cut for arriving too slowly (the app then
    saw a body cut short, and its answer says so: the client's timing is the truth)."""

    def respond(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Callable[[bytes], Any]:
        if body.timed_out:
            return lambda _data: None
        return start_response(status, headers, exc_info)

    result = app(environ, respond)
    if not body.timed_out:
        return result
    close = getattr(result, "close", None)
    if close is not None:
        close()
    return _problem(environ, start_response, 408, _TIMEOUT_DETAIL)


def _refusal(environ: dict[str, Any]) -> tuple[int, str] | None:
    """Status and detail for a head this app must not serve, or None."""
    uri = environ.get("REQUEST_URI")
    if uri is None or "PATH_INFO" not in environ or "QUERY_STRING" not in environ:
        return 414, f"The request target is longer than {MAX_TARGET_BYTES} bytes."
    if len(uri) > MAX_TARGET_BYTES:
        return 414, f"The request target is longer than {MAX_TARGET_BYTES} bytes."
    fields = size = 0
    for key, value in environ.items():
        if key.startswith("HTTP_"):
            fields += 1
            size += len(key) - 1 + len(value)  # "Name: value\r\n": the key without "HTTP_", plus 4
        elif key in _UNPREFIXED_HEADERS:
            fields += 1
            size += len(key) + 4 + len(value)
    if fields > MAX_HEADER_FIELDS:
        return 431, f"A request may carry at most {MAX_HEADER_FIELDS} header fields."
    if size > MAX_HEADER_BYTES:
        return 431, f"The request headers are larger than {MAX_HEADER_BYTES} bytes."
    return None


def _take_chunked_body(environ: dict[str, Any], read_chunk: Callable[[], bytes] | None) -> tuple[int, str] | None:
    """Give the app a chunked body it can read to its end, or say why the framing is refused."""
    coding = environ["HTTP_TRANSFER_ENCODING"].strip().lower()
    if coding != "chunked":
        return 400, "Request bodies may use only the chunked transfer coding."
    if environ.get("CONTENT_LENGTH"):
        return 400, "A request may not carry both Content-Length and Transfer-Encoding."
    if read_chunk is not None and not environ.get("wsgi.input_terminated"):
        environ["wsgi.input"] = ChunkedBody(read_chunk)
        environ["wsgi.input_terminated"] = True
    return None


def _problem(environ: dict[str, Any], start_response: Callable[..., Any], status: int, detail: str) -> Iterable[bytes]:
    incoming = environ.get("HTTP_X_REQUEST_ID")
    request_id = incoming if incoming and REQUEST_ID_RE.match(incoming) else os.urandom(16).hex()
    body = json.dumps(
        {
            "type": "urn:aerie:problem:bad_request",
            "title": TITLES["bad_request"],
            "status": status,
            "detail": detail,
            "code": "bad_request",
            "request_id": request_id,
        }
    ).encode()
    log.info(
        "request refused before the app",
        extra={"request_id": request_id, "method": environ.get("REQUEST_METHOD"), "status": status, "reason": detail},
    )
    start_response(
        f"{status} {_REASONS[status]}",
        [("Content-Type", PROBLEM_JSON), ("Content-Length", str(len(body))), ("X-Request-ID", request_id)],
    )
    return [body]
