from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from falcon import testing

from aerie.app import Infrastructure
from aerie.auth.tokens import StaticKeySource
from aerie.config import Settings
from aerie.testing.keys import TestKey, make_claims
from aerie.testing.rate_limits import NO_RATE_LIMITS
from aerie.testing.tenants import FakeTenants
from projects.app import ProjectsService, build

pytest_plugins = ["aerie.testing.fixtures"]

ISSUER = "http://tenants.test"
TEN_A, TEN_B = "ten_A", "ten_B"


@pytest.fixture(scope="session")
def signing_key() -> TestKey:
    return TestKey("k1")


@pytest.fixture
def settings(redis_url: str) -> Settings:
    return Settings.from_env("projects", {"REDIS_URL": redis_url, "AERIE_ISSUER": ISSUER, **NO_RATE_LIMITS})


@pytest.fixture
def tenant_status() -> FakeTenants:
    return FakeTenants()


@pytest.fixture
def service(settings: Settings, signing_key: TestKey, tenant_status: FakeTenants) -> Iterator[ProjectsService]:
    infra = Infrastructure.from_settings(settings, keys=StaticKeySource({"keys": [signing_key.public_jwk()]}))
    svc = build(settings, infra=infra, tenants=tenant_status)
    yield svc
    svc.close()


@pytest.fixture
def client(service: ProjectsService) -> testing.TestClient:
    return testing.TestClient(service.app)


class Api:
    def __init__(self, client: testing.TestClient, key: TestKey) -> None:
        self.c = client
        self.key = key

    def headers(self, tenant_id: str | None = TEN_A, scope: str = "projects:read projects:write") -> dict[str, str]:
        token = self.key.sign(make_claims(ISSUER, tenant_id=tenant_id, scope=scope))
        return {"Authorization": f"Bearer {token}"}

    def create(self, name: str, tenant_id: str = TEN_A, **extra: Any) -> dict[str, Any]:
        r = self.c.simulate_post("/v1/projects", json={"name": name, **extra}, headers=self.headers(tenant_id))
        assert r.status_code == 201, r.text
        return r.json


@pytest.fixture
def api(client: testing.TestClient, signing_key: TestKey) -> Api:
    return Api(client, signing_key)
