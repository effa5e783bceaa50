"""The flags service's Redis key names, all in the platform shard's slot.

Every write of a definition or an override bumps the one global revision in its ``MULTI``
(:mod:`flags.storage`), so every key a write touches, a tenant's overrides included, is in
one slot: the platform shard's (:mod:`aerie.keyspace`), whose stream takes the writes'
events. Unsharded, the names are the single-node ones.
"""

from __future__ import annotations

from aerie.keyspace import UNSHARDED, Keyspace

__all__ = [
    "DEFINITIONS",
    "INDEX",
    "LAST_EVALUATED",
    "OVERRIDE_TENANTS",
    "REVISION",
    "SCHEDULES",
    "SCHEDULES_DUE",
    "FlagKeys",
]

DEFINITIONS = "flags:definitions"
INDEX = "flags:index"
REVISION = "flags:revision"
OVERRIDE_TENANTS = "flags:override-tenants"
LAST_EVALUATED = "flags:last-evaluated"
SCHEDULES = "flags:schedules"
SCHEDULES_DUE = "flags:schedules:due"


class FlagKeys:
    def __init__(self, keyspace: Keyspace = UNSHARDED) -> None:
        self.shard = keyspace.platform
        tag = self.tag = self.shard.tag
        self.definitions = tag + DEFINITIONS
        self.index = tag + INDEX
        self.revision = tag + REVISION
        self.override_tenants = tag + OVERRIDE_TENANTS
        self.last_evaluated = tag + LAST_EVALUATED
        self.schedules = tag + SCHEDULES
        self.schedules_due = tag + SCHEDULES_DUE

    def schedules_of(self, key: str) -> str:
        """One flag's schedule ids, by time."""
        return f"{self.tag}flags:schedules:of:{key}"

    def tenant_prefix(self, tenant_id: str) -> str:
        """Where a tenant's override keys start (its id in a hash tag, after the shard's)."""
        return f"{self.tag}flags:{{{tenant_id}}}:"
