"""The in-process snapshot: no Redis on the hot path, propagation between instances, revisions."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
import redis
from falcon import testing
from flagtest import TEN_A, Api, fast_config

from aerie.app import Infrastructure
from aerie.auth.tokens import StaticKeySource
from aerie.config import Settings
from aerie.testing.polling import wait_for
from aerie.testing.tenants import FakeTenants
from flags.app import FlagsService, build


@pytest.fixture
def second(settings: Settings, signing_key, tenants: FakeTenants) -> Iterator[FlagsService]:
    """Another instance of the service on the same Redis (its own pool, subscriber, snapshot)."""
    infra = Infrastructure.from_settings(settings, keys=StaticKeySource({"keys": [signing_key.public_jwk()]}))
    svc = build(settings, fast_config(settings), infra=infra, tenants=tenants)
    yield svc
    svc.close()


def test_evaluation_does_not_touch_redis(api, service, monkeypatch):
    api.put_flag("hot", 201, default=False, rollout={"percentage": 50})
    assert api.evaluate({"user_id": "u1"}).status_code == 200
    token_headers = api.headers()

    def refuse(*args, **kwargs):
        raise AssertionError(f"Redis command on the hot path: {args[:1]}")

    monkeypatch.setattr(redis.Redis, "execute_command", refuse)
    for path, body in (("/v1/evaluate", {"context": {"user_id": "u2"}}),):
        r = api.c.simulate_post(path, json=body, headers=token_headers)
        assert r.status_code == 200 and r.json["flags"]["hot"]["reason"] in ("SPLIT", "DEFAULT")
    assert (
        api.c.simulate_get("/v1/flags/hot/evaluation", params={"user_id": "u3"}, headers=token_headers).status_code
        == 200
    )
    assert api.c.simulate_get("/v1/flags/snapshot", headers=token_headers).status_code == 200


def test_a_change_through_one_instance_reaches_the_other_by_its_event(api, second, signing_key):
    """No reload runs between changes: each one arrives through its pub/sub event. The 100 ms
    bound is measured over real uWSGI by service_tests/test_flags_service.py, not asserted on
    this process's timing."""
    other = Api(testing.TestClient(second.app), signing_key)
    assert other.c.simulate_get("/ready").status_code == 200  # its snapshot is loaded
    api.put_flag("spread", 201, default=False)
    assert wait_for(lambda: "spread" in second.snapshot.state.flags, 2.0)
    for i in range(5):
        api.put_flag("spread", 200, default=bool(i % 2 == 0))
        assert wait_for(lambda i=i: second.snapshot.state.docs["spread"]["version"] == i + 2, 5.0)
    assert other.value("spread", {})["value"] is True


def test_stale_events_are_skipped_and_a_gap_reloads(service, redis_url):
    snap = service.snapshot
    snap.reload()
    base = snap.state.revision
    event = {
        "type": "flag.created",
        "tenant_id": None,
        "data": {"flag": {"key": "x", "default": True}, "revision": base},
    }
    snap.apply(event)
    assert "x" not in snap.state.flags  # at or below the snapshot's revision: already in it
    r = redis.Redis.from_url(redis_url)
    r.set("flags:revision", base + 5)
    gap = {**event, "data": {**event["data"], "revision": base + 3}}
    snap.apply(gap)
    assert snap.state.revision == base + 5  # reloaded from Redis: the record, not the event
    assert "x" not in snap.state.flags
    later = {**event, "data": {**event["data"], "revision": base + 9}}
    started = time.monotonic()
    snap.apply(later, local=True)  # a local write waits for the revisions before it, then reloads
    assert time.monotonic() - started >= 0.4 and snap.state.revision == base + 5


def test_a_local_write_waits_for_the_revisions_in_flight(service):
    """The writer's next request sees its write even when pub/sub still carries earlier ones."""
    snap = service.snapshot
    snap.reload()
    base = snap.state.revision
    flag = {"key": "w", "default": True}
    first = {"type": "flag.created", "tenant_id": None, "data": {"flag": flag, "revision": base + 1}}
    second = {"type": "flag.updated", "tenant_id": None, "data": {"flag": {**flag, "default": 2}, "revision": base + 2}}
    threading.Timer(0.05, snap.apply, args=(first,)).start()  # "pub/sub" delivers the earlier one
    snap.apply(second, local=True)
    assert snap.state.revision == base + 2 and snap.state.docs["w"]["default"] == 2


def test_the_snapshot_is_rebuilt_when_the_subscriber_reconnects(api, service, redis_url):
    api.put_flag("before", 201, default=False)
    assert api.evaluate({}).status_code == 200
    r = redis.Redis.from_url(redis_url)
    # Changed behind the service's back (no event), then every pub/sub connection is dropped.
    doc = r.hget("flags:definitions", "before")
    r.hset("flags:definitions", "after", doc.replace(b'"before"', b'"after"'))
    for client in r.client_list(_type="pubsub"):
        r.client_kill_filter(_id=client["id"])
    assert wait_for(lambda: "after" in service.snapshot.state.flags, 5.0)
    assert api.value("after", {}, tenant_id=TEN_A)["reason"] == "DEFAULT"


def test_ready_reports_the_snapshot(api):
    r = api.c.simulate_get("/ready")
    assert r.status_code == 200 and r.json["checks"]["flags"] == "ok"
