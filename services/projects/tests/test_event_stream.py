"""GET /v1/projects/events: event ids, resuming, the replay-to-live hand-over, the cap."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator

import pytest
import redis
from falcon import testing

from aerie.app import Infrastructure
from aerie.auth.revocation import record_revocation
from aerie.auth.tokens import StaticKeySource
from aerie.config import Settings
from aerie.events import EventContext
from aerie.pubsub import Subscriber
from aerie.testing.http import assert_problem
from aerie.testing.keys import make_claims
from projects.app import build
from projects.event_positions import EventPositions, PositionedPublisher
from projects.event_stream import LiveProjectEvents, ProjectEventStream, StreamLimits
from projects.storage import ProjectRepository

TEN_A, TEN_B = "ten_A", "ten_B"
ISSUER = "http://tenants.test"
CLIENT_ID = make_claims(ISSUER)["client_id"]


def frames(text: str) -> list[dict[str, str]]:
    """The stream's frames (comments left out) as field -> value."""
    out = []
    for block in text.split("\n\n"):
        fields: dict[str, str] = {}
        for line in block.splitlines():
            if line and not line.startswith(":"):
                name, _, value = line.partition(": ")
                fields[name] = value
        if "id" in fields or "data" in fields:
            out.append(fields)
    return out


def events_of(text: str) -> list[dict]:
    """The project events a stream sent, each checked to carry its event id as ``id:``."""
    out = []
    for f in frames(text):
        if f.get("event", "").startswith("project."):
            event = json.loads(f["data"])
            assert f["id"] == event["id"] and f["event"] == event["type"]
            out.append(event)
    return out


def stream_event_ids(redis_url: str, tenant_id: str) -> list[str]:
    """The tenant's project event ids in durable stream order."""
    r = redis.Redis.from_url(redis_url, decode_responses=True)
    return [
        json.loads(f["event"])["id"]
        for _id, f in r.xrange("aerie:events")
        if f["tenant_id"] == tenant_id and f["type"].startswith("project.")
    ]


@pytest.fixture
def short_settings(redis_url: str) -> Settings:
    env = {
        "REDIS_URL": redis_url,
        "AERIE_ISSUER": "http://tenants.test",
        "AERIE_SSE_MAX_SECONDS": "1.5",
        "AERIE_SSE_HEARTBEAT_SECONDS": "0.5",
        "AERIE_SSE_MAX_STREAMS": "2",
    }
    return Settings.from_env("projects", env)


@pytest.fixture
def sse(short_settings, signing_key, tenant_status) -> Iterator[testing.TestClient]:
    infra = Infrastructure.from_settings(short_settings, keys=StaticKeySource({"keys": [signing_key.public_jwk()]}))
    svc = build(short_settings, infra=infra, tenants=tenant_status)
    yield testing.TestClient(svc.app)
    svc.close()


def in_background(fn) -> tuple[threading.Thread, dict]:
    result: dict = {}
    t = threading.Thread(target=lambda: result.update(r=fn()))
    t.start()
    return t, result


def test_resume_from_an_event_id_replays_only_own_later_events(api, sse, redis_url):
    api.create("A one")
    api.create("B one", tenant_id=TEN_B)
    redis.Redis.from_url(redis_url).xadd("aerie:events", {"event": "{}", "type": "tenant.updated", "tenant_id": TEN_A})
    a2, a3 = api.create("A two"), api.create("A three")
    first, *_ = stream_event_ids(redis_url, TEN_A)
    r = sse.simulate_get("/v1/projects/events", headers={**api.headers(), "Last-Event-ID": first})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    assert [e["data"]["project"]["id"] for e in events_of(r.text)] == [a2["id"], a3["id"]]
    assert ": heartbeat" in r.text and r.text.startswith("retry: 1000\n\n")
    newest = stream_event_ids(redis_url, TEN_A)[-1]
    r = sse.simulate_get("/v1/projects/events", headers={**api.headers(), "Last-Event-ID": newest})
    assert events_of(r.text) == []


def test_a_new_stream_marks_its_start_and_delivers_live_events(api, sse, redis_url):
    api.create("Before")
    newest = stream_event_ids(redis_url, TEN_A)[-1]
    t, result = in_background(lambda: sse.simulate_get("/v1/projects/events", headers=api.headers()))
    time.sleep(0.4)
    live = api.create("Live")
    api.create("Other tenant", tenant_id=TEN_B)
    t.join(5)
    got = frames(result["r"].text)
    assert got[0] == {"id": newest}  # id only: a reconnect resumes from here, nothing is dispatched
    assert [e["data"]["project"]["id"] for e in events_of(result["r"].text)] == [live["id"]]


