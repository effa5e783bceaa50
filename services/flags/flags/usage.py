"""When each flag was last evaluated, kept without a Redis write per evaluation.

Evaluation marks the keys it evaluated in a per-process set (:class:`Usage`, a set update
per request: well under a microsecond for ten flags). A :class:`UsageFlusher` thread writes
the marked keys' time to ``flags:last-evaluated`` every few seconds, and rewrites a key only
when its stored time is older than ``rewrite_after_s``, so a flag evaluated all day costs one
``HSET`` field per process every half minute, whatever the request rate. ``last_evaluated_at``
is therefore late by at most ``flush_s + rewrite_after_s`` (the contract allows a minute).

What is counted is what this service evaluates: ``POST /v1/evaluate``, one flag's evaluation
and both OFREP routes. The Python client evaluates in its own process and is not counted.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable

from aerie.background import Periodic
from aerie.events import utcnow
from aerie.redis import REDIS_DOWN

__all__ = ["Usage", "UsageFlusher"]

log = logging.getLogger("flags.usage")


class Usage:
    """The flag keys this process evaluated since the last :meth:`take`.

    Marking is a plain ``set`` update: atomic under the GIL, so request threads need no lock.
    :meth:`take` swaps in a new set and copies the old one (one C call, so no thread adds to
    it while it is read); a mark racing the swap by a few instructions can miss this flush,
    and the flag's next evaluation marks it again.
    """

    def __init__(self) -> None:
        self._seen: set[str] = set()

    def saw(self, key: str) -> None:
        self._seen.add(key)

    def saw_all(self, keys: Iterable[str]) -> None:
        self._seen.update(keys)

    def take(self) -> set[str]:
        seen, self._seen = self._seen, set()
        return set(seen)

    def give_back(self, keys: Iterable[str]) -> None:
        """Keys a failed flush could not write: marked again, for the next one."""
        self._seen.update(keys)


class UsageFlusher(Periodic):
    """This process's thread that writes :class:`Usage` marks to Redis every ``flush_s``."""

    thread_name = "flags-usage"

    def __init__(
        self,
        usage: Usage,
        write: Callable[[dict[str, str]], None],
        known: Callable[[], Iterable[str]],
        *,
        flush_s: float = 5.0,
        rewrite_after_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(flush_s, log)
        self._usage = usage
        self._write = write
        self._known = known
        self._rewrite_after_s = rewrite_after_s
        self._clock = clock
        #: key -> when this process last wrote it (monotonic).
        self._written: dict[str, float] = {}

    def flush(self) -> int:
        """Write what was marked (and is still a flag); how many keys were written."""
        seen = self._usage.take()
        if not seen:
            return 0
        now = self._clock()
        known = set(self._known())
        due = [
            k
            for k in seen
            if k in known and now - self._written.get(k, -self._rewrite_after_s) >= self._rewrite_after_s
        ]
        if not due:
            return 0
        at = utcnow()
        try:
            self._write(dict.fromkeys(due, at))
        except REDIS_DOWN:
            self._usage.give_back(due)
            raise
        for key in due:
            self._written[key] = now
        if len(self._written) > 2 * len(known) + 100:  # forget deleted flags
            self._written = {k: v for k, v in self._written.items() if k in known}
        return len(due)

    tick = flush

    def stop(self, timeout: float = 5.0) -> None:
        super().stop(timeout)
        try:
            self.flush()  # a graceful stop keeps what this process saw
        except Exception as exc:
            log.warning("flag usage not written at stop", extra={"error_type": type(exc).__name__})
