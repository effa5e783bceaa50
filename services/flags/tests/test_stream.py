"""GET /v1/flags/stream: definition changes for everyone, override changes for their tenant only."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator

import pytest
from falcon import testing
from flagtest import TEN_A, TEN_B, Api

from aerie.app import Infrastructure
from aerie.auth.tokens import StaticKeySource
from aerie.config import Settings
from aerie.testing.http import assert_problem
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


@pytest.fixture
def sse_service(env, signing_key, tenants) -> Iterator[FlagsService]:
    short = {**env, "AERIE_SSE_MAX_SECONDS": "1.5", "AERIE_SSE_HEARTBEAT_SECONDS": "0.5", "AERIE_SSE_MAX_STREAMS": "2"}
    settings = Settings.from_env("flags", short)
    infra = Infrastructure.from_settings(settings, keys=StaticKeySource({"keys": [signing_key.public_jwk()]}))
    svc = build(settings, infra, tenants, consumer_block_ms=50)
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
