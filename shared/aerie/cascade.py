"""The tenant-deletion cascade: each service removes a deleted tenant's data from the stream.

``tenant.deleted`` is read from the durable stream by the service's own consumer group
(created from the stream's beginning, so a deletion that happened while the service was
down, or before it first ran, is still handled). The service gives the purge: it removes
what the service holds for the tenant, publishing an event per removed thing in the same
transaction, and is idempotent (a redelivered deletion finds nothing and publishes nothing).
The purge's events carry the deletion's actor and request id (whoever deleted the tenant
deleted its data) and ``data.cause`` names the ``tenant.deleted`` event.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from aerie.events import EventContext, StreamConsumer
from aerie.redis import RedisProvider

__all__ = ["TENANT_DELETED", "Purge", "TenantCascade"]

log = logging.getLogger("aerie.cascade")

TENANT_DELETED = "tenant.deleted"


class Purge(Protocol):
    def __call__(self, tenant_id: str, ctx: EventContext, cause: Mapping[str, Any]) -> int:
        """Remove the tenant's data with its events; how many things were removed."""
        ...


class TenantCascade:
    """The stream handler for one service; :meth:`consumer` runs it (a background worker)."""

    def __init__(self, service: str, purge: Purge, *, on_deleted: Callable[[str], None] | None = None) -> None:
        self.service = service
        self._purge = purge
        self._on_deleted = on_deleted

    def __call__(self, event: dict[str, Any]) -> None:
        if event.get("type") != TENANT_DELETED:
            return
        tenant_id = event.get("tenant_id")
        if not isinstance(tenant_id, str) or not tenant_id:
            log.error("tenant.deleted without a tenant id skipped", extra={"event_id": event.get("id")})
            return
        cause = {"type": TENANT_DELETED, "event_id": event.get("id")}
        removed = self._purge(tenant_id, EventContext.caused_by(event, self.service), cause)
        log.info("deleted tenant's data removed", extra={"tenant_id": tenant_id, "removed": removed})
        if self._on_deleted is not None:
            self._on_deleted(tenant_id)

    def consumer(self, redis_provider: RedisProvider, **kwargs: Any) -> StreamConsumer:
        """This cascade on the durable stream, as consumer group ``<service>``."""
        return StreamConsumer(redis_provider, group=self.service, handler=self, types=(TENANT_DELETED,), **kwargs)
