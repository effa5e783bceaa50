"""Every shared test vector through the engine; the flags service runs the same ones over HTTP."""

from __future__ import annotations

from hashlib import sha256

import pytest

from aerie_client.flags import vectors
from aerie_client.flags.evaluation import REASONS, STALE, compile_flag
from aerie_client.flags.snapshot import parse_snapshot

VECTORS = vectors.load()
OPERATORS = {"in", "not_in", "eq", "neq", "contains", "starts_with", "ends_with"} | {
    "gt",
    "gte",
    "lt",
    "lte",
    "before",
    "after",
    "exists",
}


def independent_bucket(key: str, value: str) -> int:
    # Written out again from docs/api.md rather than imported, so a changed formula fails here.
    return int.from_bytes(sha256(f"{key}:{value}".encode()).digest()[:4], "big") % 10000


@pytest.mark.parametrize("vector", VECTORS, ids=[v["name"] for v in VECTORS])
def test_vector(vector):
    flag = compile_flag(vector["flag"])
    result = flag.evaluate(vectors.context(vector), **vectors.overrides(vector))
    expected = vector["expected"]
    assert result.to_dict() == {**{k: expected[k] for k in ("value", "variant", "reason", "rule")}, "revision": None}
    if "bucket" in expected:
        stickiness = vector["flag"]["rollout"]["stickiness"]
        value = vectors.context(vector)[stickiness]
        assert independent_bucket(vector["flag"]["key"], str(value)) == expected["bucket"]


def test_vectors_are_many_named_once_and_never_spoof_the_tenant():
    names = [v["name"] for v in VECTORS]
    assert len(names) >= 40
    assert len(set(names)) == len(names)
    for vector in VECTORS:
        assert "tenant" not in vector["context"] and "tenant_id" not in vector["context"], vector["name"]
        assert set(vector["tenant"]) == {"plan", "created_at", "language"}


def test_vectors_cover_every_operator_and_every_server_reason():
    ops = {
        condition["op"]
        for vector in VECTORS
        for rule in vector["flag"].get("rules", [])
        for condition in rule["conditions"]
    }
    assert ops == OPERATORS
    assert {v["expected"]["reason"] for v in VECTORS} == REASONS - {STALE, "ERROR"}
    stickiness = {v["flag"]["rollout"]["stickiness"] for v in VECTORS if "rollout" in v["flag"]}
    assert stickiness == {"user_id", "tenant_id", "session_id", "ip"}
    rules = {v["expected"]["rule"] for v in VECTORS}
    assert {"override:user", "override:tenant", "rollout", "rules[0]", "rules[1]"} <= rules


def test_rollout_boundaries_sit_on_the_threshold():
    # The boundary vectors only prove something if their buckets really are at/below the threshold.
    by_name = {v["name"]: v for v in VECTORS}
    at = by_name["rollout: bucket equal to the threshold is out"]
    below = by_name["rollout: bucket just below the threshold is in"]
    threshold = at["flag"]["rollout"]["percentage"] * 100
    assert at["expected"]["bucket"] == threshold
    assert below["expected"]["bucket"] == threshold - 1


def snapshot_for(vector):
    """The snapshot the service would serve this vector's tenant (the body of GET /v1/flags/snapshot)."""
    key = vector["flag"]["key"]
    given = vector.get("overrides") or {}
    users = {}
    if "user" in given:
        users[key] = {vector["context"]["user_id"]: given["user"]}
    return {
        "flags": {key: vector["flag"]},
        "overrides": {"tenant": {key: given["tenant"]} if "tenant" in given else {}, "users": users},
        "tenant": vector["tenant"],
        "tenant_id": vector["tenant_id"],
        "revision": 1,
    }


@pytest.mark.parametrize("vector", VECTORS, ids=[v["name"] for v in VECTORS])
def test_vector_through_the_client_snapshot(vector):
    # The client's path: overrides looked up by user_id, tenant attributes taken from the snapshot.
    snapshot = parse_snapshot(snapshot_for(vector))
    result = snapshot.evaluate(vector["flag"]["key"], dict(vector["context"]))
    expected = vector["expected"]
    assert result is not None
    assert result.to_dict() == {**{k: expected[k] for k in ("value", "variant", "reason", "rule")}, "revision": None}
