"""The tenant-deletion cascade: ``tenant.deleted`` removes the tenant's overrides (see :mod:`aerie.cascade`).

Each removed override is a ``flag.override.removed`` event, so every process's snapshot
forgets it and the audit trail records it.
"""

from __future__ import annotations

from aerie import cascade
from flags.storage import FlagStore

__all__ = ["GROUP", "TenantCascade"]

GROUP = "flags"


class TenantCascade(cascade.TenantCascade):
    def __init__(self, store: FlagStore) -> None:
        super().__init__(GROUP, store.purge_tenant)
