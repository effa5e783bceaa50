"""Server-Sent Events under uWSGI threads, for every service: frames, caps, live fan-out.

Lifted from the projects service so that flags (and whatever streams next) share one
implementation. What a service adds is only what its stream shows: which pub/sub events,
routed to which open streams (a routing function), and for projects a replay from the
durable stream before going live.

- :func:`frame` encodes one event; :func:`id_only` only moves the client's last event id.
- Each open stream holds one uWSGI thread for its whole life. :class:`StreamSlots` caps
  how many a worker may hold, so the rest of its threads always serve the ordinary API; a
  stream over the cap is refused with 503 and ``Retry-After`` (EventSource retries).
  :class:`StreamLimits` derives the cap from the worker's thread count and the longest
  lifetime from uWSGI's ``harakiri``, which kills the *whole worker* (every stream on it)
  when one request outlives it.
- :class:`SSEBody` is the WSGI body: it runs its cleanup when the server closes it, also
  when the client left before the first byte (a plain generator's ``finally`` never runs).
- :func:`client_gone_probe` notices a hung-up client within a second, not at the next write.
- :class:`Fanout` hands live messages from the process's one pub/sub connection to the
  streams that want them: a waiting stream sleeps on its own queue (no Redis connection,
  no CPU, the GIL released), so idle streams cost a thread's memory and nothing else.
  A listener that falls far behind, or that may have missed messages while pub/sub was
  reconnecting, is *broken*: its stream ends and the client resumes from a durable source
  (``Last-Event-ID``, or a snapshot), so a live message is never silently lost.
- :class:`LiveEvents` feeds a :class:`Fanout` from the worker's :class:`~aerie.pubsub.Subscriber`,
  keyed by the service's routing function; :func:`relay` is the loop of an open stream
  (live frames, heartbeats, its end); :class:`LiveStreams` puts them together for a stream
  that is live only.
"""

from __future__ import annotations

import json
import logging
import queue
import select
import threading
import time
from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping
from dataclasses import dataclass, replace
from typing import Any, Final, Generic, TypeVar

import falcon

from aerie import errors
from aerie.auth.principal import Principal
from aerie.config import number_setting
from aerie.pubsub import Subscriber

__all__ = [
    "EVENT_STREAM",
    "EVERYONE",
    "HEARTBEAT",
    "RETRY",
    "Fanout",
    "Listener",
    "LiveEvent",
    "LiveEvents",
    "LiveStreams",
    "SSEBody",
    "StreamLimits",
    "StreamSlots",
    "client_gone_probe",
    "frame",
    "id_only",
    "relay",
    "respond",
    "uwsgi_harakiri",
    "uwsgi_threads",
]

log = logging.getLogger("aerie.sse")

#: The first bytes of every stream: reconnect one second after the server ends a stream.
RETRY = b"retry: 1000\n\n"
#: The media type of a Server-Sent Events response.
EVENT_STREAM = "text/event-stream"
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


def respond(resp: falcon.Response, body: Iterable[bytes]) -> None:
    """Send ``body`` as ``text/event-stream``, neither cached nor buffered by proxies."""
    resp.content_type = EVENT_STREAM
    resp.cache_control = ["no-cache"]
    resp.set_header("X-Accel-Buffering", "no")
    resp.stream = body


# -- limits ----------------------------------------------------------------------------


def _uwsgi_option(name: str) -> int | None:
    """An integer option of this uWSGI worker, or None outside uWSGI (tests) or when unset."""
    try:
        import uwsgi  # type: ignore[import-not-found]  # present only inside uWSGI workers

        raw = uwsgi.opt.get(name)
    except Exception:
        return None
    if isinstance(raw, list):  # given twice (base.ini and the service's ini): the last wins
        raw = raw[-1]
    try:
        return int(raw.decode() if isinstance(raw, bytes) else raw)
    except (TypeError, ValueError):
        return None


def uwsgi_threads() -> int | None:
    """The ``threads`` of each uWSGI worker, or None outside uWSGI (tests)."""
    return _uwsgi_option("threads")


def uwsgi_harakiri() -> int | None:
    """uWSGI's ``harakiri`` seconds, or None outside uWSGI or when it is off."""
    seconds = _uwsgi_option("harakiri")
    return seconds if seconds else None


