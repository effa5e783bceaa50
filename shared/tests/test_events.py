"""aerie.events, aerie.pubsub and aerie.auth.revocation against a real redis-server."""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import redis
from falcon import testing

from aerie.auth.principal import Principal
from aerie.auth.revocation import REVOKED_CLIENTS_KEY, RevocationList, record_revocation
from aerie.config import RedisSettings
from aerie.events import (
    EVENT_CHANNEL_PREFIX,
    MAX_ACTOR_CHARS,
    MAX_ENVELOPE_CHARS,
    MAX_EVENT_CHARS,
    STREAM_KEY,
    EventContext,
    EventPublisher,
    StreamConsumer,
    new_event,
)
from aerie.local.redis_server import RedisServer
from aerie.pubsub import Subscriber
from aerie.redis import RedisProvider

pytestmark = pytest.mark.timeout(60)

ENVELOPE_FIELDS = {
    "id",
    "type",
    "version",
    "occurred_at",
    "tenant_id",
    "actor",
    "request_id",
    "ip",
    "user_agent",
    "data",
}
CTX = EventContext(
    actor={"type": "client", "id": "sub-1", "client_id": "cli-1"},
    request_id="req-1",
    ip="203.0.113.9",
    user_agent="pytest",
)


@pytest.fixture
def r(redis_provider: RedisProvider) -> redis.Redis:
    return redis_provider.client


@pytest.fixture
def subscribers() -> Iterator[list[Subscriber]]:
    made: list[Subscriber] = []
    yield made
    for s in made:
        s.stop()


def eventually(check: Callable[[], Any], timeout: float = 3.0, interval: float = 0.01) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result or time.monotonic() > deadline:
            return result
        time.sleep(interval)


def event(type_: str = "project.created", tenant_id: str | None = "ten-1", **data: Any) -> dict[str, Any]:
    return new_event(type_, tenant_id, data or {"id": "prj-1"}, CTX)


def consumer(provider: RedisProvider, handler: Callable[[dict[str, Any]], None], **kwargs: Any) -> StreamConsumer:
    kwargs.setdefault("group", "audit")
    kwargs.setdefault("block_ms", 50)
    return StreamConsumer(provider, handler=handler, **kwargs)


def pending(r: redis.Redis, group: str = "audit") -> int:
    return int(r.xpending(STREAM_KEY, group)["pending"])


# -- the envelope ------------------------------------------------------------------------


def test_envelope_fields():
    evt = new_event("tenant.created", "ten-1", {"slug": "acme"}, CTX)
    assert set(evt) == ENVELOPE_FIELDS
    assert evt["id"].startswith("evt_")
    assert evt["type"] == "tenant.created"
    assert evt["version"] == 1
    assert evt["tenant_id"] == "ten-1"
    assert evt["actor"] == {"type": "client", "id": "sub-1", "client_id": "cli-1"}
    assert (evt["request_id"], evt["ip"], evt["user_agent"]) == ("req-1", "203.0.113.9", "pytest")
    assert evt["data"] == {"slug": "acme"}
    assert evt["occurred_at"].endswith("Z")
    assert datetime.fromisoformat(evt["occurred_at"].replace("Z", "+00:00")).utcoffset().total_seconds() == 0
    assert new_event("tenant.created", None, {}, CTX)["id"] != evt["id"]


def test_event_context_from_request():
    req = testing.create_req(
        headers={"X-Forwarded-For": "198.51.100.1, 203.0.113.7", "User-Agent": "curl/8"},
    )
    req.context.request_id = "req-42"
    principal = Principal("sub-9", "cli-9", "ten-9", frozenset({"projects:write"}), "jti-1", 0)
    ctx = EventContext.from_request(req, principal)
    assert ctx.ip == "203.0.113.7"  # the last hop, the one our router added
    assert ctx.user_agent == "curl/8"
    assert ctx.request_id == "req-42"
    assert ctx.actor == {"type": "client", "id": "sub-9", "client_id": "cli-9"}
    assert EventContext.system("audit").actor == {"type": "service", "id": "audit", "client_id": None}


# -- bounds (issue 23, item 2) -------------------------------------------------------------


