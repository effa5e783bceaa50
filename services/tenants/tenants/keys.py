"""The tenants service's Redis key names, all in the platform shard's slot.

Tenants, clients and people are few next to projects and audit entries, and their writes
check what spans tenants (a slug is unique platform-wide, an identity may belong to several
tenants), so every key is in one slot: the platform shard's (:mod:`aerie.keyspace`), whose
stream takes these writes' events. Unsharded, the names are the single-node ones.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aerie.keyspace import UNSHARDED, Keyspace

if TYPE_CHECKING:
    from tenants.members import Identity

__all__ = ["TenantKeys"]


class TenantKeys:
    def __init__(self, keyspace: Keyspace = UNSHARDED) -> None:
        self.shard = keyspace.platform
        tag = self.tag = self.shard.tag
        self.index = f"{tag}tenants:index"
        self.bootstrap_marker = f"{tag}tenants:bootstrap-admin-invited"

    def tenant(self, tenant_id: str) -> str:
        return f"{self.tag}tenants:t:{tenant_id}"

    def slug(self, slug: str) -> str:
        return f"{self.tag}tenants:slug:{slug}"

    def status(self, status: str) -> str:
        return f"{self.tag}tenants:status:{status}"

    def client(self, client_id: str) -> str:
        return f"{self.tag}tenants:c:{client_id}"

    def clients(self, tenant_id: str) -> str:
        return f"{self.tag}tenants:clients:{tenant_id}"

    def member(self, member_id: str) -> str:
        return f"{self.tag}tenants:m:{member_id}"

    def members(self, scope: str) -> str:
        return f"{self.tag}tenants:members:{scope}"

    def email(self, scope: str, email: str) -> str:
        return f"{self.tag}tenants:member-email:{scope}:{email}"

    def owners(self, scope: str) -> str:
        return f"{self.tag}tenants:owners:{scope}"

    def identity(self, identity: Identity) -> str:
        return f"{self.tag}tenants:identity:{identity.digest()}"

    def invites(self, email: str) -> str:
        return f"{self.tag}tenants:invites:{email}"
