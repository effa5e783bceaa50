"""GET /v1/projects/events: only the caller's project events, resumable, bounded, capped."""

from __future__ import annotations

import json
import threading
import time

import pytest
import redis

from aerie.app import Infrastructure
from aerie.auth.tokens import StaticKeySource
from aerie.config import Settings
from aerie.testing.http import assert_problem
from projects.app import build

TEN_A, TEN_B = "ten_A", "ten_B"


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
def short_settings(redis_url: str) -> Settings:
    env = {
        "REDIS_URL": redis_url,
        "AERIE_ISSUER": "http://tenants.test",
        "AERIE_SSE_MAX_SECONDS": "1.5",
        "AERIE_SSE_HEARTBEAT_SECONDS": "0.5",
        "AERIE_SSE_MAX_STREAMS": "1",
    }
    return Settings.from_env("projects", env)


@pytest.fixture
def sse(short_settings, signing_key, tenant_status):
    from falcon import testing

    infra = Infrastructure.from_settings(short_settings, keys=StaticKeySource({"keys": [signing_key.public_jwk()]}))
    svc = build(short_settings, infra, tenant_status)
    yield testing.TestClient(svc.app)
    svc.close()


def test_resume_from_last_event_id_only_own_project_events(api, sse, redis_url):
    a1 = api.create("A one")
    api.create("B one", tenant_id=TEN_B)
    redis.Redis.from_url(redis_url).xadd("aerie:events", {"event": "{}", "type": "tenant.updated", "tenant_id": TEN_A})
    a2 = api.create("A two")
    first_id = redis.Redis.from_url(redis_url, decode_responses=True).xrange("aerie:events", count=1)[0][0]
    r = sse.simulate_get("/v1/projects/events", headers={**api.headers(), "Last-Event-ID": first_id})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    got = frames(r.text)
    assert [json.loads(f["data"])["data"]["project"]["id"] for f in got] == [a2["id"]]
    assert got[0]["event"] == "project.created"
    r = sse.simulate_get("/v1/projects/events", headers={**api.headers(), "Last-Event-ID": "0-0"})
    ids = [json.loads(f["data"])["data"]["project"]["id"] for f in frames(r.text)]
    assert ids == [a1["id"], a2["id"]]
    assert ": heartbeat" in r.text


def test_live_events_and_the_stream_cap(api, sse):
    result: dict = {}

    def listen() -> None:
        result["r"] = sse.simulate_get("/v1/projects/events", headers=api.headers(scope="projects:read"))

    t = threading.Thread(target=listen)
    t.start()
    time.sleep(0.3)
    r = sse.simulate_get("/v1/projects/events", headers=api.headers())
    assert_problem(r, 503, "unavailable")  # cap of 1 open stream
    created = api.create("Live")
    api.create("Other tenant", tenant_id=TEN_B)
    t.join(5)
    events = [json.loads(f["data"]) for f in frames(result["r"].text)]
    assert [e["data"]["project"]["id"] for e in events] == [created["id"]]
    # the slot is free again once the stream ended
    assert sse.simulate_get("/v1/projects/events", headers=api.headers()).status_code == 200


def test_bad_last_event_id_and_auth(api, sse):
    r = sse.simulate_get("/v1/projects/events", headers={**api.headers(), "Last-Event-ID": "evt_nope"})
    assert_problem(r, 400, "bad_request")
    platform = api.headers(tenant_id=None, scope="platform:admin")
    assert_problem(sse.simulate_get("/v1/projects/events", headers=platform), 403, "tenant_required")
    assert_problem(
        sse.simulate_get("/v1/projects/events", headers=api.headers(scope="projects:write")), 403, "insufficient_scope"
    )


def test_a_stream_closed_before_its_first_byte_frees_its_slot(redis_provider):
    from projects.event_stream import EventStream, StreamLimits

    stream = EventStream(redis_provider, StreamLimits(max_streams=1))
    body = stream.open(TEN_A, None)
    from aerie.errors import Problem

    with pytest.raises(Problem) as refused:
        stream.open(TEN_A, None)
    assert refused.value.problem_code == "unavailable"
    body.close()  # what the server does when the client went away before the first chunk
    stream.open(TEN_A, None).close()
