from __future__ import annotations

from typing import Any

import pytest
from falcon import testing

from aerie.app import Infrastructure
from aerie.auth.tokens import StaticKeySource
from aerie.config import Settings
from aerie.testing.http import basic_auth as basic
from aerie.testing.keys import TestKey
from aerie.testing.rate_limits import NO_RATE_LIMITS
from tenants.app import create_app
from tenants.config import TenantsConfig

pytest_plugins = ["aerie.testing.fixtures"]

ISSUER = "http://tenants.test"
BOOT_ID = "aerie-bootstrap"
BOOT_SECRET = "b" * 43
SVC_ID = "svc-projects"
SVC_SECRET = "s" * 43


@pytest.fixture(scope="session")
def signing_key() -> TestKey:
    return TestKey("k1")


@pytest.fixture
def env(redis_url: str, signing_key: TestKey) -> dict[str, str]:
    import hashlib
    import json

    return {
        "REDIS_URL": redis_url,
        "AERIE_ISSUER": ISSUER,
        "AERIE_SIGNING_KEYS": json.dumps(signing_key.private_jwks()),
        "AERIE_BOOTSTRAP_CLIENT_ID": BOOT_ID,
        "AERIE_BOOTSTRAP_CLIENT_SECRET": BOOT_SECRET,
        **NO_RATE_LIMITS,
        "AERIE_SERVICE_CLIENTS": json.dumps(
            [
                {
                    "client_id": SVC_ID,
                    "secret_sha256": hashlib.sha256(SVC_SECRET.encode()).hexdigest(),
                    "scopes": ["platform:read", "audit:write"],
                }
            ]
        ),
    }


@pytest.fixture
def app(env: dict[str, str]):
    settings = Settings.from_env("tenants", env)
    config = TenantsConfig.from_settings(settings)
    infra = Infrastructure.from_settings(settings, keys=StaticKeySource(config.keys.jwks()))
    yield create_app(settings, config, infra=infra)
    infra.close()


@pytest.fixture
def client(app) -> testing.TestClient:
    return testing.TestClient(app)


class Api:
    """Small helpers over the TestClient so tests read like the journeys they check."""

    ISSUER = ISSUER
    BOOT_ID = BOOT_ID
    BOOT_SECRET = BOOT_SECRET
    SVC_ID = SVC_ID
    SVC_SECRET = SVC_SECRET

    def __init__(self, client: testing.TestClient) -> None:
        self.c = client

    def token(self, client_id: str = BOOT_ID, secret: str = BOOT_SECRET, **form: str) -> str:
        r = self.c.simulate_post(
            "/v1/oauth/token",
            headers={"Authorization": basic(client_id, secret), "Content-Type": "application/x-www-form-urlencoded"},
            body="&".join(f"{k}={v}" for k, v in {"grant_type": "client_credentials", **form}.items()),
        )
        assert r.status_code == 200, r.text
        return r.json["access_token"]

    def admin(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token()}"}

    def create_tenant(self, slug: str, **extra: Any) -> dict[str, Any]:
        r = self.c.simulate_post(
            "/v1/tenants", json={"slug": slug, "name": slug.title(), **extra}, headers=self.admin()
        )
        assert r.status_code == 201, r.text
        return r.json

    def create_client(self, tenant_id: str, scopes: list[str], headers: dict[str, str] | None = None) -> dict[str, Any]:
        r = self.c.simulate_post(
            f"/v1/tenants/{tenant_id}/clients", json={"name": "ci", "scopes": scopes}, headers=headers or self.admin()
        )
        assert r.status_code == 201, r.text
        return r.json

    def tenant_headers(self, tenant_id: str, scopes: list[str]) -> dict[str, str]:
        created = self.create_client(tenant_id, scopes)
        return {"Authorization": f"Bearer {self.token(created['client_id'], created['client_secret'])}"}


@pytest.fixture
def api(client: testing.TestClient) -> Api:
    return Api(client)
