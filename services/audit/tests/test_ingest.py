"""From the durable stream into the trails: exactly once, gapless, also with rivals and crashes."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import pytest
from audittest import TEN_A, TEN_B, event, ingest, publish

from aerie.events import STREAM_KEY, StreamConsumer
from audit.ingest import GROUP, Ingestor, consumer
from audit.trail import Trail
from audit.verify import verify

TENANTS = [TEN_A, TEN_B, None]


def entries(redis_provider, tenant_id):
    trail = Trail(redis_provider, tenant_id)
    return [json.loads(raw) for _, raw in trail.ascending(1, trail.state().head_seq)]


def drain(c: StreamConsumer, rounds: int = 50) -> None:
    for _ in range(rounds):
        if not c.poll_once():
            return


def test_events_published_before_audit_ran_are_all_recorded_once(redis_provider):
    published = [event("project.created", TENANTS[i % 3], {"project": {"id": f"p{i}"}}) for i in range(300)]
    publish(redis_provider, published)
    c = consumer(redis_provider, batch=100, reclaim_idle_ms=30_000, block_ms=10)
    drain(c)
    ids = [e["id"] for t in TENANTS for e in entries(redis_provider, t)]
    assert sorted(ids) == sorted(e["id"] for e in published)
    assert all(verify(Trail(redis_provider, t))["valid"] for t in TENANTS)
    pending = redis_provider.client.xpending(STREAM_KEY, GROUP)
    assert pending["pending"] == 0


def test_rival_appenders_keep_seqs_gapless_and_chains_valid(redis_provider):
    """Four writers append to the same trails at once: WATCH conflicts retry, nothing interleaves wrongly."""
    batches = [[event("flag.updated", TENANTS[(w + i) % 2], {"key": f"k{w}-{i}"}) for i in range(50)] for w in range(4)]

    def work(batch):
        ingest = Ingestor(redis_provider)
        for i in range(0, len(batch), 5):
            ingest([(str(j), e) for j, e in enumerate(batch[i : i + 5])])

    threads = [threading.Thread(target=work, args=(b,)) for b in batches]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for tenant in (TEN_A, TEN_B):
        got = entries(redis_provider, tenant)
        assert [e["seq"] for e in got] == list(range(1, 101))
        assert len({e["id"] for e in got}) == 100
        assert verify(Trail(redis_provider, tenant))["valid"]


def test_entries_a_dead_consumer_left_pending_are_reclaimed(redis_provider):
    publish(redis_provider, [event("client.created", TEN_A, {"client": {"client_id": f"c{i}"}}) for i in range(20)])

    def crash(_batch):
        raise RuntimeError("killed mid-way")

    doomed = StreamConsumer(redis_provider, group=GROUP, consumer="doomed", batch_handler=crash, block_ms=10)
    with pytest.raises(RuntimeError):
        doomed.poll_once()
    assert redis_provider.client.xpending(STREAM_KEY, GROUP)["pending"] == 20
    survivor = consumer(redis_provider, batch=100, reclaim_idle_ms=200, block_ms=10)
    time.sleep(0.3)
    drain(survivor)
    assert len(entries(redis_provider, TEN_A)) == 20
    assert redis_provider.client.xpending(STREAM_KEY, GROUP)["pending"] == 0


def test_a_crash_between_commit_and_ack_does_not_duplicate(redis_provider):
    published = [event("tenant.updated", TEN_A, {"tenant": {"id": TEN_A}}) for _ in range(10)]
    publish(redis_provider, published)
    real = Ingestor(redis_provider)

    def commit_then_die(batch):
        real(batch)
        raise RuntimeError("died before the ack")

    first = StreamConsumer(redis_provider, group=GROUP, consumer="first", batch_handler=commit_then_die, block_ms=10)
    with pytest.raises(RuntimeError):
        first.poll_once()
    assert len(entries(redis_provider, TEN_A)) == 10
    survivor = consumer(redis_provider, batch=100, reclaim_idle_ms=100, block_ms=10)
    time.sleep(0.2)
    drain(survivor)
    assert [e["seq"] for e in entries(redis_provider, TEN_A)] == list(range(1, 11))
    assert redis_provider.client.xpending(STREAM_KEY, GROUP)["pending"] == 0


def test_malformed_stream_entries_are_acknowledged_and_skipped(redis_provider):
    r = redis_provider.client
    r.xadd(STREAM_KEY, {"event": "not json"})
    r.xadd(STREAM_KEY, {"event": json.dumps({"type": "x.y"})})  # no id
    publish(redis_provider, [event("project.created", TEN_A, {"project": {"id": "p"}})])
    drain(consumer(redis_provider, batch=100, reclaim_idle_ms=30_000, block_ms=10))
    assert len(entries(redis_provider, TEN_A)) == 1
    assert r.xpending(STREAM_KEY, GROUP)["pending"] == 0


def test_stream_consumer_takes_exactly_one_handler(redis_provider):
    with pytest.raises(ValueError):
        StreamConsumer(redis_provider, group="g")
    with pytest.raises(ValueError):
        StreamConsumer(redis_provider, group="g", handler=print, batch_handler=print)


# --- token.denied of a tenant's client: in its trail and the platform's -------------------


def denied(tenant_id: str | None, client_id: str = "cli_A1", error: str = "invalid_client") -> dict[str, Any]:
    """A denial as tenants publishes it: the asking client as actor, the owning tenant if known."""
    actor = {"type": "client", "id": client_id, "client_id": client_id}
    data = {"client_id": client_id, "error": error, "reason": "Client authentication failed."}
    return event("token.denied", tenant_id, data, actor=actor)


def test_a_denied_token_of_a_tenants_client_lands_in_both_trails_once_each(redis_provider):
    events = [
        event("client.created", TEN_A, {"client": {"client_id": "cli_A1"}}),
        denied(TEN_A),
        denied(None, "cli_unknown"),
        denied(TEN_B, "cli_B1", "invalid_scope"),
    ]
    publish(redis_provider, events)
    drain(consumer(redis_provider, batch=100, reclaim_idle_ms=30_000, block_ms=10))
    ingest(redis_provider, events)  # a redelivery of the whole read
    ingest(redis_provider, [events[1], events[1]])

    platform = entries(redis_provider, None)
    assert [(e["id"], e["tenant_id"]) for e in platform] == [
        (events[1]["id"], TEN_A),
        (events[2]["id"], None),
        (events[3]["id"], TEN_B),
    ]
    a = entries(redis_provider, TEN_A)
    assert [e["action"] for e in a] == ["client.created", "token.denied"]
    assert [e["id"] for e in entries(redis_provider, TEN_B)] == [events[3]["id"]]
    # The same entry in each trail, only placed in a different chain.
    chain_fields = ("seq", "recorded_at", "prev_hash", "hash")
    tenant_copy, platform_copy = a[1], platform[0]
    assert {k: v for k, v in tenant_copy.items() if k not in chain_fields} == {
        k: v for k, v in platform_copy.items() if k not in chain_fields
    }
    assert tenant_copy["target"] == {"type": "client", "id": "cli_A1"} and tenant_copy["source"] == "event"
    for tenant in (None, TEN_A, TEN_B):
        assert verify(Trail(redis_provider, tenant))["valid"] is True, tenant
    assert redis_provider.client.xpending(STREAM_KEY, GROUP)["pending"] == 0


def test_a_crash_between_the_two_trails_is_completed_once_on_redelivery(redis_provider):
    publish(redis_provider, [denied(TEN_A)])
    real = Ingestor(redis_provider)
    tenant_trail = Trail(redis_provider, TEN_A)
    original_append = Trail.append

    def die_on_the_tenant_trail(self: Trail, batch: list[dict[str, Any]], clock: Any) -> Any:
        if self.name == tenant_trail.name:
            raise RuntimeError("died between the platform's append and the tenant's")
        return original_append(self, batch, clock)

    first = StreamConsumer(redis_provider, group=GROUP, consumer="first", batch_handler=real, block_ms=10)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(Trail, "append", die_on_the_tenant_trail)
        with pytest.raises(RuntimeError):
            first.poll_once()
    assert len(entries(redis_provider, None)) == 1 and entries(redis_provider, TEN_A) == []

    survivor = consumer(redis_provider, batch=100, reclaim_idle_ms=0, block_ms=10)
    for _ in range(5):
        survivor.poll_once()
    assert [e["seq"] for e in entries(redis_provider, None)] == [1]
    assert [e["seq"] for e in entries(redis_provider, TEN_A)] == [1]
    assert verify(Trail(redis_provider, None))["valid"] and verify(tenant_trail)["valid"]
    assert redis_provider.client.xpending(STREAM_KEY, GROUP)["pending"] == 0


def test_other_tenant_events_stay_in_the_tenants_trail_only(redis_provider):
    ingest(redis_provider, [event("token.issued", TEN_A, {"jti": "j1", "client_id": "cli_A1"})])
    assert len(entries(redis_provider, TEN_A)) == 1 and entries(redis_provider, None) == []


def test_both_readers_find_the_denial_over_the_api(api, redis_provider):
    e = denied(TEN_A)
    ingest(redis_provider, [e])
    mine = api.get(f"/v1/audit/events/{e['id']}")
    assert mine.status_code == 200 and mine.json["action"] == "token.denied"
    on_platform = api.get(f"/v1/audit/events/{e['id']}", None)
    assert on_platform.status_code == 200 and on_platform.json["tenant_id"] == TEN_A
    assert api.get(f"/v1/audit/events/{e['id']}", TEN_B).status_code == 404
