"""The console with its services faked at the HTTP client (:mod:`consoletest`)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from console.app import ConsoleService, build
from console.config import ConsoleConfig
from console.oidc import SignInFlow
from consoletest import IDP, Browser, FakeApi, FakeHttp

from aerie.config import Settings

pytest_plugins = ["aerie.testing.fixtures"]


@pytest.fixture
def settings(redis_url: str) -> Settings:
    return Settings.from_env(
        "console",
        {
            "REDIS_URL": redis_url,
            "AERIE_TENANTS_URL": "http://tenants.test",
            "AERIE_PROJECTS_URL": "http://projects.test",
            "AERIE_FLAGS_URL": "http://flags.test",
            "AERIE_AUDIT_URL": "http://audit.test",
            "AERIE_CONSOLE_URL": "http://127.0.0.1:8085",
            "AERIE_CONSOLE_OIDC_ISSUER": IDP,
            "AERIE_CONSOLE_OIDC_CLIENT_ID": "aerie-local",
            "AERIE_CLIENT_ID": "svc-console",
            "AERIE_CLIENT_SECRET": "console-test-secret-0123456789abcdef0123",
        },
    )


@pytest.fixture
def fake_api() -> FakeApi:
    return FakeApi()


@pytest.fixture
def fake_http() -> FakeHttp:
    return FakeHttp()


@pytest.fixture
def service(settings: Settings, fake_api: FakeApi, fake_http: FakeHttp) -> Iterator[ConsoleService]:
    config = ConsoleConfig.from_settings(settings)
    svc = build(settings, config, api=fake_api, flow=SignInFlow(config, fake_http))  # type: ignore[arg-type]
    yield svc
    svc.close()


@pytest.fixture
def client(service: ConsoleService) -> Browser:
    return Browser(service.app)
