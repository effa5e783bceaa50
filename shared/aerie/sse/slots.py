"""The cap on open streams: a worker keeps threads for the ordinary API.

A stream over the cap is refused with 503 and ``Retry-After``, which EventSource retries.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from aerie import errors
from aerie.i18n import msg

__all__ = ["StreamSlots"]


class StreamSlots:
    """At most ``limit`` open streams in this process: :meth:`take` one, or 503."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._sem = threading.BoundedSemaphore(limit)

    def take(self) -> Callable[[], None]:
        """A slot, or 503 ``unavailable``; the returned release is safe to call twice."""
        if not self._sem.acquire(blocking=False):
            raise errors.unavailable(msg("Too many open event streams; reconnect shortly."), retry_after=2)
        lock = threading.Lock()
        done = False

        def release() -> None:
            nonlocal done
            with lock:
                if not done:
                    done = True
                    self._sem.release()

        return release
