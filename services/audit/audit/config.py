"""The audit service's own settings, beside :class:`aerie.config.Settings`.

``AUDIT_RETENTION_DAYS`` is named by the issue without the ``AERIE_`` prefix, so it is read
from the environment here rather than from ``Settings.extra``. Unset: entries are kept for
ever.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from aerie.config import ConfigError

__all__ = ["AuditConfig"]


def _positive_int(env: Mapping[str, str], name: str, default: int | None) -> int | None:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a whole number, got {raw!r}") from None
    if value < 1:
        raise ConfigError(f"{name} must be at least 1, got {value}")
    return value


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
    def from_env(cls, env: Mapping[str, str]) -> AuditConfig:
        return cls(
            retention_days=_positive_int(env, "AUDIT_RETENTION_DAYS", None),
            reclaim_idle_ms=_positive_int(env, "AERIE_AUDIT_RECLAIM_IDLE_MS", 30_000) or 30_000,
            batch=_positive_int(env, "AERIE_AUDIT_BATCH", 500) or 500,
            retention_interval_s=_positive_int(env, "AERIE_AUDIT_RETENTION_INTERVAL_S", 300) or 300,
        )