def test_request_borne_envelope_fields_are_cut_with_a_marker_saying_how_long_they_were():
    huge = "h" * 900_000
    ctx = EventContext(
        actor={"type": "client", "id": huge, "client_id": huge, "n": 7},
        request_id=huge,
        ip=huge,
        user_agent=huge,
    )
    evt = new_event("token.denied", huge, {"kept": "as it is"}, ctx)
    limits = {**MAX_ENVELOPE_CHARS, "actor.id": MAX_ACTOR_CHARS, "actor.client_id": MAX_ACTOR_CHARS}
    values = {**{k: evt[k] for k in MAX_ENVELOPE_CHARS}, "actor.id": evt["actor"]["id"]}
    values["actor.client_id"] = evt["actor"]["client_id"]
    for name, value in values.items():
        assert len(value) <= limits[name], name
        assert value.startswith("hhhh") and value.endswith("…[truncated, 900000 chars]"), name
    assert evt["actor"]["type"] == "client" and evt["actor"]["n"] == 7
    assert evt["data"] == {"kept": "as it is"}  # data is the route's to bound (see the backstop below)
    assert len(json.dumps(evt)) < 2048


def test_values_within_the_bounds_are_kept_exactly():
    at_limit = EventContext(
        actor={"type": "client", "id": "i" * MAX_ACTOR_CHARS, "client_id": None},
        request_id="r" * MAX_ENVELOPE_CHARS["request_id"],
        ip="2001:db8::1",
        user_agent="u" * MAX_ENVELOPE_CHARS["user_agent"],
    )
    evt = new_event("x.y", "t" * MAX_ENVELOPE_CHARS["tenant_id"], {}, at_limit)
    assert evt["actor"] == dict(at_limit.actor)
    assert (evt["request_id"], evt["ip"], evt["user_agent"]) == (
        at_limit.request_id,
        "2001:db8::1",
        at_limit.user_agent,
    )
    assert evt["tenant_id"] == "t" * MAX_ENVELOPE_CHARS["tenant_id"]
    assert new_event("x.y", None, {}, EventContext(None, None, None, None))["actor"] is None


def test_an_event_past_the_size_bound_is_published_with_a_marker_for_its_data(r, caplog):
    copies = "c" * 900_000
    evt = new_event("token.denied", "ten-1", {"a": copies, "b": copies, "c": copies}, CTX)
    EventPublisher().publish(r, evt)
    [(_id, fields)] = r.xrange(STREAM_KEY)
    assert len(fields["event"]) < 2048
    stored = json.loads(fields["event"])
    assert stored["data"]["truncated"] is True and stored["data"]["chars"] > 2_700_000
    assert re.fullmatch(r"[0-9a-f]{64}", stored["data"]["sha256"])
    assert {k: v for k, v in stored.items() if k != "data"} == {k: v for k, v in evt.items() if k != "data"}
    assert any("size bound" in rec.getMessage() and rec.event_id == evt["id"] for rec in caplog.records)


def test_the_largest_event_a_validated_request_makes_is_published_whole(r):
    # A flag whose default is a string as long as a 1 MiB body allows: consumers apply it as state.
    doc = {"key": "big", "default": "v" * (1024 * 1024 - 100)}
    evt = new_event("flag.updated", None, {"flag": doc, "revision": 3}, CTX)
    EventPublisher().publish(r, evt)
    [(_id, fields)] = r.xrange(STREAM_KEY)
    assert json.loads(fields["event"]) == evt
    assert 1024 * 1024 < len(fields["event"]) < MAX_EVENT_CHARS


# -- publication -------------------------------------------------------------------------


def test_publish_writes_the_stream_entry(r):
    evt = event()
    EventPublisher().publish(r, evt)
    [(_entry_id, fields)] = r.xrange(STREAM_KEY)
    assert fields["type"] == "project.created"
    assert fields["tenant_id"] == "ten-1"
    assert json.loads(fields["event"]) == evt


def test_add_is_atomic_with_the_write(r):
    pipe = r.pipeline(transaction=True)
    pipe.set("project:prj-1", "v1")
    EventPublisher().add(pipe, event())
    pipe.execute()
    assert r.get("project:prj-1") == "v1"
    assert r.xlen(STREAM_KEY) == 1


def test_aborted_transaction_leaves_neither_write_nor_event(r, redis_url):
    other = redis.Redis.from_url(redis_url, decode_responses=True)
    r.set("project:prj-1:version", "1")
    with r.pipeline(transaction=True) as pipe:
        pipe.watch("project:prj-1:version")
        assert pipe.get("project:prj-1:version") == "1"
        other.set("project:prj-1:version", "2")  # a concurrent writer wins the race
        pipe.multi()
        pipe.set("project:prj-1", "from the loser")
        pipe.set("project:prj-1:version", "2")
        EventPublisher().add(pipe, event("project.updated"))
        with pytest.raises(redis.WatchError):
            pipe.execute()
    assert r.get("project:prj-1") is None
    assert r.exists(STREAM_KEY) == 0
    other.close()


