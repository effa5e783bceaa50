from __future__ import annotations

from collections.abc import Iterator

import pytest
from falcon import testing
from flagtest import ISSUER, Api, fast_config

from aerie.app import Infrastructure
from aerie.auth.tokens import StaticKeySource
from aerie.config import Settings
from aerie.testing.keys import TestKey
from aerie.testing.rate_limits import NO_RATE_LIMITS
from aerie.testing.tenants import FakeTenants
from flags.app import FlagsService, build

pytest_plugins = ["aerie.testing.fixtures"]


@pytest.fixture(scope="session")
def signing_key() -> TestKey:
    return TestKey("k1")


@pytest.fixture
def env(redis_url: str) -> dict[str, str]:
    return {"REDIS_URL": redis_url, "AERIE_ISSUER": ISSUER, **NO_RATE_LIMITS}


@pytest.fixture
def settings(env: dict[str, str]) -> Settings:
    return Settings.from_env("flags", env)


@pytest.fixture
def tenants() -> FakeTenants:
    return FakeTenants()


@pytest.fixture
def service(settings: Settings, signing_key: TestKey, tenants: FakeTenants) -> Iterator[FlagsService]:
    infra = Infrastructure.from_settings(settings, keys=StaticKeySource({"keys": [signing_key.public_jwk()]}))
    svc = build(settings, fast_config(settings), infra=infra, tenants=tenants)
    yield svc
    svc.close()


@pytest.fixture
def client(service: FlagsService) -> testing.TestClient:
    return testing.TestClient(service.app)


@pytest.fixture
def api(client: testing.TestClient, signing_key: TestKey) -> Api:
    return Api(client, signing_key)
