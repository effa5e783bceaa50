"""Entries, hashes and the chain: what anyone holding an export can check."""

from __future__ import annotations

import hashlib
import json

import pytest
from audittest import TEN_A, TEN_B, event, ingest

from audit.entry import GENESIS, entry_from_event, json_safe
from audit.trail import Trail
from audit.verify import verify


def recompute(entries: list[dict]) -> bool:
    """The chain checked with the standard library only, exactly as docs/api.md describes it."""
    prev = GENESIS
    for e in entries:
        body = {k: v for k, v in e.items() if k != "hash"}
        canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        if e["prev_hash"] != prev or hashlib.sha256((prev + canonical).encode()).hexdigest() != e["hash"]:
            return False
        prev = e["hash"]
    return True


def test_events_become_chained_entries_per_tenant(redis_provider):
    ingest(redis_provider, [event("project.created", TEN_A, {"project": {"id": f"prj_{i}"}}) for i in range(5)])
    ingest(redis_provider, [event("tenant.updated", TEN_B, {"tenant": {"id": TEN_B}})])
    a = Trail(redis_provider, TEN_A)
    entries = [json.loads(raw) for _, raw in a.ascending(1, a.state().head_seq)]
    assert [e["seq"] for e in entries] == [1, 2, 3, 4, 5]
    assert recompute(entries)
    assert entries[0]["target"] == {"type": "project", "id": "prj_0"}
    assert entries[0]["actor"] == {"type": "client", "id": "cli_1", "client_id": "cli_1"}
    assert (entries[0]["ip"], entries[0]["user_agent"], entries[0]["request_id"]) == ("10.0.0.1", "pytest", "req-1")
    assert Trail(redis_provider, TEN_B).state().head_seq == 1
    assert verify(a) == {
        "valid": True,
        "entries": 5,
        "head": {"seq": 5, "hash": entries[-1]["hash"]},
        "first_invalid_seq": None,
        "checkpoint": None,
    }


def test_redelivered_events_are_recorded_once(redis_provider):
    events = [event("client.created", TEN_A, {"client": {"client_id": f"cli_{i}"}}) for i in range(3)]
    ingest(redis_provider, events)
    ingest(redis_provider, [*events, event("client.revoked", TEN_A, {"client_id": "cli_0"})])
    ingest(redis_provider, [events[1], events[1]])
    trail = Trail(redis_provider, TEN_A)
    assert trail.state().head_seq == 4
    assert verify(trail)["valid"]


@pytest.mark.parametrize("field", ["message", "seq", "prev_hash", "hash", "actor"])
def test_a_changed_entry_is_the_first_invalid_seq(redis_provider, field):
    ingest(redis_provider, [event("flag.updated", TEN_A, {"flag": {"key": f"f{i}"}}) for i in range(6)])
    r = redis_provider.client
    key = "audit:{ten_A}:entries"
    entry = json.loads(r.hget(key, 4))
    entry[field] = {"type": "platform", "id": "mallory", "client_id": None} if field == "actor" else 999
    r.hset(key, 4, json.dumps(entry))
    result = verify(Trail(redis_provider, TEN_A))
    assert result["valid"] is False and result["first_invalid_seq"] == 4


def test_a_rehashed_forgery_breaks_the_next_link_and_a_deleted_entry_is_found(redis_provider):
    ingest(redis_provider, [event("flag.updated", TEN_A, {"flag": {"key": f"f{i}"}}) for i in range(6)])
    r = redis_provider.client
    key = "audit:{ten_A}:entries"
    entry = json.loads(r.hget(key, 2))
    entry["message"] = "nothing happened"
    body = {k: v for k, v in entry.items() if k != "hash"}
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    entry["hash"] = hashlib.sha256((entry["prev_hash"] + canonical).encode()).hexdigest()
    r.hset(key, 2, json.dumps(entry))
    assert verify(Trail(redis_provider, TEN_A))["first_invalid_seq"] == 3
    r.hdel(key, 1)
    assert verify(Trail(redis_provider, TEN_A))["first_invalid_seq"] == 1


def test_events_without_a_tenant_or_with_a_strange_one_go_to_the_platform_trail():
    tenant, entry = entry_from_event(event("flag.created", None, {"flag": {"key": "dark-mode"}}), "t")
    assert tenant is None and entry["tenant_id"] is None and entry["target"] == {"type": "flag", "id": "dark-mode"}
    tenant, entry = entry_from_event(event("tenant.created", "ten/../x", {}), "t")
    assert tenant is None and entry["metadata"]["unroutable_tenant_id"] == "ten/../x"


def test_targets_of_every_action_family():
    cases = [
        ("tenant.suspended", "ten_X", {"tenant": {"id": "ten_X"}}, {"type": "tenant", "id": "ten_X"}),
        (
            "client.revoked",
            "ten_X",
            {"client_id": "cli_9", "client": {"client_id": "cli_9"}},
            {"type": "client", "id": "cli_9"},
        ),
        ("token.issued", "ten_X", {"jti": "j1", "client_id": "cli_9"}, {"type": "token", "id": "j1"}),
        ("token.denied", None, {"client_id": "cli_9", "reason": "bad secret"}, {"type": "client", "id": "cli_9"}),
        ("project.deleted", "ten_X", {"project": {"id": "prj_1"}}, {"type": "project", "id": "prj_1"}),
        ("flag.override.set", "ten_X", {"key": "beta", "value": True}, {"type": "flag", "id": "beta"}),
        ("token.exchanged", "ten_X", {"jti": "j2", "member_id": "usr_1"}, {"type": "token", "id": "j2"}),
        ("member.invited", "ten_X", {"member": {"id": "usr_1"}}, {"type": "member", "id": "usr_1"}),
        ("member.removed", "ten_X", {"member_id": "usr_1", "token_floor": 3}, {"type": "member", "id": "usr_1"}),
    ]
    for type_, tenant, data, target in cases:
        _, entry = entry_from_event(event(type_, tenant, data), "t")
        assert entry["target"] == target, type_
    _, denied = entry_from_event(event("token.denied", None, {"reason": "bad secret"}, actor=None), "t")
    assert denied["actor"] == {"type": "anonymous", "id": None, "client_id": None}
    assert denied["message"].endswith(": bad secret")


def test_payloads_are_made_json_stable_and_secrets_redacted():
    data = {"client": {"secret_hash": "abc", "name": "x"}, "n": float("nan"), "big": 2**70, "s": "\ud800"}
    _, entry = entry_from_event(event("client.created", TEN_A, data), "t")
    meta = entry["metadata"]
    assert meta["client"] == {"secret_hash": "[redacted]", "name": "x"}
    assert meta["n"] == "nan" and meta["big"] == str(2**70) and meta["s"] == "?"
    assert json_safe(meta) == meta
    _, big = entry_from_event(event("project.updated", TEN_A, {"blob": "x" * 70_000}), "t")
    assert big["metadata"]["truncated"] is True and len(big["metadata"]["sha256"]) == 64
