"""End-to-end journeys against a running Aerie: local, or staging after a deploy.

The suite reads only the ``AERIE_*`` variables of API.md ("Running it"). With none set it
starts an isolated local stack on free ports and stops it afterwards. Everything a run
creates is removed again, newest first, even when a test fails, so it can run against a
shared staging space again and again.
"""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from aerie.testing.http import basic_auth

REPO = Path(__file__).resolve().parents[1]
SERVICES = ("tenants", "projects", "flags", "audit")


def _configured() -> dict[str, str] | None:
    env = {k: v for k, v in os.environ.items() if k.startswith("AERIE_")}
    needed = ("AERIE_TENANTS_URL", "AERIE_BOOTSTRAP_CLIENT_ID", "AERIE_BOOTSTRAP_CLIENT_SECRET")
    return env if all(env.get(k) for k in needed) else None


@pytest.fixture(scope="session")
def stack_env() -> Iterator[dict[str, str]]:
    configured = _configured()
    if configured is not None:
        yield configured
        return
    from aerie.local.stack import LocalStack

    with tempfile.TemporaryDirectory(prefix="aerie-e2e-") as state:
        stack = LocalStack.isolated(REPO, Path(state))
        with stack:
            yield stack.env()


class Aerie:
    """The suite as a customer sees it: URLs, the bootstrap client, and cleanup."""

    def __init__(self, env: dict[str, str], run_id: str) -> None:
        self.env = env
        self.run_id = run_id
        self.http = requests.Session()
        self.calls: list[str] = []
        self._cleanup: list[tuple[str, Callable[[], object]]] = []
        self.admin_token = self.token(env["AERIE_BOOTSTRAP_CLIENT_ID"], env["AERIE_BOOTSTRAP_CLIENT_SECRET"])

    def url(self, service: str) -> str:
        value = self.env.get(f"AERIE_{service.upper()}_URL")
        if not value:
            pytest.skip(f"AERIE_{service.upper()}_URL is not set")
        return value.rstrip("/")

    def call(
        self,
        method: str,
        service: str,
        path: str,
        *,
        token: str | None = None,
        json: Any = None,
        headers: dict[str, str] | None = None,
        **kw: Any,
    ) -> requests.Response:
        all_headers = {"X-Request-ID": f"e2e-{self.run_id}-{uuid.uuid4().hex[:8]}", **(headers or {})}
        if token:
            all_headers["Authorization"] = f"Bearer {token}"
        r = self.http.request(method, self.url(service) + path, json=json, headers=all_headers, timeout=10, **kw)
        request_id = r.headers.get("X-Request-ID")
        self.calls.append(f"{method} {service}{path} -> {r.status_code} request_id={request_id} body={r.text[:300]}")
        return r

    def token(self, client_id: str, secret: str, **form: str) -> str:
        r = self.http.post(
            self.url("tenants") + "/v1/oauth/token",
            data={"grant_type": "client_credentials", **form},
            headers={"Authorization": basic_auth(client_id, secret)},
            timeout=10,
        )
        assert r.status_code == 200, f"token for {client_id}: {r.status_code} {r.text[:300]}"
        return r.json()["access_token"]

    def on_cleanup(self, what: str, action: Callable[[], object]) -> None:
        self._cleanup.append((what, action))

    def cleanup(self) -> list[str]:
        failures = []
        for what, action in reversed(self._cleanup):  # newest first
            try:
                action()
            except Exception as exc:
                failures.append(f"{what}: {exc}")
        self._cleanup.clear()
        return failures

    def create_tenant(self, **fields: Any) -> dict[str, Any]:
        slug = f"e2e-{self.run_id}-{uuid.uuid4().hex[:6]}"
        body = {"slug": slug, "name": f"E2E {slug}", **fields}
        r = self.call("POST", "tenants", "/v1/tenants", token=self.admin_token, json=body)
        assert r.status_code == 201, r.text
        tenant = r.json()
        self.on_cleanup(
            f"tenant {tenant['id']}",
            lambda: self.call("DELETE", "tenants", f"/v1/tenants/{tenant['id']}", token=self.admin_token),
        )
        return tenant

    def create_client(self, tenant_id: str, scopes: list[str]) -> dict[str, Any]:
        r = self.call(
            "POST",
            "tenants",
            f"/v1/tenants/{tenant_id}/clients",
            token=self.admin_token,
            json={"name": f"e2e-{self.run_id}", "scopes": scopes},
        )
        assert r.status_code == 201, r.text
        client = r.json()
        self.on_cleanup(
            f"client {client['client_id']}",
            lambda: self.call(
                "DELETE", "tenants", f"/v1/tenants/{tenant_id}/clients/{client['client_id']}", token=self.admin_token
            ),
        )
        return client


@pytest.fixture
def aerie(stack_env: dict[str, str], request: pytest.FixtureRequest) -> Iterator[Aerie]:
    handle = Aerie(stack_env, uuid.uuid4().hex[:8])
    request.node.aerie_calls = handle.calls
    yield handle
    failures = handle.cleanup()
    assert not failures, f"cleanup failed: {failures}"


def pytest_report_header(config: pytest.Config) -> list[str]:
    configured = _configured()
    if configured is None:
        return ["aerie e2e: no AERIE_* variables set; testing an isolated local stack started for this run"]
    return ["aerie e2e: testing " + ", ".join(f"{s}={configured.get(f'AERIE_{s.upper()}_URL', '-')}" for s in SERVICES)]


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    report = yield
    calls = getattr(item, "aerie_calls", None)
    if report.failed and calls:
        report.sections.append(("aerie calls (service, request id, response)", "\n".join(calls[-10:])))
    return report
