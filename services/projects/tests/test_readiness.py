"""/ready checks the tenants service (its /health), cached for a few seconds."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from falcon import testing

from aerie.app import Infrastructure
from aerie.auth.tokens import StaticKeySource
from aerie.config import Settings
from aerie.local.redis_server import free_port
from aerie.readiness import TenantsReachable
from aerie_client.http import PeerUnavailable, ServiceClient
from projects.app import build


class FakeTenants(ThreadingHTTPServer):
    """A tenants service that answers /health with ``status`` and counts the probes."""

    def __init__(self) -> None:
        self.status = 200
        self.probes = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.probes += 1
                self.send_response(outer.status if self.path == "/health" else 404)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        super().__init__(("127.0.0.1", 0), Handler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


@pytest.fixture
def tenants() -> Iterator[FakeTenants]:
    server = FakeTenants()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_verdict_is_cached_then_refreshed(tenants: FakeTenants):
    now = [0.0]
    check = TenantsReachable(ServiceClient(tenants.url, retries=0), ttl_s=3.0, clock=lambda: now[0])
    check()
    check()
    assert tenants.probes == 1
    tenants.status = 503
    now[0] = 2.9
    check()  # still the cached "ok"
    now[0] = 3.0
    with pytest.raises(PeerUnavailable):
        check()
    with pytest.raises(PeerUnavailable):
        check()  # the failure is cached too: a probe storm does not reach tenants
    assert tenants.probes == 2


def test_ready_names_tenants_when_it_is_away(redis_url, signing_key, tenant_status, tenants: FakeTenants):
    def ready(tenants_url: str) -> testing.Result:
        settings = Settings.from_env("projects", {"REDIS_URL": redis_url, "AERIE_TENANTS_URL": tenants_url})
        infra = Infrastructure.from_settings(settings, keys=StaticKeySource({"keys": [signing_key.public_jwk()]}))
        svc = build(settings, infra=infra, tenants=tenant_status)
        try:
            return testing.TestClient(svc.app).simulate_get("/ready")
        finally:
            svc.close()

    up = ready(tenants.url)
    assert up.status_code == 200 and up.json["checks"]["tenants"] == "ok"
    down = ready(f"http://127.0.0.1:{free_port()}")  # nothing listens there
    assert down.status_code == 503 and down.json["failed"] == ["tenants"] and down.headers["Retry-After"]
    assert down.json["checks"]["redis"] == "ok"