def test_no_gap_and_no_duplicate_while_events_pour_in(api, sse, redis_url):
    """Writes keep coming while a stream resumes: it must send each later event exactly once."""
    api.create("Start")
    resume_from = stream_event_ids(redis_url, TEN_A)[-1]

    written_by: list[float] = []

    def write() -> None:
        repo = ProjectRepository(
            _provider(redis_url), TEN_A, PositionedPublisher()
        )  # straight to storage: fast enough to overlap the replay and the switch to live
        for i in range(60):
            repo.create({"name": f"Pour {i}"}, EventContext.system("test"))
            if i % 10 == 0:
                time.sleep(0.02)
        written_by.append(time.monotonic())

    writer = threading.Thread(target=write)
    writer.start()
    r = sse.simulate_get("/v1/projects/events", headers={**api.headers(), "Last-Event-ID": resume_from})
    stream_ended = time.monotonic()
    writer.join()
    sent = [e["id"] for e in events_of(r.text)]
    expected = stream_event_ids(redis_url, TEN_A)
    later = expected[expected.index(resume_from) + 1 :]
    # Each later event once and in order, up to where the stream's 1.5 s ended it: on a busy
    # machine the writer may still be writing then, and what it writes after is not sent.
    assert sent and sent == later[: len(sent)]
    if written_by[0] < stream_ended - 0.2:  # the writer was done well before the stream ended
        assert len(sent) == 60


def test_events_committed_while_a_stream_opens_are_sent_once(redis_provider, redis_url):
    """Writes land after the stream listens but before it replays: both paths see them."""
    repo = ProjectRepository(redis_provider, TEN_A, PositionedPublisher())
    ctx = EventContext.system("test")

    class WritesWhileOpening(EventPositions):
        def recent(self, tenant_id: str, count: int) -> list[str]:
            for i in range(3):  # committed after listen(), before the replay reads
                repo.create({"name": f"Racing {i}"}, ctx)
            return super().recent(tenant_id, count)

    subscriber = Subscriber(redis_provider)
    stream = ProjectEventStream(
        WritesWhileOpening(redis_provider),
        LiveProjectEvents(subscriber),
        StreamLimits(max_streams=1, max_seconds=1.0, heartbeat_seconds=5),
    )
    try:
        body = stream.open(TEN_A, None)
        later = threading.Timer(0.3, lambda: repo.create({"name": "Later"}, ctx))
        later.start()
        text = b"".join(body).decode()
        later.join()
    finally:
        subscriber.stop()
    assert [e["id"] for e in events_of(text)] == stream_event_ids(redis_url, TEN_A)
    assert len(events_of(text)) == 4


def test_unknown_last_event_id_starts_live_with_a_reset(api, sse, redis_url):
    api.create("Known")
    newest = stream_event_ids(redis_url, TEN_A)[-1]
    unknown = "evt_01JD0000000000000000000000"
    t, result = in_background(
        lambda: sse.simulate_get("/v1/projects/events", headers={**api.headers(), "Last-Event-ID": unknown})
    )
    time.sleep(0.4)
    live = api.create("After reset")
    t.join(5)
    first = frames(result["r"].text)[0]
    assert first["event"] == "reset" and first["id"] == newest
    assert json.loads(first["data"]) == {"reason": "last_event_id_unknown"}
    assert [e["data"]["project"]["id"] for e in events_of(result["r"].text)] == [live["id"]]
    # another tenant's event id is as unknown as a made-up one
    api.create("B", tenant_id=TEN_B)
    b_event = stream_event_ids(redis_url, TEN_B)[-1]
    r = sse.simulate_get("/v1/projects/events", headers={**api.headers(), "Last-Event-ID": b_event})
    assert frames(r.text)[0]["event"] == "reset" and events_of(r.text) == []


