"""A stream that is live only: a slot, a listener, the relay, and cleanup as one body."""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable, Iterator

from aerie import errors
from aerie.i18n import msg
from aerie.sse.body import SSEBody
from aerie.sse.fanout import Listener
from aerie.sse.frames import RETRY
from aerie.sse.limits import StreamLimits
from aerie.sse.live import LiveEvent, LiveEvents
from aerie.sse.relay import relay
from aerie.sse.slots import Gauge, StreamSlots

__all__ = ["LiveStreams"]


class LiveStreams:
    """Streams that show live events only, from the moment they open (no replay).

    For a client that reads its full state after (re)connecting: the listener is registered
    before the response starts, so nothing published after the client's next read is missed.
    """

    def __init__(self, live: LiveEvents, limits: StreamLimits, gauge: Gauge | None = None) -> None:
        self._live = live
        self.limits = limits
        self._slots = StreamSlots(limits.max_streams, gauge)

    def open(
        self, key: Hashable, gone: Callable[[], bool] = lambda: False, *, lifetime: float | None = None
    ) -> SSEBody:
        """Take a slot (or 503) and listen for ``key``'s events; the body to send.

        ``lifetime`` shortens the stream below ``limits.max_seconds`` (a token's expiry).
        """
        release = self._slots.take()
        try:
            if not self._live.ready(2.0):
                raise errors.unavailable(msg("Live events are not available right now; reconnect shortly."))
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
