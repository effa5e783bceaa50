"""A rolling push, as the event stream sees it: an old and a new release consume one stream.

During ``cf push --strategy rolling`` instances of release N and N+1 run side by side in
the same consumer group. Release N+1 may add fields (same envelope version: everyone must
take them in stride) or, rarely, change the envelope incompatibly (a higher version: only
N+1 may handle it). Every event is handled exactly once, by a consumer that understands it.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from conftest import redis_provider

from aerie.events import ENVELOPE_VERSION, EventContext, EventPublisher, StreamConsumer, new_event
from aerie.local.redis_server import RedisServer
from aerie.redis import RedisProvider

MIN_IDLE_MS = 200


def _old_release_reads(event: dict[str, Any]) -> tuple[str, str | None]:
    """Release N's handler: a tolerant reader of the fields it was written against.

    Tolerant on purpose (ignore what is unknown, miss what is absent): that is what lets it
    take additions in stride, and also why it would silently misread an envelope-2 event.
    """
    return event["type"], event["data"].get("name")


def _new_release_reads(event: dict[str, Any]) -> tuple[str, str]:
    """Release N+1 knows envelope 2, where ``data.name`` became ``data.display_name``."""
    data = event["data"]
    return event["type"], data["display_name"] if event["version"] >= 2 else data["name"]


def _events() -> dict[str, dict[str, Any]]:
    ctx = EventContext.system("projects")
    old = new_event("project.created", "ten_1", {"name": "from release N"}, ctx)
    added = new_event("project.created", "ten_1", {"name": "from release N+1", "color": "teal"}, ctx)
    added["trace_id"] = "4bf92f3577b34da6a3ce929d0e0e4736"  # a field release N never heard of
    changed = new_event("project.created", "ten_1", {"display_name": "envelope 2"}, ctx)
    changed["version"] = ENVELOPE_VERSION + 1
    return {"old": old, "added": added, "changed": changed}


def _consumer(
    provider: RedisProvider, stream: str, name: str, max_version: int, seen: list[tuple[str, str]], batch: bool
) -> StreamConsumer:
    reads: Callable[[dict[str, Any]], tuple[str, str | None]] = (
        _old_release_reads if max_version == ENVELOPE_VERSION else _new_release_reads
    )

    def handle(event: dict[str, Any]) -> None:
        reads(event)
        seen.append((name, event["id"]))

    def handle_batch(events: list[tuple[str, dict[str, Any]]]) -> None:
        for _entry_id, event in events:
            handle(event)

    common: dict[str, Any] = {
        "group": "rolling",
        "consumer": name,
        "stream": stream,
        "block_ms": 50,
        "min_idle_ms": MIN_IDLE_MS,
        "max_version": max_version,
    }
    if batch:
        return StreamConsumer(provider, batch_handler=handle_batch, **common)
    return StreamConsumer(provider, handler=handle, **common)


@pytest.mark.parametrize("batch", [False, True], ids=["per-event", "batch"])
def test_old_and_new_release_share_one_stream(redis_server: RedisServer, batch: bool):
    provider = redis_provider(redis_server)
    r = provider.client
    stream = f"aerie:test-rolling:{uuid.uuid4().hex}"
    events = _events()
    publisher = EventPublisher(stream=stream)
    for event in events.values():
        publisher.publish(r, event)

    seen: list[tuple[str, str]] = []
    old = _consumer(provider, stream, "release-n", ENVELOPE_VERSION, seen, batch)
    new = _consumer(provider, stream, "release-n1", ENVELOPE_VERSION + 1, seen, batch)

    # The old instance reads first: it takes what it understands and leaves the rest pending.
    old.poll_once()
    assert sorted(seen) == sorted([("release-n", events["old"]["id"]), ("release-n", events["added"]["id"])])
    assert r.xpending(stream, "rolling")["pending"] == 1

    # Once the entry has idled, the new instance claims it; the old one never handles it.
    deadline = time.monotonic() + 10
    while r.xpending(stream, "rolling")["pending"] and time.monotonic() < deadline:
        time.sleep(MIN_IDLE_MS / 1000 + 0.05)
        new.poll_once()
        old.poll_once()
    assert r.xpending(stream, "rolling")["pending"] == 0
    assert ("release-n1", events["changed"]["id"]) in seen
    assert sorted(event_id for _name, event_id in seen) == sorted(e["id"] for e in events.values()), "exactly once"
    r.delete(stream)


def test_new_release_reads_what_the_old_one_published(redis_server: RedisServer):
    """Release N+1 consumes events release N published before the push, in one group."""
    provider = redis_provider(redis_server)
    stream = f"aerie:test-rolling:{uuid.uuid4().hex}"
    old_event = _events()["old"]
    EventPublisher(stream=stream).publish(provider.client, old_event)
    seen: list[tuple[str, str]] = []
    _consumer(provider, stream, "release-n1", ENVELOPE_VERSION + 1, seen, batch=False).poll_once()
    assert seen == [("release-n1", old_event["id"])]
    provider.client.delete(stream)
