"""The event stream loses nothing unconsumed: trimmed only below every group's acknowledgements,
poison events dead-lettered without holding up the rest, departed consumers removed."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
import redis

from aerie.events import DEAD_LETTER_STREAM, STREAM_KEY, EventContext, EventPublisher, StreamConsumer, new_event
from aerie.redis import RedisProvider
from aerie.stream_janitor import StreamJanitor, safe_trim_point

CTX = EventContext(actor=None, request_id=None, ip=None, user_agent=None)


@pytest.fixture
def r(redis_provider: RedisProvider) -> redis.Redis:
    return redis_provider.client


def publish(r: redis.Redis, n: int, start: int = 0) -> list[str]:
    ids = []
    for i in range(start, start + n):
        evt = new_event("project.created", "ten-1", {"id": f"prj-{i}"}, CTX)
        EventPublisher().publish(r, evt)
        ids.append(evt["id"])
    return ids


def test_nothing_a_group_has_not_acknowledged_is_trimmed(redis_provider, r):
    publish(r, 10)
    fast = StreamConsumer(redis_provider, group="fast", handler=lambda e: None, block_ms=10)
    slow = StreamConsumer(redis_provider, group="slow", handler=lambda e: None, block_ms=10, batch=4)
    fast.poll_once()
    slow.ensure_group()
    janitor = StreamJanitor(redis_provider, interval_s=1, min_age_s=0)
    assert janitor.sweep()["trimmed"] == 0  # slow has read nothing: everything stays
    # slow reads four and dies before acknowledging them: those four stay too.
    r.xreadgroup("slow", "dead", {STREAM_KEY: ">"}, count=4)
    assert janitor.sweep()["trimmed"] == 0
    assert r.xlen(STREAM_KEY) == 10
    time.sleep(0.05)
    StreamConsumer(redis_provider, group="slow", handler=lambda e: None, block_ms=10, min_idle_ms=10).poll_once()
    assert int(r.xpending(STREAM_KEY, "slow")["pending"]) == 0
    result = janitor.sweep()
    assert result["trimmed"] == 10 and r.xlen(STREAM_KEY) == 0
    publish(r, 3, start=10)
    assert janitor.sweep()["trimmed"] == 0  # delivered to nobody yet


def test_recent_entries_stay_even_when_acknowledged(redis_provider, r):
    publish(r, 4)
    StreamConsumer(redis_provider, group="g", handler=lambda e: None, block_ms=10).poll_once()
    assert StreamJanitor(redis_provider).sweep()["trimmed"] == 0
    assert r.xlen(STREAM_KEY) == 4


def test_a_stream_without_groups_is_left_whole(redis_provider, r):
    publish(r, 5)
    assert StreamJanitor(redis_provider).sweep()["trimmed"] == 0
    assert r.xlen(STREAM_KEY) == 5


def test_the_trim_point_is_the_oldest_pending_or_just_after_the_last_delivered():
    groups = [{"name": "a", "last-delivered-id": "100-3"}, {"name": "b", "last-delivered-id": "200-0"}]
    assert safe_trim_point(groups, {"a": None, "b": None}) == "100-4"
    assert safe_trim_point(groups, {"a": None, "b": "50-1"}) == "50-1"
    assert safe_trim_point([{"name": "a", "last-delivered-id": "0-0"}], {"a": None}) is None
    assert safe_trim_point([], {}) is None


def test_a_long_stream_is_reported_not_trimmed(redis_provider, r):
    publish(r, 6)
    StreamConsumer(redis_provider, group="behind", handler=lambda e: None).ensure_group()
    janitor = StreamJanitor(redis_provider, warn_length=5)
    janitor.sweep()
    assert r.xlen(STREAM_KEY) == 6
    detail = janitor.ready_detail()
    assert detail is not None and "6 entries" in detail


def test_a_poison_event_is_dead_lettered_and_the_rest_still_land(redis_provider, r):
    ids = publish(r, 3)
    poison = ids[1]
    landed: list[str] = []

    def handler(evt: dict[str, Any]) -> None:
        if evt["id"] == poison:
            raise ValueError("cannot handle this one")
        landed.append(evt["id"])

    c = StreamConsumer(redis_provider, group="g", handler=handler, block_ms=10, min_idle_ms=20, max_deliveries=3)
    for _ in range(6):
        c.poll_once()
        time.sleep(0.03)
    assert landed == [ids[0], ids[2]]
    assert int(r.xpending(STREAM_KEY, "g")["pending"]) == 0
    dead = r.xrange(DEAD_LETTER_STREAM)
    assert len(dead) == 1
    fields = dead[0][1]
    assert json.loads(fields["event"])["id"] == poison and fields["group"] == "g" and int(fields["deliveries"]) >= 3


def test_in_batch_mode_a_poison_event_holds_up_only_itself(redis_provider, r):
    ids = publish(r, 5)
    poison = ids[2]
    landed: list[str] = []

    def batch(events: list[tuple[str, dict[str, Any]]]) -> None:
        if any(evt["id"] == poison for _, evt in events):
            raise ValueError("poison in this batch")
        landed.extend(evt["id"] for _, evt in events)

    c = StreamConsumer(redis_provider, group="b", batch_handler=batch, block_ms=10, min_idle_ms=20, max_deliveries=3)
    with pytest.raises(ValueError):
        c.poll_once()  # the first read fails whole
    for _ in range(6):
        time.sleep(0.03)
        c.poll_once()
    assert sorted(landed) == sorted(i for i in ids if i != poison)
    assert [json.loads(f["event"])["id"] for _, f in r.xrange(DEAD_LETTER_STREAM)] == [poison]


def test_a_newer_envelope_is_never_dead_lettered(redis_provider, r):
    evt = {**new_event("project.created", "ten-1", {"id": "prj-x"}, CTX), "version": 99}
    EventPublisher().publish(r, evt)
    c = StreamConsumer(
        redis_provider, group="old", handler=lambda e: None, block_ms=10, min_idle_ms=10, max_deliveries=2
    )
    for _ in range(5):
        c.poll_once()
        time.sleep(0.02)
    assert r.xlen(DEAD_LETTER_STREAM) == 0
    assert int(r.xpending(STREAM_KEY, "old")["pending"]) == 1


def test_departed_consumers_are_removed_after_the_grace_period(redis_provider, r):
    publish(r, 2)
    c = StreamConsumer(redis_provider, group="g", handler=lambda e: None, consumer="alive", block_ms=10)
    c.poll_once()
    r.xgroup_createconsumer(STREAM_KEY, "g", "gone")
    time.sleep(0.05)
    removed = StreamJanitor(redis_provider, consumer_grace_s=0.02, min_age_s=0).sweep()["consumers_removed"]
    assert removed == 2  # both idle past the grace and owning nothing
    assert r.xinfo_consumers(STREAM_KEY, "g") == []
    # One holding pending entries stays until the living claim them.
    publish(r, 1, start=5)
    r.xreadgroup("g", "holder", {STREAM_KEY: ">"}, count=1)
    time.sleep(0.05)
    assert StreamJanitor(redis_provider, consumer_grace_s=0.02, min_age_s=0).sweep()["consumers_removed"] == 0