@dataclass(frozen=True)
class StreamLimits:
    """How many streams a process holds, how long each lives, how often an idle one beats."""

    max_streams: int = 144
    max_seconds: float = 25.0
    heartbeat_seconds: float = 15.0

    @classmethod
    def from_env(
        cls, extra: Mapping[str, str], default: StreamLimits | None = None, *, longest: float = 28
    ) -> StreamLimits:
        """``default`` changed by ``AERIE_SSE_MAX_STREAMS|MAX_SECONDS|HEARTBEAT_SECONDS``.

        ``longest`` bounds ``AERIE_SSE_MAX_SECONDS`` to what the service's ``harakiri`` allows.
        """
        base = default or cls()
        return cls(
            max_streams=int(number_setting(extra, "AERIE_SSE_MAX_STREAMS", base.max_streams, 1, 256)),
            max_seconds=number_setting(extra, "AERIE_SSE_MAX_SECONDS", base.max_seconds, 1, longest),
            heartbeat_seconds=number_setting(extra, "AERIE_SSE_HEARTBEAT_SECONDS", base.heartbeat_seconds, 0.1, 60),
        )

    def for_threads(self, threads: int | None) -> StreamLimits:
        """Capped so a quarter of the process's threads (at least 4) are always free.

        In a uWSGI worker they serve the API; with a stream mule (``aerie.stream_server``)
        streams never reach the workers, which are capped to one stream all the same.
        """
        if threads is None:
            return self
        allowed = max(1, threads - max(4, threads // 4))
        if self.max_streams <= allowed:
            return self
        log.info("open streams capped by the threads", extra={"max_streams": allowed, "threads": threads})
        return replace(self, max_streams=allowed)

    def for_harakiri(self, harakiri: int | None) -> StreamLimits:
        """Streams end 5 s before ``harakiri``: a request outliving it kills the whole worker."""
        if harakiri is None or self.max_seconds <= harakiri - 5:
            return self
        longest = float(max(1, harakiri - 5))
        log.warning("stream lifetime capped by uWSGI harakiri", extra={"max_seconds": longest, "harakiri": harakiri})
        return replace(self, max_seconds=longest)


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


# -- the body --------------------------------------------------------------------------


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


def client_gone_probe(environ: Mapping[str, Any] | None = None) -> Callable[[], bool]:
    """A check that the client of this request hung up: waitress's own (the stream server,
    ``aerie.stream_server``), else under uWSGI a poll of the connection; elsewhere, never.

    A server only notices a closed connection when it writes, which for an idle stream is
    the next heartbeat: asking each second frees the thread (and the stream slot) within a
    second of the client leaving instead.
    """
    waitress_probe = (environ or {}).get("waitress.client_disconnected")
    if callable(waitress_probe):
        return waitress_probe
    try:
        import uwsgi

        fd = uwsgi.connection_fd()
    except Exception:
        return lambda: False
    hangup = select.POLLHUP | select.POLLERR | select.POLLNVAL | getattr(select, "POLLRDHUP", 0)

    def gone() -> bool:
        poller = select.poll()
        poller.register(fd, hangup)
        return any(events & hangup for _fd, events in poller.poll(0))

    return gone


# -- live fan-out ----------------------------------------------------------------------


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

    :meth:`deliver` and :meth:`broadcast` run on the pub/sub thread and only append to
    queues. Register :meth:`break_all` as the subscriber's ``on_connect`` hook: after a
    reconnect, messages published while disconnected are gone from pub/sub, so every open
    stream is broken and resumes from the durable source.
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

    def broadcast(self, message: T) -> None:
        """``message`` to every listener, whatever its key."""
        with self._lock:
            listeners = [listener for group in self._listeners.values() for listener in group]
        for listener in listeners:
            listener.put(message)

    def break_all(self) -> None:
        with self._lock:
            for listeners in self._listeners.values():
                for listener in listeners:
                    listener.broken = True


class _Everyone:
    def __repr__(self) -> str:
        return "EVERYONE"


#: What a routing function returns for an event that every open stream shows.
EVERYONE: Final = _Everyone()

#: The key of the streams an event goes to (:data:`EVERYONE` for all), or None for none.
Route = Callable[[Mapping[str, Any]], Hashable | None]


@dataclass(frozen=True)
class LiveEvent:
    """An event ready to send: its id (to drop duplicates) and its frame."""

    event_id: str
    frame: bytes


class LiveEvents:
    """This worker's events from pub/sub, routed by ``route`` to the open streams' listeners.

    Each frame's ``id:`` is the event id, ``event:`` its type and ``data:`` the envelope
    byte for byte as published. Built before the subscriber starts (it registers its
    patterns), in the worker (lazy-apps): nothing here survives a fork.
    """

    def __init__(self, subscriber: Subscriber, patterns: Iterable[str], route: Route, *, maxsize: int = 1000) -> None:
        self._subscriber = subscriber
        self._route = route
        self.fanout: Fanout[LiveEvent] = Fanout(maxsize)
        for pattern in patterns:
            subscriber.on(pattern, self._on_message)
        subscriber.on_connect(self.fanout.break_all)

    def ready(self, timeout: float) -> bool:
        """Whether pub/sub is subscribed: before that, a new stream would miss events."""
        self._subscriber.ensure_started()
        return self._subscriber.wait_connected(timeout)

    def _on_message(self, channel: str, message: str) -> None:
        if not self.fanout:
            return  # no open stream in this worker: not even worth parsing
        try:
            event = json.loads(message)
            event_id, type_ = event["id"], event["type"]
            key = self._route(event)
            if key is None or (key is not EVERYONE and not self.fanout.wants(key)):
                return
            live = LiveEvent(event_id, frame(message, event_id=event_id, event=type_))
        except (ValueError, KeyError, TypeError):
            log.error("malformed event on pub/sub skipped", extra={"channel": channel})
            return
        if key is EVERYONE:
            self.fanout.broadcast(live)
        else:
            self.fanout.deliver(key, live)


def while_authorized(
    principal: Principal, is_revoked: Callable[[Principal], bool], gone: Callable[[], bool]
) -> Callable[[], bool]:
    """A stream's end condition: the client hung up, its token expired, or its client was revoked.

    A token is checked when a request starts, and a stream outlives that moment: without
    this, a revoked client (or an expired token) would keep receiving events until the
    stream's own end, past the contract's one second.
    """

    def ended() -> bool:
        return gone() or time.time() >= principal.expires_at or is_revoked(principal)

    return ended


def relay(
    listener: Listener[T],
    render: Callable[[T], bytes | None],
    gone: Callable[[], bool],
    *,
    until: float,
    heartbeat_seconds: float,
    last_sent: float | None = None,
) -> Iterator[bytes]:
    """The live part of a stream: ``render``'s frames, heartbeats, until it must end.

    Ends when ``gone()`` (checked each second), at ``until`` (``time.monotonic()``), or when
    the listener broke. ``render`` returns None for a message not to send (a duplicate).
    A heartbeat comment follows ``heartbeat_seconds`` without a frame (since ``last_sent``).
    """
    last = time.monotonic() if last_sent is None else last_sent
    while not gone():
        now = time.monotonic()
        remaining = until - now
        if remaining <= 0:
            return
        # Wake for whichever comes first: the end, the next heartbeat, or the next gone() check.
        message = listener.get(timeout=max(0.0, min(1.0, remaining, last + heartbeat_seconds - now)))
        if listener.broken:
            return  # pub/sub reconnected or we fell behind: the client resumes elsewhere
        if message is not None:
            out = render(message)
            if out is not None:
                yield out
                last = time.monotonic()
        elif time.monotonic() - last >= heartbeat_seconds:
            yield HEARTBEAT
            last = time.monotonic()


class LiveStreams:
    """Streams that show live events only, from the moment they open (no replay).

    For a client that reads its full state after (re)connecting: the listener is registered
    before the response starts, so nothing published after the client's next read is missed.
    """

    def __init__(self, live: LiveEvents, limits: StreamLimits) -> None:
        self._live = live
        self.limits = limits
        self._slots = StreamSlots(limits.max_streams)

    def open(
        self, key: Hashable, gone: Callable[[], bool] = lambda: False, *, lifetime: float | None = None
    ) -> SSEBody:
        """Take a slot (or 503) and listen for ``key``'s events; the body to send.

        ``lifetime`` shortens the stream below ``limits.max_seconds`` (a token's expiry).
        """
        release = self._slots.take()
        try:
            if not self._live.ready(2.0):
                raise errors.unavailable("Live events are not available right now; reconnect shortly.")
            listener = self._live.fanout.listen(key)
        except BaseException:
            release()
            raise

        def close() -> None:
            listener.close()
            release()

        seconds = self.limits.max_seconds if lifetime is None else min(lifetime, self.limits.max_seconds)
        return SSEBody(self._frames(listener, gone, time.monotonic() + seconds), close)

    def _frames(self, listener: Listener[LiveEvent], gone: Callable[[], bool], until: float) -> Iterator[bytes]:
        yield RETRY
        yield from relay(
            listener, lambda live: live.frame, gone, until=until, heartbeat_seconds=self.limits.heartbeat_seconds
        )
