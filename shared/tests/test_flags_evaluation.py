"""The flag evaluation engine: properties over many users and garbage, and the edges vectors skip.

The shared vectors (test_flags_vectors.py) pin exact answers; these tests check what must hold
for *every* user or input: rollouts only grow, variant shares match their weights, and no
input, however malformed, makes an evaluation raise.
"""

from __future__ import annotations

import math
import pickle
import random
from collections import Counter
from collections.abc import Iterator, Mapping
from hashlib import sha256
from types import MappingProxyType
from typing import Any

import orjson
import pytest

from aerie_client.flags.evaluation import (
    ABSENT,
    REASONS,
    CompiledFlag,
    Evaluation,
    _bucket_after,
    bucket,
    compile_flag,
    evaluate,
)
from aerie_client.flags.operators import compile_condition, parse_timestamp

USERS = [f"user-{i}" for i in range(10_000)]


def flag(**fields):
    doc = {"key": "f", "enabled": True, "default": False, "rules": [], "allow_overrides": "none"}
    doc.update(fields)
    return doc


def rollout(percentage, stickiness="user_id", **fields):
    return flag(rollout={"percentage": percentage, "stickiness": stickiness}, **fields)


# -- the bucket -----------------------------------------------------------------------


def test_bucket_is_api_md_formula():
    digest = sha256(b"new-dashboard:user-42").digest()
    assert bucket("new-dashboard", "user-42") == int.from_bytes(digest[:4], "big") % 10000
    assert {bucket("k", u) for u in USERS[:2000]} <= set(range(10000))


def test_a_flags_precompiled_hash_prefix_gives_the_formulas_bucket():
    rng = random.Random(7)
    values = [*USERS[:300], "", "ü-ß-用户-🚩", "a:b:c", str(2**70), "x" * 3000]
    values += ["".join(chr(rng.randrange(32, 0x2FFF)) for _ in range(rng.randrange(1, 40))) for _ in range(300)]
    for key in ["new-dashboard", "k", "a.b_c-1", "x" * 100]:
        rollout_prefix, variant_prefix = sha256(f"{key}:".encode()), sha256(f"{key}:variant:".encode())
        for value in values:
            assert _bucket_after(rollout_prefix, value.encode()) == bucket(key, value)
            assert _bucket_after(variant_prefix, value.encode()) == bucket(f"{key}:variant", value)


