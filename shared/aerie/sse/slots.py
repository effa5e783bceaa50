"""The cap on open streams: a worker keeps threads for the ordinary API.

A stream over the cap is refused with 503 and ``Retry-After``, which EventSource retries.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Protocol

from aerie import errors
from aerie.i18n import msg

__all__ = ["Gauge", "StreamSlots"]


class Gauge(Protocol):
    """What counts the open streams (a ``prometheus_client`` gauge's child)."""

    def inc(self) -> None: ...

    def dec(self) -> None: ...


class StreamSlots:
    """At most ``limit`` open streams in this process: :meth:`take` one, or 503.

    ``gauge`` (``aerie_open_streams``) goes up with each slot taken and down with its release.
    """

    def __init__(self, limit: int, gauge: Gauge | None = None) -> None:
        self.limit = limit
        self._sem = threading.BoundedSemaphore(limit)
        self._gauge = gauge

    def take(self) -> Callable[[], None]:
        """A slot, or 503 ``unavailable``; the returned release is safe to call twice."""
        if not self._sem.acquire(blocking=False):
            raise errors.unavailable(msg("Too many open event streams; reconnect shortly."), retry_after=2)
        lock = threading.Lock()
        done = False
        gauge = self._gauge
        if gauge is not None:
            gauge.inc()

        def release() -> None:
            nonlocal done
            with lock:
                if not done:
                    done = True
                    self._sem.release()
                    if gauge is not None:
                        gauge.dec()

        return release