def test_only_the_newest_events_are_resumable(redis_provider):
    publisher = PositionedPublisher(keep=3)
    repo = ProjectRepository(redis_provider, TEN_A, publisher)
    for i in range(5):
        repo.create({"name": f"P{i}"}, EventContext.system("test"))
    r = redis_provider.client
    entries = [(entry_id, json.loads(f["event"])["id"]) for entry_id, f in r.xrange("aerie:events")]
    positions = EventPositions(redis_provider)
    assert [positions.entry_of(TEN_A, eid) for _entry, eid in entries] == [None, None] + [e for e, _ in entries[2:]]
    assert positions.entry_of(TEN_B, entries[-1][1]) is None
    start = positions.start(TEN_A)
    assert start.last_entry == entries[-1][0] and start.newest_event == entries[-1][1]


def test_the_stream_cap_and_its_release(api, sse):
    threads = [in_background(lambda: sse.simulate_get("/v1/projects/events", headers=api.headers())) for _ in range(2)]
    time.sleep(0.3)
    assert_problem(sse.simulate_get("/v1/projects/events", headers=api.headers()), 503, "unavailable")
    for t, _ in threads:
        t.join(5)
    assert sse.simulate_get("/v1/projects/events", headers=api.headers()).status_code == 200


def test_bad_last_event_id_and_auth(api, sse):
    for bad in ("1700000000000-0", "evt_nope", "evt_01JD000000000000000000000U"):
        r = sse.simulate_get("/v1/projects/events", headers={**api.headers(), "Last-Event-ID": bad})
        assert_problem(r, 400, "bad_request")
    platform = api.headers(tenant_id=None, scope="platform:admin")
    assert_problem(sse.simulate_get("/v1/projects/events", headers=platform), 403, "tenant_required")
    assert_problem(
        sse.simulate_get("/v1/projects/events", headers=api.headers(scope="projects:write")), 403, "insufficient_scope"
    )


def _provider(redis_url: str):
    from aerie.config import RedisSettings
    from aerie.redis import RedisProvider

    return RedisProvider(RedisSettings(url=redis_url))


def test_streams_are_capped_below_the_threads_and_the_pool_above_them(short_settings):
    from aerie.redis import pool_for_threads

    assert StreamLimits(max_streams=72).for_threads(96).max_streams == 72  # 24 threads left for the API
    assert StreamLimits(max_streams=72).for_threads(8).max_streams == 4
    assert StreamLimits(max_streams=72).for_threads(None).max_streams == 72  # not under uWSGI
    assert pool_for_threads(short_settings, 96).redis.max_connections == 200  # one per thread, one more for a pipeline
    assert pool_for_threads(short_settings, None) is short_settings


@pytest.fixture
def long_sse(redis_url, signing_key, tenant_status) -> Iterator[testing.TestClient]:
    env = {"REDIS_URL": redis_url, "AERIE_ISSUER": ISSUER, "AERIE_SSE_MAX_SECONDS": "20"}
    settings = Settings.from_env("projects", env)
    infra = Infrastructure.from_settings(settings, keys=StaticKeySource({"keys": [signing_key.public_jwk()]}))
    svc = build(settings, infra=infra, tenants=tenant_status)
    yield testing.TestClient(svc.app)
    svc.close()


def _timed_stream(client: testing.TestClient, headers: dict[str, str]) -> tuple[object, float]:
    started = time.monotonic()
    r = client.simulate_get("/v1/projects/events", headers=headers)
    return r, time.monotonic() - started


def test_a_stream_ends_at_its_tokens_expiry(long_sse, signing_key):
    token = signing_key.sign(make_claims(ISSUER, tenant_id=TEN_A, scope="projects:read", exp=int(time.time()) + 2))
    r, took = _timed_stream(long_sse, {"Authorization": f"Bearer {token}"})
    assert r.status_code == 200
    assert took < 5  # at the token's exp, not after the stream's 20 s


def test_a_stream_ends_within_a_second_of_its_client_being_revoked(api, long_sse, redis_url):
    t, result = in_background(lambda: _timed_stream(long_sse, api.headers(TEN_A, "projects:read")))
    time.sleep(0.5)
    assert t.is_alive()
    r = redis.Redis.from_url(redis_url, decode_responses=True)
    pipe = r.pipeline(transaction=True)
    record_revocation(pipe, CLIENT_ID, time.time() + 600)
    pipe.publish("aerie:event:client.revoked", json.dumps({"type": "client.revoked", "data": {"client_id": CLIENT_ID}}))
    pipe.execute()
    revoked_at = time.monotonic()
    t.join(5)
    assert not t.is_alive()
    assert result["r"][0].status_code == 200
    assert time.monotonic() - revoked_at < 2.5
