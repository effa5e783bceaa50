"""Helpers of the flags service's tests (a module of its own: every service's tests dir has a
``conftest``, and one pytest run collects them all, so ``from conftest import`` is ambiguous)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from falcon import testing

from aerie.config import Settings
from aerie.testing.keys import TestKey, make_claims
from flags.config import FlagsConfig

ISSUER = "http://tenants.test"
TEN_A, TEN_B = "ten_A", "ten_B"
TENANT_SCOPES = "flags:read flags:write"


def fast_config(settings: Settings) -> FlagsConfig:
    """The settings' config, with a cascade consumer that stops within 50 ms."""
    return replace(FlagsConfig.from_settings(settings), consumer_block_ms=50)


class Api:
    """Requests against the app with tokens minted on the spot."""

    def __init__(self, client: testing.TestClient, key: TestKey) -> None:
        self.c = client
        self.key = key

    def headers(self, tenant_id: str | None = TEN_A, scope: str = TENANT_SCOPES) -> dict[str, str]:
        token = self.key.sign(make_claims(ISSUER, tenant_id=tenant_id, scope=scope))
        return {"Authorization": f"Bearer {token}"}

    def admin(self) -> dict[str, str]:
        return self.headers(tenant_id=None, scope="platform:admin")

    def put_flag(self, key: str, expect: int | None = None, /, **doc: Any) -> Any:
        doc.setdefault("default", False)
        r = self.c.simulate_put(f"/v1/flags/{key}", json=doc, headers=self.admin())
        if expect is not None:
            assert r.status_code == expect, r.text
        return r

    def evaluate(self, context: Any = None, keys: list[str] | None = None, tenant_id: str = TEN_A) -> Any:
        body: dict[str, Any] = {"context": {} if context is None else context}
        if keys is not None:
            body["keys"] = keys
        return self.c.simulate_post("/v1/evaluate", json=body, headers=self.headers(tenant_id))

    def value(self, key: str, context: Any = None, tenant_id: str = TEN_A) -> Any:
        r = self.evaluate(context, [key], tenant_id)
        assert r.status_code == 200, r.text
        return r.json["flags"][key]
