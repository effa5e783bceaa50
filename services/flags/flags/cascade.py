"""The tenant-deletion cascade: ``tenant.deleted`` removes the tenant's overrides (see :mod:`aerie.cascade`).

Each removed override is a ``flag.override.removed`` event, so every process's snapshot
forgets it and the audit trail records it.
"""

from __future__ import annotations

from aerie import cascade
from flags.storage import FlagStore

__all__ = ["GROUP", "flags_cascade"]

GROUP = "flags"


def flags_cascade(store: FlagStore) -> cascade.TenantCascade:
    return cascade.TenantCascade(GROUP, store.purge_tenant)
