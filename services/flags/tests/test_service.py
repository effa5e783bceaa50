"""The service as a whole: its OpenAPI document, and the tenant-deletion cascade."""

from __future__ import annotations

import json

import pytest
import redis
from flagtest import TEN_A, TEN_B

from aerie.events import STREAM_KEY, EventContext, EventPublisher
from aerie.testing.polling import wait_for
from flags.storage import FlagStore


def test_the_openapi_document_is_valid_and_has_every_route(client):
    validator = pytest.importorskip("openapi_spec_validator")
    doc = client.simulate_get("/openapi.json").json
    validator.validate(doc)
    for path in (
        "/v1/flags",
        "/v1/flags/{key}",
        "/v1/flags/{key}/overrides/tenant",
        "/v1/flags/{key}/overrides/users/{user_id}",
        "/v1/evaluate",
        "/v1/flags/{key}/evaluation",
        "/v1/flags/snapshot",
        "/v1/flags/stream",
    ):
        assert path in doc["paths"], path
    body = doc["paths"]["/v1/evaluate"]["post"]["requestBody"]["content"]
    assert "context" in json.dumps(body)


def test_a_deleted_tenants_overrides_are_removed(api, service, redis_url):
    api.put_flag("c", 201, default=False, allow_overrides="user")
    for tenant_id in (TEN_A, TEN_B):
        r = api.c.simulate_put("/v1/flags/c/overrides/users/u1", json={"value": True}, headers=api.headers(tenant_id))
        assert r.status_code == 200
    r = redis.Redis.from_url(redis_url, decode_responses=True)
    event = {"id": "evt_1", "type": "tenant.deleted", "tenant_id": TEN_A, "data": {}}
    r.xadd(STREAM_KEY, {"event": json.dumps(event), "type": "tenant.deleted", "tenant_id": TEN_A})
    # The service's own consumer (a background worker, started by the first request) handles it.
    assert service.infra.background.worker("cascade") is not None
    assert wait_for(lambda: not r.keys("flags:{ten_A}:*"), 5.0)
    assert r.keys("flags:{ten_B}:*")
    assert r.smembers("flags:override-tenants") == {TEN_B}
    loaded = FlagStore(service.infra.redis, EventPublisher()).load()
    assert set(loaded.overrides) == {TEN_B} and loaded.overrides[TEN_B].users == {"c": {"u1": True}}
    # Every process forgets them too: each removal is an event, caused by the deletion.
    removals = [
        json.loads(fields["event"])
        for _id, fields in r.xrange(STREAM_KEY)
        if json.loads(fields["event"])["type"] == "flag.override.removed"
    ]
    assert [(e["tenant_id"], e["data"]["user_id"], e["data"]["cause"]["event_id"]) for e in removals] == [
        (TEN_A, "u1", "evt_1")
    ]

    def evaluated() -> dict:
        body = {"context": {"user_id": "u1"}, "keys": ["c"]}
        return api.c.simulate_post("/v1/evaluate", json=body, headers=api.headers(TEN_A)).json["flags"]["c"]

    assert wait_for(lambda: evaluated()["reason"] == "DEFAULT", 5.0)
    assert TEN_A not in service.snapshot.current().overrides
    # A redelivered deletion finds nothing and publishes nothing.
    store = FlagStore(service.infra.redis, EventPublisher())
    assert store.purge_tenant(TEN_A, EventContext.system("test"), {"type": "x"}) == 0


def test_ready_fails_while_tenants_is_away(env, signing_key, tenants):
    """Evaluation needs the tenant's attributes and overrides its status: no tenants, not ready."""
    from falcon import testing

    from aerie.app import Infrastructure
    from aerie.auth.tokens import StaticKeySource
    from aerie.config import Settings
    from aerie.local.redis_server import free_port
    from flags.app import build

    settings = Settings.from_env("flags", {**env, "AERIE_TENANTS_URL": f"http://127.0.0.1:{free_port()}"})
    keys = StaticKeySource({"keys": [signing_key.public_jwk()]})
    service = build(settings, infra=Infrastructure.from_settings(settings, keys=keys), tenants=tenants)
    try:
        ready = testing.TestClient(service.app).simulate_get("/ready")
        assert ready.status_code == 503 and "tenants" in ready.json["failed"]
    finally:
        service.close()
