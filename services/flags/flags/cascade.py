"""The tenant-deletion cascade: ``tenant.deleted`` on the durable stream removes the tenant's overrides.

It reads the stream as consumer group ``flags`` (from the stream's beginning, so a deletion
that happened while this service was down is still handled); purging is idempotent, and
each removed override is a ``flag.override.removed`` event, so every process's snapshot
forgets it and the audit trail records it.
"""

from __future__ import annotations

import logging
from typing import Any

from aerie.events import EventContext
from flags.storage import FlagStore

__all__ = ["GROUP", "TenantCascade"]

log = logging.getLogger("flags.cascade")

GROUP = "flags"


class TenantCascade:
    def __init__(self, store: FlagStore) -> None:
        self._store = store

    def __call__(self, event: dict[str, Any]) -> None:
        if event.get("type") != "tenant.deleted":
            return
        tenant_id = event.get("tenant_id")
        if not isinstance(tenant_id, str) or not tenant_id:
            log.error("tenant.deleted without a tenant id skipped", extra={"event_id": event.get("id")})
            return
        cause = {"type": "tenant.deleted", "event_id": event.get("id")}
        removed = self._store.purge_tenant(tenant_id, EventContext.caused_by(event, "flags"), cause)
        log.info("tenant's flag overrides removed", extra={"tenant_id": tenant_id, "flags": removed})
