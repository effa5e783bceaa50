"""The flags service's own settings, read once from :class:`aerie.config.Settings`."""

from __future__ import annotations

from dataclasses import dataclass

from aerie.config import Settings
from aerie.sse import StreamLimits
from flags.stream import DEFAULT_LIMITS, LONGEST_SECONDS

__all__ = ["FlagsConfig"]


@dataclass(frozen=True)
class FlagsConfig:
    #: ``/v1/flags/stream`` streams (``AERIE_SSE_*``), before the process's threads and
    #: harakiri cap them.
    stream_limits: StreamLimits = DEFAULT_LIMITS
    #: How long one read of the tenant-deletion stream waits (also how long stopping may take).
    consumer_block_ms: int = 1000
    #: How often each worker looks for scheduled changes that are due (they apply within a second).
    schedule_interval_s: float = 0.25
    #: How often each worker writes which flags it evaluated (``last_evaluated_at``).
    usage_flush_s: float = 5.0

    @classmethod
    def from_settings(cls, settings: Settings) -> FlagsConfig:
        return cls(stream_limits=StreamLimits.from_env(settings.extra, DEFAULT_LIMITS, longest=LONGEST_SECONDS))
