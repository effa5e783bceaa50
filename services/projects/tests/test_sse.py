"""The SSE building blocks: fan-out routing and breaking, the slot cap, the body's cleanup."""

from __future__ import annotations

import pytest

from aerie.errors import Problem
from projects.sse import Fanout, SSEBody, StreamSlots, frame, id_only


def test_fanout_routes_by_key_and_forgets_closed_listeners():
    fanout: Fanout[str] = Fanout()
    a1, a2, b = fanout.listen("a"), fanout.listen("a"), fanout.listen("b")
    fanout.deliver("a", "x")
    assert (a1.get(0.1), a2.get(0.1), b.get(0.01)) == ("x", "x", None)
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
