"""This worker's pub/sub events, framed once and routed to the open streams that show them.

What a service adds is only what its stream shows: which pub/sub patterns, and a routing
function from an event to the key of the streams it goes to.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from aerie.pubsub import Subscriber
from aerie.sse.fanout import Fanout
from aerie.sse.frames import frame

__all__ = ["EVERYONE", "LiveEvent", "LiveEvents", "Route"]

log = logging.getLogger("aerie.sse")


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