def test_bucket_spreads_uniformly():
    deciles = Counter(bucket("spread", u) // 1000 for u in USERS)
    assert all(900 <= deciles[d] <= 1100 for d in range(10)), deciles


# -- rollouts -------------------------------------------------------------------------


def test_raising_the_percentage_only_moves_users_in():
    previous: set[str] = set()
    for percentage in (0, 0.5, 1, 5, 10, 12.5, 25, 33, 50, 75, 99, 99.99, 100):
        compiled = compile_flag(rollout(percentage))
        inside = {u for u in USERS if compiled.evaluate({"user_id": u}).reason == "SPLIT"}
        assert previous <= inside, f"users left the rollout when raised to {percentage}%"
        assert abs(len(inside) - percentage * 100) <= 200, (percentage, len(inside))
        previous = inside
    assert len(previous) == len(USERS)


def test_rollout_depends_on_the_flag_key_so_flags_do_not_pick_the_same_users():
    a = compile_flag(rollout(50, key="a"))
    b = compile_flag(rollout(50, key="b"))
    in_a = {u for u in USERS if a.evaluate({"user_id": u}).value is True}
    in_b = {u for u in USERS if b.evaluate({"user_id": u}).value is True}
    # Independent halves overlap by about a quarter, not by half.
    assert 2200 <= len(in_a & in_b) <= 2800


def test_rollout_without_variants_serves_true_with_rule_rollout():
    result = compile_flag(rollout(100)).evaluate({"user_id": "u"})
    assert result == Evaluation(True, None, "SPLIT", "rollout")


@pytest.mark.parametrize(
    ("sticky", "reason"),
    [
        ("u-1", "SPLIT"),
        (12345, "SPLIT"),
        ("", "DEFAULT"),
        (None, "DEFAULT"),
        (True, "DEFAULT"),
        (1.5, "DEFAULT"),
        (["u"], "DEFAULT"),
        ({"id": "u"}, "DEFAULT"),
    ],
)
def test_stickiness_values_that_can_be_hashed(sticky, reason):
    assert compile_flag(rollout(100)).evaluate({"user_id": sticky}).reason == reason


def test_integer_user_id_buckets_like_its_decimal_string():
    compiled = compile_flag(rollout(50))
    for n in range(500):
        assert compiled.evaluate({"user_id": n}) == compiled.evaluate({"user_id": str(n)})


# -- variants -------------------------------------------------------------------------


def test_variant_shares_follow_the_weights():
    weights = {"a": 20, "b": 30, "c": 50}
    compiled = compile_flag(rollout(100, default="a", variants=[{"name": n, "weight": w} for n, w in weights.items()]))
    results = [compiled.evaluate({"user_id": u}) for u in USERS]
    counts = Counter(r.value for r in results)
    for name, weight in weights.items():
        assert abs(counts[name] / len(USERS) - weight / 100) < 0.02, counts
    assert all(r.variant == r.value and r.reason == "SPLIT" for r in results)


def test_variant_is_independent_of_being_in_the_rollout():
    # Same salt would put every in-rollout user of a 50% rollout into the first 50% variant.
    compiled = compile_flag(
        rollout(50, default="off", variants=[{"name": "x", "weight": 50}, {"name": "y", "weight": 50}])
    )
    counts = Counter(compiled.evaluate({"user_id": u}).value for u in USERS)
    assert abs(counts["x"] - counts["y"]) < 400 and counts["x"] > 2000, counts


def test_a_variant_of_weight_zero_is_never_picked():
    compiled = compile_flag(
        rollout(100, default="a", variants=[{"name": "a", "weight": 0}, {"name": "b", "weight": 100}])
    )
    assert {compiled.evaluate({"user_id": u}).value for u in USERS[:3000]} == {"b"}


def test_weights_short_of_100_leave_a_gap_that_serves_the_default():
    compiled = compile_flag(rollout(100, default="none", variants=[{"name": "a", "weight": 10}]))
    reasons = Counter(compiled.evaluate({"user_id": u}).reason for u in USERS)
    assert 800 <= reasons["SPLIT"] <= 1200 and reasons["DEFAULT"] == len(USERS) - reasons["SPLIT"]


# -- order and overrides --------------------------------------------------------------


def test_absent_is_not_none_and_survives_pickling():
    compiled = compile_flag(flag(allow_overrides="user", default="d"))
    assert compiled.evaluate({}, user_override=None) == Evaluation(None, None, "TARGETING_MATCH", "override:user")
    assert compiled.evaluate({}, user_override=ABSENT).reason == "DEFAULT"
    assert pickle.loads(pickle.dumps(ABSENT)) is ABSENT  # noqa: S301 - our own bytes
    assert not ABSENT


def test_to_dict_is_the_evaluate_response_object():
    assert Evaluation("v", "v", "SPLIT", "rollout", 7).to_dict() == {
        "value": "v",
        "variant": "v",
        "reason": "SPLIT",
        "rule": "rollout",
        "revision": 7,
    }


@pytest.mark.parametrize(
    "value", [True, None, 0, -1.5, 2**63, 'ü\u2028"', {"limit": 10, "nested": [1, {"a": None}]}, [], {}]
)
def test_the_encoded_fragment_is_the_dicts_json_and_changes_nothing_else(value):
    evaluation = Evaluation(value, None, "DEFAULT", None)
    fresh = Evaluation(value, None, "DEFAULT", None)
    assert orjson.dumps({"k": evaluation.to_fragment()}) == orjson.dumps({"k": evaluation.to_dict()})
    assert evaluation.to_fragment() is evaluation.to_fragment()  # encoded once
    assert evaluation == fresh and repr(evaluation) == repr(fresh)
    copied = pickle.loads(pickle.dumps(evaluation))  # noqa: S301 - our own bytes
    assert copied == evaluation and orjson.dumps(copied.to_fragment()) == orjson.dumps(evaluation.to_dict())


def test_rule_indexes_count_malformed_rules_so_they_match_the_document():
    compiled = compile_flag(
        flag(rules=["garbage", {"conditions": [{"attribute": "a", "op": "eq", "values": [1]}], "serve": "x"}])
    )
    assert compiled.evaluate({"a": 1}) == Evaluation("x", None, "TARGETING_MATCH", "rules[1]")


def test_evaluation_works_on_any_mapping():
    compiled = compile_flag(
        flag(rules=[{"conditions": [{"attribute": "t.p", "op": "eq", "values": ["x"]}], "serve": 1}])
    )
    context = MappingProxyType({"t": MappingProxyType({"p": "x"})})
    assert compiled.evaluate(context).value == 1


def test_module_evaluate_is_compile_then_evaluate():
    doc = flag(allow_overrides="tenant")
    assert evaluate(doc, {}, tenant_override="t") == compile_flag(doc).evaluate({}, tenant_override="t")


# -- operators: edges beyond the vectors ------------------------------------------------


@pytest.mark.parametrize(
    ("condition", "context", "expected"),
    [
        ({"attribute": "n", "op": "in", "values": [1]}, {"n": True}, False),
        ({"attribute": "n", "op": "in", "values": [True]}, {"n": 1}, False),
        ({"attribute": "n", "op": "in", "values": [1.0]}, {"n": 1}, True),
        ({"attribute": "n", "op": "not_in", "values": [1]}, {"n": [1]}, False),
        ({"attribute": "n", "op": "eq", "values": [[1]]}, {"n": [1]}, False),
        ({"attribute": "n", "op": "eq", "values": []}, {"n": 1}, False),
        ({"attribute": "n", "op": "gt", "values": [float("nan")]}, {"n": 1}, False),
        ({"attribute": "n", "op": "gt", "values": [0]}, {"n": float("nan")}, False),
        ({"attribute": "n", "op": "gt", "values": ["0"]}, {"n": 1}, False),
        ({"attribute": "n", "op": "lt", "values": [True]}, {"n": 0}, False),
        ({"attribute": "s", "op": "contains", "values": [1, "b"]}, {"s": "abc"}, True),
        ({"attribute": "s", "op": "contains", "values": [1]}, {"s": "1"}, False),
        ({"attribute": "s", "op": "starts_with", "values": []}, {"s": "abc"}, False),
        ({"attribute": "t", "op": "after", "values": ["2024-01-01T00:00:00z"]}, {"t": "2024-01-01t00:00:01Z"}, True),
        ({"attribute": "t", "op": "after", "values": ["2024-01-01"]}, {"t": "2024-06-01T00:00:00Z"}, False),
        ({"attribute": "t", "op": "before", "values": ["2024-02-30T00:00:00Z"]}, {"t": "2024-01-01T00:00:00Z"}, False),
        ({"attribute": "t", "op": "before", "values": ["2025-01-01T00:00:00Z"]}, {"t": "2024-01-01T00:00:00"}, False),
        ({"attribute": "x", "op": "exists", "values": ["yes"]}, {"x": 0}, True),
        ({"attribute": "x", "op": "exists"}, {"x": False}, True),
        ({"attribute": "a.b.c", "op": "exists"}, {"a": {"b": {"c": 1}}}, True),
        ({"attribute": "a.b.c", "op": "exists"}, {"a": {"b": [1]}}, False),
        ({"attribute": "x", "op": "regex", "values": [".*"]}, {"x": "a"}, False),
        ({"attribute": "", "op": "exists"}, {"": 1}, False),
        ({"attribute": "x", "op": "in", "values": "abc"}, {"x": "a"}, False),
        ({"op": "exists"}, {}, False),
        ("x", {"x": 1}, False),
    ],
)
def test_operator_edges(condition, context, expected):
    assert compile_condition(condition)(context) is expected


def test_timestamps_accept_aware_datetimes_only():
    aware = parse_timestamp("2024-01-01T00:00:00+01:00")
    assert aware is not None and aware.utcoffset() is not None
    assert parse_timestamp(aware) is aware
    assert parse_timestamp(aware.replace(tzinfo=None)) is None
    assert parse_timestamp("2024-W01-1") is None


# -- never raises ---------------------------------------------------------------------


class Hostile(Mapping):
    """A mapping whose every read fails: an evaluation must still answer."""

    def __getitem__(self, key: str) -> Any:
        raise RuntimeError("boom")

    def get(self, key: str, default: Any = None) -> Any:
        raise RuntimeError("boom")

    def __iter__(self) -> Iterator[str]:
        return iter(())

    def __len__(self) -> int:
        return 0


GARBAGE_SCALARS = [
    None,
    True,
    False,
    0,
    -1,
    10**30,
    1.5,
    math.nan,
    math.inf,
    "",
    "x",
    "in",
    "user_id",
    b"bytes",
    object(),
]


def garbage(rng: random.Random, depth: int = 0) -> Any:
    roll = rng.random()
    if depth > 2 or roll < 0.4:
        return rng.choice(GARBAGE_SCALARS)
    if roll < 0.7:
        return [garbage(rng, depth + 1) for _ in range(rng.randint(0, 3))]
    keys = ["key", "enabled", "default", "rules", "conditions", "serve", "attribute", "op", "values", "rollout"]
    keys += ["percentage", "stickiness", "variants", "name", "weight", "allow_overrides", "user_id", "tenant"]
    return {rng.choice(keys): garbage(rng, depth + 1) for _ in range(rng.randint(0, 5))}


def mutated_flag(rng: random.Random) -> Any:
    """A plausible flag with one part replaced by garbage: reaches deeper than pure noise."""
    doc = rollout(
        50,
        default="a",
        allow_overrides="user",
        variants=[{"name": "a", "weight": 50}, {"name": "b", "weight": 50}],
        rules=[
            {
                "conditions": [{"attribute": "tenant.plan", "op": rng.choice(sorted(OPS)), "values": ["x", 1]}],
                "serve": "b",
            }
        ],
    )
    path = rng.choice(
        ["key", "enabled", "rules", "rollout", "variants", "allow_overrides", "default", "cond", "weight"]
    )
    if path == "cond":
        doc["rules"][0]["conditions"][0][rng.choice(["attribute", "op", "values"])] = garbage(rng)
    elif path == "weight":
        doc["variants"][0]["weight"] = rng.choice(GARBAGE_SCALARS)
    elif path == "rollout":
        doc["rollout"][rng.choice(["percentage", "stickiness"])] = rng.choice(GARBAGE_SCALARS)
    elif path == "enabled":
        doc["enabled"] = rng.choice([False, garbage(rng)])
    else:
        doc[path] = garbage(rng)
    return doc


OPS = {"in", "not_in", "eq", "neq", "contains", "starts_with", "ends_with"} | {
    "gt",
    "gte",
    "lt",
    "lte",
    "before",
    "after",
    "exists",
}


def test_evaluate_never_raises_on_garbage():
    rng = random.Random(20261121)
    contexts: list[Any] = [Hostile(), None, [], "ctx", 1, {"user_id": object()}, {"tenant": "plan"}]
    reasons: Counter[str] = Counter()
    for i in range(3000):
        doc = mutated_flag(rng) if i % 2 else garbage(rng)
        if i % 5 == 0:
            context = rng.choice(contexts)
        elif i % 5 < 3:
            context = garbage(rng)
        else:  # a mapping with garbage values reaches the rules and the rollout
            context = {"tenant": {"plan": garbage(rng)}, "user_id": garbage(rng), "x": garbage(rng)}
        if isinstance(context, dict) and rng.random() < 0.5:
            context["user_id"] = rng.choice(GARBAGE_SCALARS)
        compiled = compile_flag(doc)
        assert isinstance(compiled, CompiledFlag)
        result = compiled.evaluate(
            context,
            tenant_override=rng.choice([ABSENT, garbage(rng)]),
            user_override=rng.choice([ABSENT, garbage(rng)]),
        )
        assert isinstance(result, Evaluation) and result.reason in REASONS
        reasons[result.reason] += 1
        evaluate(doc, context)
    # The garbage reached every branch, not only the early exits.
    assert {"ERROR", "DEFAULT", "SPLIT", "TARGETING_MATCH", "DISABLED"} <= set(reasons), reasons


def test_unusable_documents_answer_their_default_with_error():
    assert evaluate(["not", "a", "flag"], {}) == Evaluation(None, None, "ERROR", None)
    assert compile_flag(rollout(50, default=7)).evaluate(Hostile()) == Evaluation(7, None, "ERROR", None)
    assert compile_flag(flag(default=7)).evaluate("not a mapping") == Evaluation(7, None, "ERROR", None)


def test_nan_percentage_puts_nobody_in():
    compiled = compile_flag(rollout(math.nan))
    assert {compiled.evaluate({"user_id": u}).reason for u in USERS[:500]} == {"DEFAULT"}
