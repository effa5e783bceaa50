"""Suspended tenants may read but not write; an unknown status never lets a write through."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import redis

from aerie.http_client import PeerUnavailable, ServiceClient
from aerie.pubsub import Subscriber
from aerie.testing.http import assert_problem
from projects.tenant_status import HttpTenantStatus

TEN_A = "ten_A"


def _writes(project_id: str) -> list[tuple[str, str, dict | None]]:
    return [
        ("POST", "/v1/projects", {"name": "New"}),
        ("PATCH", f"/v1/projects/{project_id}", {"name": "Changed"}),
        ("DELETE", f"/v1/projects/{project_id}", None),
        ("POST", "/v1/projects/batch-update", {"ids": [project_id], "changes": {"status": "archived"}}),
    ]


@pytest.mark.parametrize("status", ["suspended", "deleted"])
def test_suspended_tenant_reads_but_cannot_write(api, client, tenant_status, status):
    p = api.create("Before")
    tenant_status.statuses[TEN_A] = status
    h = api.headers()
    for method, path, body in _writes(p["id"]):
        assert_problem(client.simulate_request(method, path, json=body, headers=h), 403, "tenant_suspended")
    assert client.simulate_get(f"/v1/projects/{p['id']}", headers=h).json == p
    assert client.simulate_get("/v1/projects", headers=h).status_code == 200
    tenant_status.statuses[TEN_A] = "active"
    assert client.simulate_patch(f"/v1/projects/{p['id']}", json={"name": "After"}, headers=h).status_code == 200


def test_unknown_status_is_503_and_reads_go_on(api, client, tenant_status):
    p = api.create("Before")
    tenant_status.statuses[TEN_A] = None
    h = api.headers()
    for method, path, body in _writes(p["id"]):
        r = client.simulate_request(method, path, json=body, headers=h)
        assert_problem(r, 503, "unavailable")
        assert r.headers["retry-after"]
    assert client.simulate_get(f"/v1/projects/{p['id']}", headers=h).json == p


class _FakeTenants:
    """A stand-in tenants HTTP server: GET /v1/tenants/{id} answers the configured status."""

    def __init__(self) -> None:
        self.statuses: dict[str, str] = {}
        self.hits = 0
        self.down = False
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.hits += 1
                if outer.down:
                    self.send_response(503)
                    self.end_headers()
                    return
                tid = self.path.rsplit("/", 1)[-1]
                if tid not in outer.statuses:
                    self.send_response(404)
                    self.end_headers()
                    return
                body = json.dumps({"id": tid, "status": outer.statuses[tid]}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def fake_tenants():
    server = _FakeTenants()
    yield server
    server.close()


def test_http_status_is_cached_and_invalidated_by_events(fake_tenants, redis_provider, redis_url):
    subscriber = Subscriber(redis_provider)
    source = HttpTenantStatus(ServiceClient(fake_tenants.url, retries=0, peer="tenants"), subscriber)
    subscriber.ensure_started()
    assert subscriber.wait_connected(5)
    try:
        fake_tenants.statuses[TEN_A] = "active"
        assert source.status(TEN_A) == "active"
        assert source.status(TEN_A) == "active"
        assert fake_tenants.hits == 1  # cached
        fake_tenants.statuses[TEN_A] = "suspended"
        event = {
            "id": "evt_1",
            "type": "tenant.suspended",
            "tenant_id": TEN_A,
            "data": {"tenant": {"status": "suspended"}},
        }
        redis.Redis.from_url(redis_url).publish("aerie:event:tenant.suspended", json.dumps(event))
        deadline = time.monotonic() + 2
        while source.status(TEN_A) != "suspended" and time.monotonic() < deadline:
            time.sleep(0.01)
        assert source.status(TEN_A) == "suspended"
        assert source.status("ten_unknown") == "deleted"  # 404 from tenants
    finally:
        subscriber.stop()


def test_http_status_unreachable_without_cache_raises(redis_provider):
    source = HttpTenantStatus(ServiceClient("http://127.0.0.1:9", retries=0, connect_timeout=0.2, peer="tenants"))
    with pytest.raises(PeerUnavailable):
        source.status(TEN_A)


def test_http_status_not_trusted_long_without_subscription(fake_tenants):
    now = [0.0]
    source = HttpTenantStatus(ServiceClient(fake_tenants.url, retries=0, peer="tenants"), None, clock=lambda: now[0])
    fake_tenants.statuses[TEN_A] = "active"
    assert source.status(TEN_A) == "active"
    fake_tenants.statuses[TEN_A] = "suspended"
    now[0] = 5.0  # past the unsubscribed TTL: asked again
    assert source.status(TEN_A) == "suspended"
    fake_tenants.down = True
    now[0] = 10.0
    with pytest.raises(PeerUnavailable):
        source.status(TEN_A)  # a stale answer never stands in when events may have been missed