def test_publish_fans_out_to_subscribers(r, redis_url):
    listener = redis.Redis.from_url(redis_url, decode_responses=True).pubsub(ignore_subscribe_messages=True)
    listener.psubscribe(EVENT_CHANNEL_PREFIX + "project.*")
    assert eventually(lambda: listener.get_message(timeout=0.1) is None and listener.subscribed)
    evt = event()
    EventPublisher().publish(r, evt)
    message = eventually(lambda: listener.get_message(timeout=0.1))
    assert message["channel"] == EVENT_CHANNEL_PREFIX + "project.created"
    assert json.loads(message["data"]) == evt
    listener.close()


def test_subscriber_delivers_matching_events(redis_provider, r, subscribers):
    got: list[tuple[str, dict[str, Any]]] = []
    sub = Subscriber(redis_provider)
    subscribers.append(sub)
    sub.on(EVENT_CHANNEL_PREFIX + "flag.*", lambda channel, data: got.append((channel, json.loads(data))))
    sub.ensure_started()
    assert sub.wait_connected(5)
    EventPublisher().publish(r, event("project.created"))
    flag_event = event("flag.updated", key="beta")
    EventPublisher().publish(r, flag_event)
    assert eventually(lambda: got)
    time.sleep(0.1)
    assert got == [(EVENT_CHANNEL_PREFIX + "flag.updated", flag_event)]


# -- the durable consumer ----------------------------------------------------------------


def test_consumer_handles_each_event_once_and_acks(redis_provider, r):
    published = [event(id=f"prj-{i}") for i in range(3)]
    for evt in published:
        EventPublisher().publish(r, evt)
    seen: list[dict[str, Any]] = []
    c = consumer(redis_provider, seen.append)
    assert c.poll_once() == 3
    assert seen == published
    assert pending(r) == 0
    assert c.poll_once() == 0
    assert len(seen) == 3


def test_duplicate_event_is_handled_once(redis_provider, r):
    evt = event()
    EventPublisher().publish(r, evt)
    EventPublisher().publish(r, evt)  # the same event XADDed twice
    assert r.xlen(STREAM_KEY) == 2
    seen: list[str] = []
    c = consumer(redis_provider, lambda e: seen.append(e["id"]))
    c.poll_once()
    c.poll_once()
    assert seen == [evt["id"]]
    assert pending(r) == 0


def test_consumer_of_some_types_acks_the_rest_without_handling_or_markers(redis_provider, r):
    wanted = event("tenant.deleted", id="ten-1")
    for evt in [event(id="prj-1"), wanted, event("flag.updated", None, id="f")]:
        EventPublisher().publish(r, evt)
    seen: list[dict[str, Any]] = []
    c = consumer(redis_provider, seen.append, group="cascade", types=("tenant.deleted",))
    assert c.poll_once() == 1
    assert seen == [wanted]
    assert pending(r, "cascade") == 0
    assert list(r.scan_iter(match="aerie:processed:cascade:*")) == [f"aerie:processed:cascade:{wanted['id']}"]


def test_groups_are_independent(redis_provider, r):
    EventPublisher().publish(r, event())
    audit: list[str] = []
    cascade: list[str] = []
    consumer(redis_provider, lambda e: audit.append(e["id"]), group="audit").poll_once()
    consumer(redis_provider, lambda e: cascade.append(e["id"]), group="cascade").poll_once()
    assert len(audit) == len(cascade) == 1


def test_entries_of_a_dead_consumer_are_reclaimed(redis_provider, r):
    published = [event(id=f"prj-{i}") for i in range(2)]
    for evt in published:
        EventPublisher().publish(r, evt)
    seen: list[str] = []
    survivor = consumer(redis_provider, lambda e: seen.append(e["id"]), consumer="survivor", min_idle_ms=200)
    survivor.ensure_group()
    # A consumer reads the entries and dies before acknowledging them.
    read = r.xreadgroup("audit", "dead", {STREAM_KEY: ">"}, count=10)
    assert len(read[0][1]) == 2
    assert survivor.poll_once() == 0  # not idle long enough yet: the owner may still be working
    assert seen == []
    time.sleep(0.3)
    assert survivor.poll_once() == 2
    assert seen == [e["id"] for e in published]
    assert pending(r) == 0


