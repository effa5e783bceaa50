"""Server-Sent Events under uWSGI threads: frames, a per-process stream cap, live fan-out.

What an SSE endpoint needs, whatever it streams (written to be lifted into ``shared/``):

- :func:`frame` encodes one event; :func:`id_only` only moves the client's last event id.
- Each open stream holds one uWSGI thread for its whole life. :class:`StreamSlots` caps
  how many a worker may hold, so the rest of its threads always serve the ordinary API; a
  stream over the cap is refused with 503 and ``Retry-After`` (EventSource retries).
- :class:`SSEBody` is the WSGI body: it runs its cleanup when the server closes it, also
  when the client left before the first byte (a plain generator's ``finally`` never runs).
- :func:`client_gone_probe` notices a hung-up client within a second, not at the next write.
- :class:`Fanout` hands live messages from the process's one pub/sub connection to the
  streams that want them: a waiting stream sleeps on its own queue (no Redis connection,
  no CPU, the GIL released), so idle streams cost a thread's memory and nothing else.
  A listener that falls far behind, or that may have missed messages while pub/sub was
  reconnecting, is *broken*: its stream ends and the client resumes from a durable source
  with ``Last-Event-ID``, so a live message is never silently lost.
"""

from __future__ import annotations

import queue
import select
import threading
from collections.abc import Callable, Hashable, Iterator
from typing import Generic, TypeVar

from aerie import errors

__all__ = [
    "HEARTBEAT",
    "RETRY",
    "Fanout",
    "Listener",
    "SSEBody",
    "StreamSlots",
    "client_gone_probe",
    "frame",
    "id_only",
    "uwsgi_threads",
]

#: The first bytes of every stream: reconnect one second after the server ends a stream.
RETRY = b"retry: 1000\n\n"
HEARTBEAT = b": heartbeat\n\n"

T = TypeVar("T")


def frame(data: str, *, event_id: str | None = None, event: str | None = None) -> bytes:
    """One SSE event. ``data`` must be one line (compact JSON is: it escapes newlines).

    An ``event_id`` of ``""`` sends an empty ``id:``, which clears the client's last id.
    """
    if "\n" in data or "\r" in data:
        raise ValueError("SSE data must be a single line")
    head = ""
    if event_id is not None:
        head += f"id: {event_id}\n"
    if event is not None:
        head += f"event: {event}\n"
    return f"{head}data: {data}\n\n".encode()


def id_only(event_id: str) -> bytes:
    """A frame that only sets the client's last event id (EventSource dispatches nothing)."""
    return f"id: {event_id}\n\n".encode()


class StreamSlots:
    """At most ``limit`` open streams in this process: :meth:`take` one, or 503."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._sem = threading.BoundedSemaphore(limit)

    def take(self) -> Callable[[], None]:
        """A slot, or 503 ``unavailable``; the returned release is safe to call twice."""
        if not self._sem.acquire(blocking=False):
            raise errors.unavailable("Too many open event streams; reconnect shortly.", retry_after=2)
        lock = threading.Lock()
        done = False

        def release() -> None:
            nonlocal done
            with lock:
                if not done:
                    done = True
                    self._sem.release()

        return release


class SSEBody:
    """The WSGI body of a stream: runs ``on_close`` exactly once, however the stream ends."""

    def __init__(self, frames: Iterator[bytes], on_close: Callable[[], None]) -> None:
        self._frames = frames
        self._on_close = on_close
        self._closed = False

    def __iter__(self) -> SSEBody:
        return self

    def __next__(self) -> bytes:
        try:
            return next(self._frames)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            close = getattr(self._frames, "close", None)
            if close is not None:
                close()
        finally:
            self._on_close()


def client_gone_probe() -> Callable[[], bool]:
    """Under uWSGI, a check that the client of this request hung up; elsewhere, never.

    A server only notices a closed connection when it writes, which for an idle stream is
    the next heartbeat: polling the socket for a hang-up each second frees the thread (and
    the stream slot) within a second of the client leaving instead.
    """
    try:
        import uwsgi  # type: ignore[import-not-found]  # present only inside uWSGI workers

        fd = uwsgi.connection_fd()
    except Exception:
        return lambda: False
    hangup = select.POLLHUP | select.POLLERR | select.POLLNVAL | getattr(select, "POLLRDHUP", 0)

    def gone() -> bool:
        poller = select.poll()
        poller.register(fd, hangup)
        return any(events & hangup for _fd, events in poller.poll(0))

    return gone


def uwsgi_threads() -> int | None:
    """The ``threads`` of each uWSGI worker, or None outside uWSGI (tests)."""
    try:
        import uwsgi

        raw = uwsgi.opt.get("threads")
    except Exception:
        return None
    if isinstance(raw, list):  # given twice (base.ini and the service's ini): the last wins
        raw = raw[-1]
    try:
        return int(raw.decode() if isinstance(raw, bytes) else raw)
    except (TypeError, ValueError):
        return None


class Listener(Generic[T]):
    """One stream's queue of live messages; :attr:`broken` once it cannot be trusted."""

    def __init__(self, fanout: Fanout[T], key: Hashable, maxsize: int) -> None:
        self._fanout = fanout
        self.key = key
        self._queue: queue.Queue[T] = queue.Queue(maxsize)
        self.broken = False

    def get(self, timeout: float) -> T | None:
        """The next message, or None after ``timeout`` seconds (at once when broken)."""
        if self.broken:
            return None
        try:
            return self._queue.get(timeout=timeout)
        except queue.Empty:
            return None

    def put(self, message: T) -> None:
        try:
            self._queue.put_nowait(message)
        except queue.Full:
            self.broken = True  # the stream ends; the client resumes from the durable source

    def close(self) -> None:
        self._fanout.remove(self)


class Fanout(Generic[T]):
    """Live messages of this process, routed by key (a tenant id, say) to its listeners.

    :meth:`deliver` runs on the pub/sub thread and only appends to queues. Register
    :meth:`break_all` as the subscriber's ``on_connect`` hook: after a reconnect, messages
    published while disconnected are gone from pub/sub, so every open stream is broken
    and resumes from the durable source.
    """

    def __init__(self, maxsize: int = 1000) -> None:
        self._maxsize = maxsize
        self._lock = threading.Lock()
        self._listeners: dict[Hashable, set[Listener[T]]] = {}

    def listen(self, key: Hashable) -> Listener[T]:
        listener = Listener(self, key, self._maxsize)
        with self._lock:
            self._listeners.setdefault(key, set()).add(listener)
        return listener

    def remove(self, listener: Listener[T]) -> None:
        with self._lock:
            listeners = self._listeners.get(listener.key)
            if listeners is not None:
                listeners.discard(listener)
                if not listeners:
                    del self._listeners[listener.key]

    def wants(self, key: Hashable) -> bool:
        """Whether anyone listens for ``key`` (lets the caller skip building a message)."""
        return key in self._listeners

    def __bool__(self) -> bool:
        return bool(self._listeners)

    def deliver(self, key: Hashable, message: T) -> None:
        with self._lock:
            listeners = list(self._listeners.get(key, ()))
        for listener in listeners:
            listener.put(message)

    def break_all(self) -> None:
        with self._lock:
            for listeners in self._listeners.values():
                for listener in listeners:
                    listener.broken = True
