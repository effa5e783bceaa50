"""aerie.sse: fan-out routing and breaking, the slot cap, heartbeats, the body's cleanup, limits."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Hashable, Mapping
from typing import Any

import pytest

from aerie.config import ConfigError
from aerie.errors import Problem
from aerie.pubsub import Subscriber
from aerie.sse import (
    EVERYONE,
    HEARTBEAT,
    RETRY,
    Fanout,
    LiveEvents,
    LiveStreams,
    SSEBody,
    StreamLimits,
    StreamSlots,
    frame,
    id_only,
    relay,
)
from aerie.testing.polling import wait_for


def test_fanout_routes_by_key_and_forgets_closed_listeners():
    fanout: Fanout[str] = Fanout()
    a1, a2, b = fanout.listen("a"), fanout.listen("a"), fanout.listen("b")
    fanout.deliver("a", "x")
    assert (a1.get(0.1), a2.get(0.1), b.get(0.01)) == ("x", "x", None)
    fanout.broadcast("all")
    assert (a1.get(0.1), a2.get(0.1), b.get(0.1)) == ("all", "all", "all")
    a1.close()
    a2.close()
    assert not fanout.wants("a") and fanout.wants("b")
    b.close()
    assert not fanout


def test_a_listener_that_falls_behind_or_misses_a_reconnect_is_broken():
    fanout: Fanout[int] = Fanout(maxsize=2)
    slow, other = fanout.listen("t"), fanout.listen("u")
    for i in range(3):
        fanout.deliver("t", i)
    assert slow.broken and slow.get(1.0) is None  # returns at once: the stream must end
    assert not other.broken
    fanout.break_all()  # what the pub/sub reconnect hook does
    assert other.broken


def test_slots_cap_and_release_once():
    slots = StreamSlots(1)
    release = slots.take()
    with pytest.raises(Problem) as refused:
        slots.take()
    assert refused.value.problem_code == "unavailable"
    release()
    release()  # twice is harmless: the cap does not grow
    slots.take()
    with pytest.raises(Problem):
        slots.take()


def test_body_closed_before_its_first_byte_still_cleans_up():
    closed = []

    def frames():
        yield b"never"

    body = SSEBody(frames(), lambda: closed.append(1))
    body.close()
    body.close()
    assert closed == [1]
    done = []
    assert list(SSEBody(iter([b"a", b"b"]), lambda: done.append(1))) == [b"a", b"b"] and done == [1]


def test_frames():
    assert frame('{"a":1}', event_id="evt_1", event="project.created") == (
        b'id: evt_1\nevent: project.created\ndata: {"a":1}\n\n'
    )
    assert id_only("evt_1") == b"id: evt_1\n\n"
    with pytest.raises(ValueError):
        frame("two\nlines")


def test_relay_beats_when_idle_skips_what_render_drops_and_ends_on_time():
    fanout: Fanout[str] = Fanout()
    listener = fanout.listen("k")
    for message in ("dup", "new"):
        fanout.deliver("k", message)
    started = time.monotonic()
    out = list(
        relay(
            listener,
            lambda m: None if m == "dup" else m.encode(),
            lambda: False,
            until=started + 1.6,
            heartbeat_seconds=0.5,
        )
    )
    assert 1.5 <= time.monotonic() - started < 2.5
    assert out[0] == b"new" and out[1:] and set(out[1:]) == {HEARTBEAT}
    assert 2 <= len(out[1:]) <= 3  # one beat per idle 0.5 s, not one per wake-up


def test_relay_ends_within_a_second_of_a_hang_up_or_a_break():
    fanout: Fanout[str] = Fanout()
    hung_up = threading.Event()
    threading.Timer(0.2, hung_up.set).start()
    started = time.monotonic()
    assert list(relay(fanout.listen("k"), str.encode, hung_up.is_set, until=started + 30, heartbeat_seconds=60)) == []
    assert time.monotonic() - started < 1.5
    broken = fanout.listen("k")
    threading.Timer(0.2, fanout.break_all).start()
    started = time.monotonic()
    assert list(relay(broken, str.encode, lambda: False, until=started + 30, heartbeat_seconds=60)) == []
    assert time.monotonic() - started < 1.5


def test_limits_from_env_threads_and_harakiri():
    flags_like = StreamLimits(max_streams=72, max_seconds=300)
    assert StreamLimits.from_env({}) == StreamLimits(144, 25.0, 15.0)
    assert StreamLimits.from_env({"AERIE_SSE_MAX_STREAMS": "3"}, flags_like, longest=600).max_seconds == 300
    with pytest.raises(ConfigError):
        StreamLimits.from_env({"AERIE_SSE_MAX_SECONDS": "60"})  # longer than the default harakiri allows
    with pytest.raises(ConfigError):
        StreamLimits.from_env({"AERIE_SSE_HEARTBEAT_SECONDS": "often"})
    assert StreamLimits().for_threads(192).max_streams == 144  # the stream mule (aerie.stream_server)
    assert StreamLimits().for_threads(96).max_streams == 72  # 24 threads left free
    assert StreamLimits().for_threads(4).max_streams == 1  # a worker: streams go to the mule
    assert StreamLimits().for_threads(None).max_streams == 144  # not under uWSGI
    assert flags_like.for_harakiri(330).max_seconds == 300
    assert flags_like.for_harakiri(30).max_seconds == 25  # a request outliving harakiri kills the worker
    assert flags_like.for_harakiri(None).max_seconds == 300


def _by_tenant_definitions_for_all(event: Mapping[str, Any]) -> Hashable | None:
    if event["type"].startswith("thing.override."):
        return event["tenant_id"]
    return EVERYONE if event["type"].startswith("thing.") else None


def _publish(redis_provider, type_: str, tenant_id: str | None, n: int) -> str:
    event_id = f"evt_{n}"
    message = json.dumps({"id": event_id, "type": type_, "tenant_id": tenant_id}, separators=(",", ":"))
    redis_provider.client.publish(f"aerie:event:{type_}", message)
    return event_id


def _ids(body: bytes) -> list[str]:
    return [line[4:] for line in body.decode().splitlines() if line.startswith("id: ")]


def test_an_idle_stream_beats_at_its_interval_not_once_a_second(redis_provider):
    subscriber = Subscriber(redis_provider)
    live = LiveEvents(subscriber, ["aerie:event:thing.*"], _by_tenant_definitions_for_all)
    streams = LiveStreams(live, StreamLimits(max_streams=1, max_seconds=10, heartbeat_seconds=0.25))
    try:
        body = b"".join(streams.open("ten_a", lifetime=1.3))
    finally:
        subscriber.stop()
    assert body.count(HEARTBEAT) >= 3  # about one per 0.25 s; waits of a second gave one


def test_live_streams_route_cap_beat_and_free_their_slot_on_hang_up(redis_provider):
    subscriber = Subscriber(redis_provider)
    live = LiveEvents(subscriber, ["aerie:event:thing.*"], _by_tenant_definitions_for_all)
    streams = LiveStreams(live, StreamLimits(max_streams=2, max_seconds=10, heartbeat_seconds=0.4))
    try:
        a_gone = threading.Event()
        bodies = {"a": streams.open("ten_a", a_gone.is_set), "b": streams.open("ten_b", lifetime=2.5)}
        with pytest.raises(Problem) as refused:
            streams.open("ten_c")
        assert refused.value.problem_code == "unavailable"
        received: dict[str, bytes] = {}
        readers = [threading.Thread(target=lambda k=k: received.__setitem__(k, b"".join(bodies[k]))) for k in bodies]
        for reader in readers:
            reader.start()
        assert wait_for(lambda: live.fanout.wants("ten_a") and live.fanout.wants("ten_b"), 2)
        sent = [
            _publish(redis_provider, "thing.override.set", "ten_a", 1),  # ten_a only
            _publish(redis_provider, "thing.updated", None, 2),  # everyone
            _publish(redis_provider, "thing.override.set", "ten_c", 3),  # nobody listening
            _publish(redis_provider, "other.created", "ten_a", 4),  # routed nowhere
        ]
        redis_provider.client.publish("aerie:event:thing.broken", "not json")  # skipped, not fatal
        time.sleep(0.6)  # the events reach both streams
        a_gone.set()  # ten_a's client hangs up: its slot is free within a second, not in 10 s
        readers[0].join(1.5)
        assert not readers[0].is_alive()
        streams.open("ten_c").close()  # the freed slot is taken and given back at once
        readers[1].join(5)
    finally:
        subscriber.stop()
    assert received["a"].startswith(RETRY) and _ids(received["a"]) == sent[:2]
    assert received["b"].startswith(RETRY) and _ids(received["b"]) == sent[1:2]
    assert HEARTBEAT in received["b"]  # idle for its last second: it beat
    assert not live.fanout  # every listener removed when its body closed
