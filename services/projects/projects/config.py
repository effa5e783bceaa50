"""The projects service's own settings, read once from :class:`aerie.config.Settings`."""

from __future__ import annotations

from dataclasses import dataclass

from aerie.config import Settings, int_setting
from aerie.sse import StreamLimits
from projects.pages import DEFAULT_MAX_BYTES

__all__ = ["ProjectsConfig"]

_STREAM_LIMITS = StreamLimits()


@dataclass(frozen=True)
class ProjectsConfig:
    #: ``/v1/projects/events`` streams (``AERIE_SSE_*``), before the process's threads cap them.
    stream_limits: StreamLimits = _STREAM_LIMITS
    #: Bytes of recently served pages each process keeps (``AERIE_PAGE_CACHE_BYTES``); 0 keeps none.
    page_cache_bytes: int = DEFAULT_MAX_BYTES

    @classmethod
    def from_settings(cls, settings: Settings) -> ProjectsConfig:
        return cls(
            stream_limits=StreamLimits.from_env(settings.extra),
            page_cache_bytes=int_setting(
                settings.extra, "AERIE_PAGE_CACHE_BYTES", DEFAULT_MAX_BYTES, 0, 64 * 1024 * 1024
            ),
        )
