"""``GET /v1/flags/stream``: the caller's flag changes, live from this process's pub/sub.

A stream shows every definition change (``flag.created|updated|deleted``: definitions are
global) and the override changes (``flag.override.set|removed``) of the caller's tenant
only; each frame's ``id:`` is the event id, ``event:`` its type, ``data:`` the envelope as
published. Built on :mod:`aerie.sse`: the process's one pub/sub subscription feeds a fan-out
keyed by tenant, and an open stream sleeps on its own queue, so it holds a thread (the
stream mule's under uWSGI: :mod:`aerie.stream_server`) but no Redis connection.

It is a change feed, not a log: it starts at the live end and does not replay. A client
(``aerie_client.flags.client``) refetches ``/v1/flags/snapshot`` after each (re)connect and on
each event, which the listener, registered before the response starts, makes gap-free.
``Last-Event-ID`` is therefore ignored, and a stream that may have missed an event (pub/sub
reconnected, the client read too slowly) simply ends, so the client refetches.

Lifetime: each reconnect costs the client a snapshot fetch, so a stream lives long,
``AERIE_SSE_MAX_SECONDS`` (default 300 s; the stream mule has no ``harakiri``, and where one
applies, the limit is capped 5 s below it). Because a token is checked only
when a request starts, a long stream re-checks its caller itself: it ends at the token's
``exp`` and within a second of the client's revocation (docs/api.md: "within a second ...
everywhere").
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable, Mapping
from typing import Any

from aerie.auth.principal import Principal
from aerie.events import EVENT_CHANNEL_PREFIX
from aerie.pubsub import Subscriber
from aerie.sse import EVERYONE, LiveEvents, LiveStreams, SSEBody, StreamLimits, while_authorized

__all__ = ["DEFAULT_LIMITS", "LONGEST_SECONDS", "FlagChanges", "live_flag_events", "route"]

DEFINITION_TYPES = frozenset({"flag.created", "flag.updated", "flag.deleted"})
OVERRIDE_TYPES = frozenset({"flag.override.set", "flag.override.removed"})

#: 144 streams an instance (its stream mule, aerie.stream_server), 5 minutes each.
DEFAULT_LIMITS = StreamLimits(max_streams=144, max_seconds=300.0, heartbeat_seconds=15.0)
#: The longest ``AERIE_SSE_MAX_SECONDS`` accepted (the harakiri cap applies on top).
LONGEST_SECONDS = 3600.0


def route(event: Mapping[str, Any]) -> Hashable | None:
    """Definitions go to every stream, overrides to their tenant's, anything else nowhere."""
    type_ = event["type"]
    if type_ in DEFINITION_TYPES:
        return EVERYONE
    if type_ in OVERRIDE_TYPES:
        return event["tenant_id"]
    return None


def live_flag_events(subscriber: Subscriber) -> LiveEvents:
    return LiveEvents(subscriber, [EVENT_CHANNEL_PREFIX + "flag.*"], route)


class FlagChanges:
    """Opens the streams; ``is_revoked`` is the token verifier's revocation check."""

    def __init__(self, streams: LiveStreams, is_revoked: Callable[[Principal], bool]) -> None:
        self._streams = streams
        self._is_revoked = is_revoked

    def open(self, principal: Principal, gone: Callable[[], bool] = lambda: False) -> SSEBody:
        """The stream of ``principal``'s tenant, or 503; a platform admin's (no tenant) shows definitions only.

        A platform stream listens under the key None, which no override event is delivered to
        (``route`` gives those their tenant's id), while definition changes go to every stream.
        """

        token_left = max(0.0, principal.expires_at - time.time())
        ended = while_authorized(principal, self._is_revoked, gone)
        return self._streams.open(principal.tenant_id, ended, lifetime=token_left)
