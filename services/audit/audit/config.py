"""The audit service's own settings, read once from :class:`aerie.config.Settings`.

``AUDIT_RETENTION_DAYS`` is the documented name, without the ``AERIE_`` prefix, so it is
not in ``Settings.extra`` and is read from the environment beside it. Unset: entries are
kept for ever.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from aerie.config import Settings, int_setting

__all__ = ["AuditConfig"]


@dataclass(frozen=True)
class AuditConfig:
    #: Days an entry is kept after it was recorded; None keeps everything.
    retention_days: int | None = None
    #: How long an event may sit pending with a consumer before another one takes it over.
    reclaim_idle_ms: int = 30_000
    #: Events per stream read, appended per trail in one transaction.
    batch: int = 500
    retention_interval_s: int = 300
    #: How long one stream read waits for new events (also how long stopping may take).
    block_ms: int = 1000

    @classmethod
    def from_settings(cls, settings: Settings, environ: Mapping[str, str] | None = None) -> AuditConfig:
        """``environ`` (the process's environment by default) gives ``AUDIT_RETENTION_DAYS``."""
        env = os.environ if environ is None else environ
        extra = settings.extra
        days = int_setting(env, "AUDIT_RETENTION_DAYS", 0, 1, 100 * 366)
        return cls(
            retention_days=days or None,
            reclaim_idle_ms=int_setting(extra, "AERIE_AUDIT_RECLAIM_IDLE_MS", 30_000, 1, 24 * 3600 * 1000),
            batch=int_setting(extra, "AERIE_AUDIT_BATCH", 500, 1, 10_000),
            retention_interval_s=int_setting(extra, "AERIE_AUDIT_RETENTION_INTERVAL_S", 300, 1, 24 * 3600),
        )
