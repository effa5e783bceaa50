"""``GET /v1/projects/events``: one tenant's ``project.*`` events, replayed, then live.

Each frame's ``id:`` is the event id and its ``data:`` the event envelope, byte for byte as
published. A stream:

1. reads, atomically, the durable stream's last entry and the tenant's newest event id
   (:mod:`projects.event_positions`), *then* starts listening to this worker's pub/sub
   fan-out for the tenant;
2. sends an id-only frame with that newest event id (EventSource records it without
   dispatching anything), so a client that reconnects before any event arrived still
   resumes from where it joined instead of missing what happened in between;
3. replays from the durable stream every event of the tenant after ``Last-Event-ID``'s
   position (or after the last entry of step 1), up to the stream's current end;
4. switches to the live events from pub/sub, dropping those already sent. Pub/sub delivers
   in commit order, so duplicates (an event committed during the replay, or one committed
   just before step 1 and dispatched just after) can only lead the live queue: they are
   dropped by id (the replayed ids, plus the tenant's newest :data:`DEDUP_WINDOW` ids),
   and once one new event has passed, the check stops.

Nothing is lost between replay and live: listening starts before the replay reads, and a
write and its publication are one transaction. If pub/sub reconnects (messages published
meanwhile are gone) or a client reads too slowly, the stream simply ends; the client
reconnects with ``Last-Event-ID`` and resumes from the durable stream.

**Unknown ``Last-Event-ID``**: a well-formed event id that is not one of the tenant's
resumable events (never existed, another tenant's, older than the newest
:data:`~projects.event_positions.KEEP` events, or trimmed from the durable stream) cannot
be resumed from. The stream then starts live, and its first event is
``event: reset`` (``data: {"reason": "last_event_id_unknown"}``) carrying the tenant's
newest event id as its ``id:``: events may have been missed, so the client should re-read
``GET /v1/projects``. A malformed one is 400.

Streams and threads: each open stream holds a thread but no Redis connection (it waits on
its own queue, the GIL released). Under uWSGI the threads are the stream mule's, never an
API worker's (``uwsgi.ini``, :mod:`aerie.stream_server`); :class:`StreamLimits` caps the
streams below them (:mod:`aerie.sse` holds what every stream shares). A stream ends after
``AERIE_SSE_MAX_SECONDS`` (default 25 s): short, because a reconnect is cheap here (it
resumes from the durable stream); EventSource reconnects by itself, which also re-checks
the token. A heartbeat comment goes out after ``AERIE_SSE_HEARTBEAT_SECONDS``
(default 15 s) without events.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from aerie import errors
from aerie.events import EVENT_CHANNEL_PREFIX
from aerie.pubsub import Subscriber
from aerie.sse import (
    RETRY,
    Gauge,
    Listener,
    LiveEvent,
    LiveEvents,
    SSEBody,
    StreamLimits,
    StreamSlots,
    frame,
    id_only,
    relay,
)
from projects.event_positions import EventPositions

__all__ = ["LiveProjectEvents", "ProjectEventStream", "StreamLimits", "parse_last_event_id"]

_EVENT_ID = re.compile(r"^evt_[0-9A-HJKMNP-TV-Z]{26}$")
#: How many of the tenant's newest event ids guard the hand-over from replay to live.
DEDUP_WINDOW = 1000
_PAGE = 500


def parse_last_event_id(raw: str | None) -> str | None:
    if raw is None or not raw.strip():
        return None
    value = raw.strip()
    if not _EVENT_ID.match(value):
        raise errors.bad_request("Last-Event-ID must be an event id this stream sent (evt_...).")
    return value


class ProjectEventStream:
    def __init__(
        self, positions: EventPositions, live: LiveProjectEvents, limits: StreamLimits, gauge: Gauge | None = None
    ) -> None:
        self._positions = positions
        self._live = live
        self.limits = limits
        self._slots = StreamSlots(limits.max_streams, gauge)

    def open(self, tenant_id: str, last_event_id: str | None, gone: Callable[[], bool] = lambda: False) -> SSEBody:
        """Take a slot (or 503), start listening and find where to replay from; the body."""
        release = self._slots.take()
        try:
            if not self._live.ready(2.0):
                raise errors.unavailable("Live events are not available right now; reconnect shortly.")
            start = self._positions.start(tenant_id)
            listener = self._live.fanout.listen(tenant_id)
        except BaseException:
            release()
            raise

        def close() -> None:
            listener.close()
            release()

        try:
            seen = set(self._positions.recent(tenant_id, DEDUP_WINDOW))
            after, head = start.last_entry, [id_only(start.newest_event)] if start.newest_event else []
            if last_event_id is not None:
                entry = self._positions.entry_of(tenant_id, last_event_id)
                if entry is not None:
                    after, head = entry, []
                else:
                    reset = json.dumps({"reason": "last_event_id_unknown"})
                    head = [frame(reset, event_id=start.newest_event or "", event="reset")]
        except BaseException:
            close()
            raise
        body = self._frames(tenant_id, after, head, seen, listener, gone)
        return SSEBody(body, close)

    def _frames(
        self,
        tenant_id: str,
        after: str,
        head: list[bytes],
        seen: set[str],
        listener: Listener[LiveEvent],
        gone: Callable[[], bool],
    ) -> Iterator[bytes]:
        limits = self.limits
        started = last_sent = time.monotonic()
        yield RETRY
        yield from head
        for event_id, replayed in self._replay(tenant_id, after, gone):
            seen.add(event_id)
            yield replayed
            last_sent = time.monotonic()

        def render(live: LiveEvent) -> bytes | None:
            if seen:
                if live.event_id in seen:
                    return None
                seen.clear()  # live events arrive in commit order: the rest are all new
            return live.frame

        yield from relay(
            listener,
            render,
            gone,
            until=started + limits.max_seconds,
            heartbeat_seconds=limits.heartbeat_seconds,
            last_sent=last_sent,
        )

    def _replay(self, tenant_id: str, after: str, gone: Callable[[], bool]) -> Iterator[tuple[str, bytes]]:
        """The tenant's project events in the durable stream after entry ``after``, in order."""
        r = self._positions.client
        while not gone():
            entries = r.xrange(self._positions.stream(tenant_id), f"({after}", "+", count=_PAGE)
            for entry_id, fields in entries:
                after = entry_id
                type_ = fields.get("type", "")
                if fields.get("tenant_id") != tenant_id or not type_.startswith("project."):
                    continue
                try:
                    event_id = json.loads(fields["event"])["id"]
                except (KeyError, TypeError, ValueError):
                    continue
                yield event_id, frame(fields["event"], event_id=event_id, event=type_)
            if len(entries) < _PAGE:
                return


def _tenant_of(event: Mapping[str, Any]) -> str | None:
    return event["tenant_id"]


class LiveProjectEvents(LiveEvents):
    """This worker's ``project.*`` events from pub/sub, fanned out by tenant to open streams."""

    PATTERN = EVENT_CHANNEL_PREFIX + "project.*"

    def __init__(self, subscriber: Subscriber) -> None:
        super().__init__(subscriber, [self.PATTERN], _tenant_of)
