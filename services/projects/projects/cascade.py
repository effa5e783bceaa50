"""The tenant-deletion cascade: ``tenant.deleted`` on the durable stream removes the tenant's projects.

It reads the stream as consumer group ``projects`` (created from the stream's beginning, so
a deletion that happened while this service was down, or before it first ran, is still
handled). Each removed project gets its ``project.deleted`` event, in the transaction that
removes it, so the audit trail and open event streams see every project go, not only the
tenant. The events carry the deletion's actor and request id (whoever deleted the tenant
deleted its projects) and ``data.cause`` names the ``tenant.deleted`` event. A redelivered
event publishes nothing more: projects already gone have no event.

It runs in every worker as one of ``infra.background``'s workers (:mod:`aerie.background`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from aerie.events import EventContext, EventPublisher
from aerie.redis import RedisProvider
from projects.storage import UnsafeAllTenants

__all__ = ["GROUP", "TenantCascade"]

log = logging.getLogger("projects.cascade")

GROUP = "projects"


class TenantCascade:
    """The stream handler: the only caller of :class:`UnsafeAllTenants`."""

    def __init__(
        self,
        redis_provider: RedisProvider,
        events: EventPublisher,
        on_deleted: Callable[[str], None] | None = None,
    ) -> None:
        self._unsafe = UnsafeAllTenants(redis_provider, events)
        self._on_deleted = on_deleted

    def __call__(self, event: dict[str, Any]) -> None:
        if event.get("type") != "tenant.deleted":
            return
        tenant_id = event.get("tenant_id")
        if not isinstance(tenant_id, str) or not tenant_id:
            log.error("tenant.deleted without a tenant id skipped", extra={"event_id": event.get("id")})
            return
        ctx = EventContext.caused_by(event, "projects")
        cause = {"type": "tenant.deleted", "event_id": event.get("id")}
        removed = self._unsafe.purge_tenant(tenant_id, ctx, cause)
        log.info("tenant's projects removed", extra={"tenant_id": tenant_id, "projects": removed})
        if self._on_deleted is not None:
            self._on_deleted(tenant_id)
