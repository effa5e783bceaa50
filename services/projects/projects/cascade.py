"""The tenant-deletion cascade: ``tenant.deleted`` removes the tenant's projects (see :mod:`aerie.cascade`).

Each removed project gets its ``project.deleted`` event, in the transaction that removes it,
so the audit trail and open event streams see every project go, not only the tenant. It
runs in every worker as one of ``infra.background``'s workers (:mod:`aerie.background`).
"""

from __future__ import annotations

from collections.abc import Callable

from aerie import cascade
from aerie.events import EventPublisher
from aerie.redis import RedisProvider
from projects.storage import UnsafeAllTenants

__all__ = ["GROUP", "projects_cascade"]

GROUP = "projects"


def projects_cascade(
    redis_provider: RedisProvider,
    events: EventPublisher,
    on_deleted: Callable[[str], None] | None = None,
) -> cascade.TenantCascade:
    """The only caller of :class:`UnsafeAllTenants`."""
    return cascade.TenantCascade(GROUP, UnsafeAllTenants(redis_provider, events).purge_tenant, on_deleted=on_deleted)
