"""Helpers of the audit unit tests (a uniquely named module: every service's tests run in one pytest)."""

from __future__ import annotations

from typing import Any

from falcon import testing

from aerie.events import EventContext, EventPublisher, new_event
from aerie.redis import RedisProvider
from aerie.testing.keys import TestKey, make_claims
from audit.ingest import Ingestor

ISSUER = "http://tenants.test"
TEN_A, TEN_B = "ten_A", "ten_B"


class Api:
    def __init__(self, client: testing.TestClient, key: TestKey) -> None:
        self.c = client
        self.key = key

    def headers(self, tenant_id: str | None = TEN_A, scope: str = "audit:read audit:write") -> dict[str, str]:
        token = self.key.sign(make_claims(ISSUER, tenant_id=tenant_id, scope=scope))
        return {"Authorization": f"Bearer {token}"}

    def admin(self) -> dict[str, str]:
        return self.headers(None, "platform:admin")

    def get(self, path: str, as_tenant: str | None = TEN_A, **params: Any) -> Any:
        """GET as a tenant's audit client, or (``as_tenant=None``) as platform:admin."""
        headers = self.admin() if as_tenant is None else self.headers(as_tenant)
        return self.c.simulate_get(path, params=params or None, headers=headers)

    def append(self, body: dict[str, Any], tenant_id: str | None = TEN_A) -> Any:
        headers = self.headers(None, "audit:write") if tenant_id is None else self.headers(tenant_id)
        return self.c.simulate_post("/v1/audit/events", json=body, headers=headers)


def event(type_: str, tenant_id: str | None, data: dict[str, Any] | None = None, **ctx: Any) -> dict[str, Any]:
    context = EventContext(
        actor=ctx.get("actor", {"type": "client", "id": "cli_1", "client_id": "cli_1"}),
        request_id=ctx.get("request_id", "req-1"),
        ip=ctx.get("ip", "10.0.0.1"),
        user_agent=ctx.get("user_agent", "pytest"),
    )
    return new_event(type_, tenant_id, data or {}, context)


def ingest(redis_provider: RedisProvider, events: list[dict[str, Any]]) -> None:
    """Record events the way the stream consumer does, without the stream."""
    Ingestor(redis_provider)([(str(i), e) for i, e in enumerate(events)])


def publish(redis_provider: RedisProvider, events: list[dict[str, Any]]) -> None:
    pipe = redis_provider.client.pipeline(transaction=False)
    publisher = EventPublisher()
    for e in events:
        publisher.add(pipe, e)
    pipe.execute()
