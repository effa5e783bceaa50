"""GET /v1/flags/stream: definition changes for everyone, override changes for their tenant only;
long-lived, yet ended by the token's expiry and its client's revocation."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator

import pytest
import redis
from falcon import testing
from flagtest import ISSUER, TEN_A, TEN_B, Api, fast_config

from aerie.app import Infrastructure
from aerie.auth.revocation import record_revocation
from aerie.auth.tokens import StaticKeySource
from aerie.config import Settings
from aerie.testing.http import assert_problem
from aerie.testing.keys import make_claims
from flags.app import FlagsService, build


def frames(text: str) -> list[dict[str, str]]:
    out = []
    for block in text.split("\n\n"):
        fields: dict[str, str] = {}
        for line in block.splitlines():
            if line and not line.startswith(":"):
                name, _, value = line.partition(": ")
                fields[name] = value
        if "id" in fields:
            out.append(fields)
    return out


def _service(env, signing_key, tenants, max_seconds: str) -> FlagsService:
    short = {**env, "AERIE_SSE_MAX_SECONDS": max_seconds, "AERIE_SSE_HEARTBEAT_SECONDS": "0.5"}
    settings = Settings.from_env("flags", {**short, "AERIE_SSE_MAX_STREAMS": "2"})
    infra = Infrastructure.from_settings(settings, keys=StaticKeySource({"keys": [signing_key.public_jwk()]}))
    return build(settings, fast_config(settings), infra=infra, tenants=tenants)


@pytest.fixture
def sse_service(env, signing_key, tenants) -> Iterator[FlagsService]:
    svc = _service(env, signing_key, tenants, "1.5")
    yield svc
    svc.close()


@pytest.fixture
def long_sse_service(env, signing_key, tenants) -> Iterator[FlagsService]:
    svc = _service(env, signing_key, tenants, "60")
    yield svc
    svc.close()


def test_changes_reach_the_right_tenants_only(sse_service, signing_key):
    api = Api(testing.TestClient(sse_service.app), signing_key)
    api.put_flag("streamed", 201, default=False, allow_overrides="tenant")
    results: dict[str, object] = {}

    def listen(tenant_id: str) -> None:
        results[tenant_id] = api.c.simulate_get("/v1/flags/stream", headers=api.headers(tenant_id, "flags:read"))

    listeners = [threading.Thread(target=listen, args=(t,)) for t in (TEN_A, TEN_B)]
    for t in listeners:
        t.start()
    time.sleep(0.4)  # both streams are open and positioned at the live end
    third = api.c.simulate_get("/v1/flags/stream", headers=api.headers(TEN_A, "flags:read"))
    assert_problem(third, 503, "unavailable")  # over the cap of 2
    r = api.c.simulate_put("/v1/flags/streamed/overrides/tenant", json={"value": True}, headers=api.headers(TEN_A))
    assert r.status_code == 200
    api.put_flag("streamed", 200, default=False, allow_overrides="tenant", description="v2")
    assert api.c.simulate_delete("/v1/flags/streamed/overrides/tenant", headers=api.headers(TEN_A)).status_code == 204
    for t in listeners:
        t.join(5)
    seen = {}
    for tenant_id in (TEN_A, TEN_B):
        resp = results[tenant_id]
        assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/event-stream")
        assert ": heartbeat" in resp.text
        got = frames(resp.text)
        for frame in got:
            envelope = json.loads(frame["data"])
            assert frame["id"] == envelope["id"] and frame["event"] == envelope["type"]
        seen[tenant_id] = [f["event"] for f in got]
    assert seen[TEN_A] == ["flag.override.set", "flag.updated", "flag.override.removed"]
    assert seen[TEN_B] == ["flag.updated"]


def _timed_get(client: testing.TestClient, headers: dict[str, str]) -> tuple[object, float]:
    started = time.monotonic()
    r = client.simulate_get("/v1/flags/stream", headers=headers)
    return r, time.monotonic() - started


def test_a_long_stream_ends_when_its_token_expires(long_sse_service, signing_key):
    api = Api(testing.TestClient(long_sse_service.app), signing_key)
    expiring = signing_key.sign(make_claims(ISSUER, tenant_id=TEN_A, scope="flags:read", exp=int(time.time()) + 2))
    r, took = _timed_get(api.c, {"Authorization": f"Bearer {expiring}"})
    assert r.status_code == 200 and r.text.startswith("retry: 1000")
    assert took < 5  # at the token's exp, not after the stream's 60 s


def test_a_long_stream_ends_within_a_second_of_its_client_being_revoked(long_sse_service, signing_key, redis_url):
    api = Api(testing.TestClient(long_sse_service.app), signing_key)
    result: dict[str, tuple[object, float]] = {}
    listener = threading.Thread(
        target=lambda: result.__setitem__("r", _timed_get(api.c, api.headers(TEN_A, "flags:read")))
    )
    listener.start()
    time.sleep(0.5)
    assert listener.is_alive()  # the stream is open, its token good for minutes
    r = redis.Redis.from_url(redis_url, decode_responses=True)
    pipe = r.pipeline(transaction=True)
    record_revocation(pipe, "cli_test", time.time() + 600)
    pipe.publish(
        "aerie:event:client.revoked", json.dumps({"type": "client.revoked", "data": {"client_id": "cli_test"}})
    )
    pipe.execute()
    revoked_at = time.monotonic()
    listener.join(5)
    assert not listener.is_alive()
    response, _took = result["r"]
    assert response.status_code == 200
    assert time.monotonic() - revoked_at < 2.5


def test_a_platform_admin_follows_definition_changes_and_no_tenant_overrides(sse_service, signing_key):
    api = Api(testing.TestClient(sse_service.app), signing_key)
    api.put_flag("watched", 201, default=False, allow_overrides="tenant")
    got: dict[str, object] = {}

    def listen() -> None:
        got["admin"] = api.c.simulate_get("/v1/flags/stream", headers=api.admin())

    listener = threading.Thread(target=listen)
    listener.start()
    time.sleep(0.4)
    r = api.c.simulate_put("/v1/flags/watched/overrides/tenant", json={"value": True}, headers=api.headers(TEN_A))
    assert r.status_code == 200
    api.put_flag("watched", 200, default=False, allow_overrides="tenant", description="v2")
    listener.join(5)
    resp = got["admin"]
    assert resp.status_code == 200, resp.text
    assert [f["event"] for f in frames(resp.text)] == ["flag.updated"]


def test_a_platform_token_without_admin_cannot_open_the_stream(sse_service, signing_key):
    api = Api(testing.TestClient(sse_service.app), signing_key)
    r = api.c.simulate_get("/v1/flags/stream", headers=api.headers(None, "platform:read flags:read"))
    assert_problem(r, 403, "tenant_required")
