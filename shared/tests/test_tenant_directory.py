"""The tenant directory: cached, kept fresh by tenant.* events, never a guess when tenants is away."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import redis

from aerie.pubsub import Subscriber
from aerie.tenant_directory import TenantDirectory
from aerie_client.http import PeerUnavailable, ServiceClient

TEN_A = "ten_A"


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
                body = json.dumps({"id": tid, "status": outer.statuses[tid], "plan": "team"}).encode()
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
    source = TenantDirectory(ServiceClient(fake_tenants.url, retries=0, peer="tenants"), subscriber)
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
    source = TenantDirectory(ServiceClient("http://127.0.0.1:9", retries=0, connect_timeout=0.2, peer="tenants"))
    with pytest.raises(PeerUnavailable):
        source.status(TEN_A)


def test_http_status_not_trusted_long_without_subscription(fake_tenants):
    now = [0.0]
    source = TenantDirectory(ServiceClient(fake_tenants.url, retries=0, peer="tenants"), None, clock=lambda: now[0])
    fake_tenants.statuses[TEN_A] = "active"
    assert source.status(TEN_A) == "active"
    fake_tenants.statuses[TEN_A] = "suspended"
    now[0] = 5.0  # past the unsubscribed TTL: asked again
    assert source.status(TEN_A) == "suspended"
    fake_tenants.down = True
    now[0] = 10.0
    with pytest.raises(PeerUnavailable):
        source.status(TEN_A)  # a stale answer never stands in when events may have been missed


def test_directory_gives_the_whole_tenant_and_tells_listeners(fake_tenants, redis_provider, redis_url):
    subscriber = Subscriber(redis_provider)
    source = TenantDirectory(ServiceClient(fake_tenants.url, retries=0, peer="tenants"), subscriber)
    changed: list[str] = []
    source.on_change(changed.append)
    subscriber.ensure_started()
    assert subscriber.wait_connected(5)
    try:
        fake_tenants.statuses[TEN_A] = "active"
        assert source.get(TEN_A) == {"id": TEN_A, "status": "active", "plan": "team"}
        assert source.get("ten_unknown") is None
        event = {
            "id": "evt_2",
            "type": "tenant.updated",
            "tenant_id": TEN_A,
            "data": {"tenant": {"id": TEN_A, "status": "active", "plan": "enterprise"}},
        }
        redis.Redis.from_url(redis_url).publish("aerie:event:tenant.updated", json.dumps(event))
        deadline = time.monotonic() + 2
        while not changed and time.monotonic() < deadline:
            time.sleep(0.01)
        assert changed == [TEN_A]
        assert source.get(TEN_A)["plan"] == "enterprise"
        assert fake_tenants.hits == 2  # the event's document was taken, not fetched again
    finally:
        subscriber.stop()


def test_directory_keeps_at_most_max_tenants(fake_tenants):
    # No subscriber, so entries are trusted for the unsubscribed TTL: a clock that stands still.
    source = TenantDirectory(
        ServiceClient(fake_tenants.url, retries=0, peer="tenants"), None, max_tenants=2, clock=lambda: 0.0
    )
    for tid in ("ten_1", "ten_2", "ten_3"):
        fake_tenants.statuses[tid] = "active"
        assert source.status(tid) == "active"
    assert fake_tenants.hits == 3
    assert source.status("ten_3") == "active"
    assert source.status("ten_2") == "active"
    assert fake_tenants.hits == 3  # the two most recent are kept
    assert source.status("ten_1") == "active"
    assert fake_tenants.hits == 4  # the oldest was dropped, so asked again
