"""How many streams a process may hold and for how long, from its settings and uWSGI's.

Each open stream holds one uWSGI thread for its whole life, so the cap follows from the
worker's thread count; the longest lifetime follows from uWSGI's ``harakiri``, which kills
the *whole worker* (every stream on it) when one request outlives it.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, replace

from aerie.config import number_setting

__all__ = ["StreamLimits", "uwsgi_harakiri", "uwsgi_threads"]

log = logging.getLogger("aerie.sse")


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
