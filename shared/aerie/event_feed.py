"""Server-Sent Events tailed from the durable event stream, for any service (``aerie.event_feed``).

Lifted from the projects service's ``event_stream`` so that flags (and later audit) do not
copy it; what an open stream shows is the caller's ``select`` predicate over each entry's
``type`` and ``tenant_id`` fields, nothing else differs. The design:

- Each SSE ``id:`` is the event id (``evt_...``, API.md) and ``data:`` its envelope. The tail
  starts after a stream entry id the caller chooses (``None``: the live end); mapping a
  client's ``Last-Event-ID`` to an entry id, if a service resumes at all, is the service's job.
- Live events are read from the same stream with a blocking ``XREAD`` rather than from
  pub/sub: replaying and then switching to pub/sub has a hand-off window in which an event
  can be missed or sent twice; tailing one ordered log has none. ``select`` sees the entry's
  fields only, so other tenants' entries are skipped without decoding their JSON.
- Threads: every open stream holds one uWSGI thread. A per-process semaphore caps open
  streams (``AERIE_SSE_MAX_STREAMS``, default 4); a service's ``uwsgi.ini`` gives it enough
  threads that the API always has some left. A stream over the cap is refused with 503.
- Lifetime: uWSGI's ``harakiri`` (30 s) kills a worker whose request runs longer, so a
  stream ends after ``AERIE_SSE_MAX_SECONDS`` (default 25 s) with a ``retry:`` hint;
  EventSource reconnects by itself and resumes by ``Last-Event-ID``. This also re-checks
  the token on every reconnect.
- A heartbeat comment is sent every ``AERIE_SSE_HEARTBEAT_SECONDS`` (default 15 s) without events.
"""

from __future__ import annotations

import json
import re
import select as select_module
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass

import falcon

from aerie import errors
from aerie.config import ConfigError
from aerie.events import STREAM_KEY
from aerie.redis import RedisProvider

__all__ = ["EntryFilter", "EventStream", "StreamLimits", "client_gone_probe", "parse_entry_id", "respond"]

_ENTRY_ID = re.compile(r"^\d{1,20}-\d{1,20}$")

#: Whether an open stream shows a stream entry, judged by its fields (``type``, ``tenant_id``).
EntryFilter = Callable[[Mapping[str, str]], bool]


@dataclass(frozen=True)
class StreamLimits:
    max_streams: int = 4
    max_seconds: float = 25.0
    heartbeat_seconds: float = 15.0
    block_ms: int = 1000

    @classmethod
    def from_env(cls, extra: Mapping[str, str]) -> StreamLimits:
        def number(name: str, default: float, low: float, high: float) -> float:
            raw = extra.get(name)
            if raw is None:
                return default
            try:
                value = float(raw)
            except ValueError:
                raise ConfigError(f"{name} must be a number, got {raw!r}") from None
            if not low <= value <= high:
                raise ConfigError(f"{name} must be between {low} and {high}, got {raw}")
            return value

        return cls(
            max_streams=int(number("AERIE_SSE_MAX_STREAMS", 4, 1, 64)),
            max_seconds=number("AERIE_SSE_MAX_SECONDS", 25, 1, 28),
            heartbeat_seconds=number("AERIE_SSE_HEARTBEAT_SECONDS", 15, 0.1, 60),
        )


def parse_entry_id(raw: str | None) -> str | None:
    """A stream entry id (``<ms>-<seq>``) from a header or query, or None; 400 when malformed."""
    if raw is None or not raw.strip():
        return None
    value = raw.strip()
    if not _ENTRY_ID.match(value):
        raise errors.bad_request("Not a position in the event stream.")
    return value


class EventStream:
    def __init__(self, redis_provider: RedisProvider, limits: StreamLimits, stream: str = STREAM_KEY) -> None:
        self._redis = redis_provider
        self.limits = limits
        self._stream = stream
        self._slots = threading.BoundedSemaphore(limits.max_streams)

    def open(
        self,
        select: EntryFilter,
        after: str | None,
        gone: Callable[[], bool] = lambda: False,
        *,
        banner: str = "event stream",
    ) -> Iterator[bytes]:
        """Take a slot (or 503) and return the body iterator; the slot is freed when it closes."""
        if not self._slots.acquire(blocking=False):
            raise errors.unavailable("Too many open event streams; reconnect shortly.", retry_after=2)
        release = _ReleaseOnce(self._slots)
        try:
            start = after or self._last_entry_id()
        except BaseException:
            release()
            raise
        return _Body(self._body(select, start, gone, banner), release)

    def _last_entry_id(self) -> str:
        last = self._redis.client.xrevrange(self._stream, "+", "-", count=1)
        return last[0][0] if last else "0-0"

    def _body(self, select: EntryFilter, after: str, gone: Callable[[], bool], banner: str) -> Iterator[bytes]:
        limits = self.limits
        yield f"retry: 1000\n: {banner}\n\n".encode()
        started = last_sent = time.monotonic()
        r = self._redis.client
        while time.monotonic() - started < limits.max_seconds and not gone():
            read = r.xread({self._stream: after}, count=100, block=limits.block_ms)
            for _name, entries in read or ():
                for entry_id, fields in entries:
                    after = entry_id
                    if "event" not in fields or not select(fields):
                        continue
                    yield _frame(entry_id, fields)
                    last_sent = time.monotonic()
            if time.monotonic() - last_sent >= limits.heartbeat_seconds:
                yield b": heartbeat\n\n"
                last_sent = time.monotonic()


def respond(resp: falcon.Response, body: Iterator[bytes]) -> None:
    """Send ``body`` as ``text/event-stream``, unbuffered by proxies."""
    resp.content_type = "text/event-stream"
    resp.cache_control = ["no-cache"]
    resp.set_header("X-Accel-Buffering", "no")
    resp.stream = body


class _ReleaseOnce:
    def __init__(self, slots: threading.BoundedSemaphore) -> None:
        self._slots = slots
        self._lock = threading.Lock()
        self._done = False

    def __call__(self) -> None:
        with self._lock:
            if not self._done:
                self._done = True
                self._slots.release()


class _Body:
    """The WSGI body: frees the stream slot when the server closes it or it runs out.

    A plain generator would not do: one closed before its first ``next()`` (a client gone
    before the first byte) never runs its ``finally``, and the slot would leak for good.
    """

    def __init__(self, frames: Iterator[bytes], release: _ReleaseOnce) -> None:
        self._frames = frames
        self._release = release

    def __iter__(self) -> _Body:
        return self

    def __next__(self) -> bytes:
        try:
            return next(self._frames)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        try:
            close = getattr(self._frames, "close", None)
            if close is not None:
                close()
        finally:
            self._release()


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
    hangup = select_module.POLLHUP | select_module.POLLERR | select_module.POLLNVAL
    hangup |= getattr(select_module, "POLLRDHUP", 0)

    def gone() -> bool:
        poller = select_module.poll()
        poller.register(fd, hangup)
        return any(events & hangup for _fd, events in poller.poll(0))

    return gone


def _frame(entry_id: str, fields: Mapping[str, str]) -> bytes:
    # The envelope is one line of JSON (no raw newlines), so it fits one ``data:`` line.
    event = json.loads(fields["event"])
    payload = json.dumps(event, separators=(",", ":"), ensure_ascii=False)
    return f"id: {event.get('id') or entry_id}\nevent: {fields['type']}\ndata: {payload}\n\n".encode()