def test_failing_handler_leaves_entry_pending_and_it_is_retried(redis_provider, r):
    evt = event()
    EventPublisher().publish(r, evt)
    calls: list[str] = []

    def flaky(e: dict[str, Any]) -> None:
        calls.append(e["id"])
        if len(calls) == 1:
            raise RuntimeError("downstream hiccup")

    c = consumer(redis_provider, flaky, min_idle_ms=100)
    assert c.poll_once() == 0
    assert pending(r) == 1
    assert r.exists(f"aerie:processed:audit:{evt['id']}") == 0
    time.sleep(0.15)
    assert c.poll_once() == 1
    assert calls == [evt["id"], evt["id"]]
    assert pending(r) == 0


def test_group_created_after_publication_sees_earlier_events(redis_provider, r):
    earlier = event()
    EventPublisher().publish(r, earlier)
    seen: list[str] = []
    c = consumer(redis_provider, lambda e: seen.append(e["id"]), group="late-joiner")
    c.poll_once()
    assert seen == [earlier["id"]]


def test_malformed_entry_is_skipped_and_acked(redis_provider, r):
    r.xadd(STREAM_KEY, {"event": "{not json", "type": "x", "tenant_id": ""})
    good = event()
    EventPublisher().publish(r, good)
    seen: list[str] = []
    c = consumer(redis_provider, lambda e: seen.append(e["id"]))
    c.poll_once()
    assert seen == [good["id"]]
    assert pending(r) == 0


def test_run_in_background_thread(redis_provider, r):
    seen: list[str] = []
    c = consumer(redis_provider, lambda e: seen.append(e["id"]))
    c.start()
    try:
        evt = event()
        EventPublisher().publish(r, evt)
        assert eventually(lambda: seen == [evt["id"]])
    finally:
        c.stop()


def test_run_survives_a_redis_restart(tmp_path: Path):
    """Redis restarted without its data: the group is gone and run() must recreate it."""
    server = RedisServer(tmp_path, appendonly=False).start()
    provider = RedisProvider(RedisSettings(url=server.url, connect_timeout=0.5, read_timeout=1.0))
    seen: list[str] = []
    c = consumer(provider, lambda e: seen.append(e["id"]))
    c.start()
    try:
        first = event()
        EventPublisher().publish(provider.client, first)
        assert eventually(lambda: seen == [first["id"]])
        server.kill()
        time.sleep(0.3)  # the consumer meets the outage (and logs and backs off)
        server = RedisServer(tmp_path, port=server.port, appendonly=False).start()
        second = event()
        EventPublisher().publish(provider.client, second)
        assert eventually(lambda: seen == [first["id"], second["id"]], timeout=10)
    finally:
        c.stop()
        server.stop()


# -- revocation over pub/sub -------------------------------------------------------------


def principal(client_id: str) -> Principal:
    return Principal("sub", client_id, "ten-1", frozenset(), "jti", 0)


def revoke(r: redis.Redis, client_id: str, until: float | None = None) -> None:
    """What the tenants service does: the durable record and the event, in one transaction."""
    pipe = r.pipeline(transaction=True)
    record_revocation(pipe, client_id, until if until is not None else time.time() + 3600)
    EventPublisher().add(pipe, new_event("client.revoked", "ten-1", {"client_id": client_id}, CTX))
    pipe.execute()


def revocation_list(provider: RedisProvider, subscribers: list[Subscriber]) -> RevocationList:
    sub = Subscriber(provider, name=f"revocations-{len(subscribers)}")
    subscribers.append(sub)
    revocations = RevocationList(provider, sub)
    sub.ensure_started()
    assert sub.wait_connected(5)
    return revocations


def test_revocation_reaches_other_processes_within_a_second(redis_url, subscribers):
    # Two "processes": each with its own provider, subscriber and in-memory list.
    a = revocation_list(RedisProvider(RedisSettings(url=redis_url)), subscribers)
    b = revocation_list(RedisProvider(RedisSettings(url=redis_url)), subscribers)
    assert not a.is_revoked(principal("cli-x"))
    assert not b.is_revoked(principal("cli-x"))
    writer = RedisProvider(RedisSettings(url=redis_url)).client
    revoke(writer, "cli-x")
    started = time.monotonic()
    assert eventually(lambda: b.is_revoked(principal("cli-x")) and a.is_revoked(principal("cli-x")), timeout=1.0)
    assert time.monotonic() - started < 1.0
    assert not b.is_revoked(principal("cli-y"))


def test_revocations_made_before_start_are_loaded_on_connect(redis_provider, r, subscribers):
    revoke(r, "cli-old")
    revoke(r, "cli-expired", until=time.time() - 1)  # its tokens are all expired: irrelevant
    revocations = revocation_list(redis_provider, subscribers)
    assert revocations.is_revoked(principal("cli-old"))
    assert not revocations.is_revoked(principal("cli-expired"))
    assert not revocations.is_revoked(principal("cli-other"))


