"""A stand-in for :class:`aerie.tenant_directory.TenantDirectory` that unit tests set by hand."""

from __future__ import annotations

from typing import Any

from aerie_client.http import PeerUnavailable

__all__ = ["FakeTenants"]


class FakeTenants:
    """Tenants by id; an unknown id is an active tenant, ``None`` means tenants is unreachable.

    ``set(tid, status="suspended", plan="team")`` changes one tenant; ``missing`` holds ids
    the tenants service answers 404 for.
    """

    def __init__(self) -> None:
        self.tenants: dict[str, dict[str, Any] | None] = {}
        self.missing: set[str] = set()
        self.calls = 0

    def set(self, tenant_id: str, **fields: Any) -> dict[str, Any]:
        tenant = {**self._default(tenant_id), **(self.tenants.get(tenant_id) or {}), **fields}
        self.tenants[tenant_id] = tenant
        return tenant

    def unreachable(self, tenant_id: str) -> None:
        self.tenants[tenant_id] = None

    def get(self, tenant_id: str) -> dict[str, Any] | None:
        self.calls += 1
        if tenant_id in self.missing:
            return None
        if tenant_id in self.tenants and self.tenants[tenant_id] is None:
            raise PeerUnavailable("tenants")
        return self.tenants.get(tenant_id) or self._default(tenant_id)

    def status(self, tenant_id: str) -> str:
        tenant = self.get(tenant_id)
        return "deleted" if tenant is None else str(tenant["status"])

    def clear(self) -> None:
        pass

    @staticmethod
    def _default(tenant_id: str) -> dict[str, Any]:
        return {
            "id": tenant_id,
            "status": "active",
            "plan": "free",
            "language": "en",
            "created_at": "2024-01-01T00:00:00Z",
        }