def test_is_revoked_before_the_subscriber_connects_reads_redis(redis_provider, r):
    revoke(r, "cli-old")
    revocations = RevocationList(redis_provider, Subscriber(redis_provider))  # never started
    assert revocations.is_revoked(principal("cli-old"))


def test_threads_asking_before_the_first_load_read_redis_once(redis_provider, r):
    # A stream mule starts with many streams at once; each reader would also keep a connection.
    revoke(r, "cli-old")
    revocations = RevocationList(redis_provider, Subscriber(redis_provider))  # never started
    reads_before = r.info("commandstats").get("cmdstat_zrangebyscore", {}).get("calls", 0)
    go = threading.Barrier(8)
    answers: list[bool] = []

    def ask() -> None:
        go.wait()
        answers.append(revocations.is_revoked(principal("cli-old")))

    threads = [threading.Thread(target=ask) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(5)
    assert answers == [True] * 8
    # One load: the revoked clients and the member token floors, once.
    assert r.info("commandstats")["cmdstat_zrangebyscore"]["calls"] - reads_before == 2


def test_record_revocation_prunes_expired_entries(r):
    revoke(r, "cli-a", until=time.time() - 10)
    revoke(r, "cli-b")
    assert r.zrange(REVOKED_CLIENTS_KEY, 0, -1) == ["cli-b"]


def test_revocation_list_survives_concurrent_reload_and_event(redis_provider, r, subscribers):
    """Reloads on request threads while events arrive must not drop a live revocation."""
    revocations = revocation_list(redis_provider, subscribers)
    stop = threading.Event()

    def reload_loop() -> None:
        while not stop.is_set():
            revocations.reload()

    threads = [threading.Thread(target=reload_loop) for _ in range(3)]
    for t in threads:
        t.start()
    try:
        for i in range(20):
            revoke(r, f"cli-{i}")
        assert eventually(lambda: all(revocations.is_revoked(principal(f"cli-{i}")) for i in range(20)))
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert all(revocations.is_revoked(principal(f"cli-{i}")) for i in range(20))


def test_run_recreates_a_group_that_vanished(redis_provider, r):
    """The stream and its group lost between two polls (a restart the client did not notice)."""
    seen: list[str] = []
    c = consumer(redis_provider, lambda e: seen.append(e["id"]))
    c.start()
    try:
        first = event()
        EventPublisher().publish(r, first)
        assert eventually(lambda: seen == [first["id"]])
        r.flushall()
        second = event()
        EventPublisher().publish(r, second)
        assert eventually(lambda: seen == [first["id"], second["id"]], timeout=5)
    finally:
        c.stop()


def test_reload_racing_an_event_does_not_drop_it(redis_provider, r, subscribers, monkeypatch):
    """A reload that read Redis just before a revocation must not overwrite its event.

    The reload's read is made slow, so the ``client.revoked`` event is delivered while the
    reload holds a stale result; the revocation must survive the reload's assignment.
    """
    revocations = revocation_list(redis_provider, subscribers)
    client = redis_provider.client
    read = client.zrangebyscore

    def slow_read(*args: Any, **kwargs: Any) -> Any:
        result = read(*args, **kwargs)
        time.sleep(0.3)
        return result

    monkeypatch.setattr(client, "zrangebyscore", slow_read)
    reloading = threading.Thread(target=revocations.reload)
    reloading.start()
    time.sleep(0.1)  # the reload has read the (empty) set and is "on the wire"
    revoke(r, "cli-x")
    reloading.join()
    assert eventually(lambda: revocations.is_revoked(principal("cli-x")), timeout=1.0)


def test_on_connect_hooks_run_once_the_subscription_is_active(redis_provider, r, subscribers):
    """A reload must not run before Redis applied the PSUBSCRIBE, or a change made in
    between would be in neither the reload nor the live feed."""
    unique = f"{EVENT_CHANNEL_PREFIX}{time.monotonic_ns()}"
    receivers_at_hook: list[int] = []
    got: list[str] = []
    sub = Subscriber(redis_provider)
    subscribers.append(sub)
    sub.on(unique + ".a.*", lambda channel, data: got.append(data))
    sub.on(unique + ".b.*", lambda channel, data: got.append(data))
    # PUBLISH answers how many subscribers received the message.
    sub.on_connect(lambda: receivers_at_hook.append(int(r.publish(unique + ".b.x", "from-hook"))))
    sub.ensure_started()
    assert sub.wait_connected(5)
    assert receivers_at_hook == [1]
    assert eventually(lambda: got == ["from-hook"])
