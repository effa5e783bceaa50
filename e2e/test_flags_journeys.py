"""Journeys through the flags service, as a release manager rolling out a feature would make them."""

from __future__ import annotations

import hashlib

import pytest

pytestmark = [pytest.mark.flags, pytest.mark.tenants]

#: The rollout's steps, in percent, as a careful release goes.
STEPS = (0, 10, 25, 50, 75, 100)
USERS = [f"user-{i:03d}" for i in range(200)]
#: How far the share of users in the rollout may sit from its percentage, in points. The
#: users are fixed but the key is new every run, so the share is a fresh sample of 200 each
#: time: 15 points is over four standard deviations at 50 %.
TOLERANCE = 15.0
#: A definition change reaches every instance by pub/sub; generous for a busy staging.
PROPAGATION_S = 5.0


def bucket(key: str, value: str) -> int:
    """The rollout bucket exactly as docs/api.md fixes it, computed here as an independent oracle."""
    return int.from_bytes(hashlib.sha256(f"{key}:{value}".encode()).digest()[:4], "big") % 10000


def test_a_rollout_from_0_to_100_percent_only_ever_adds_users(aerie):
    _tenant, token = aerie.tenant_with_token(["flags:read"])
    rollout = {"percentage": 0, "stickiness": "user_id"}
    flag = aerie.create_flag("rollout", description="e2e: a stepwise rollout", default=False, rollout=rollout)
    key, version = flag["key"], flag["version"]

    def in_rollout(user_id: str) -> bool:
        r = aerie.call(
            "POST", "flags", "/v1/evaluate", token=token, json={"context": {"user_id": user_id}, "keys": [key]}
        )
        assert r.status_code == 200, r.text[:300]
        result = r.json()["flags"][key]
        assert (result["value"], result["reason"]) in ((True, "SPLIT"), (False, "DEFAULT")), (user_id, result)
        return result["reason"] == "SPLIT"

    inside: set[str] = set()  # users that were in the rollout at an earlier step
    shares: dict[int, float] = {}
    for percentage in STEPS:
        r = aerie.call(
            "PUT",
            "flags",
            f"/v1/flags/{key}",
            token=aerie.admin_token,
            json={"default": False, "rollout": {**rollout, "percentage": percentage}},
            headers={"If-Match": f'"{version}"'},
        )
        assert r.status_code == 200 and r.json()["version"] == version + 1, r.text[:300]
        version += 1
        expected = {u for u in USERS if bucket(key, u) < percentage * 100}
        for user in USERS:
            now_in = in_rollout(user)
            # An instance that has not seen this step yet answers the previous one, under
            # which every user of ``inside`` was in too: out is never right for them.
            assert now_in or user not in inside, f"{user} left the rollout when it went to {percentage}%"
            if now_in != (user in expected):
                aerie.eventually(
                    lambda u=user, want=user in expected: in_rollout(u) == want,
                    PROPAGATION_S,
                    f"{user} (bucket {bucket(key, user)}) answering the {percentage}% rollout",
                )
        # Every user now answers as the bucket says (checked above), so this is the share served.
        inside |= expected
        shares[percentage] = 100 * len(expected) / len(USERS)
        assert abs(shares[percentage] - percentage) <= TOLERANCE, shares
    assert shares[0] == 0 and shares[100] == 100 and inside == set(USERS), shares

    # The kill switch: everyone gets false at once, rollout or not.
    r = aerie.call(
        "PUT",
        "flags",
        f"/v1/flags/{key}",
        token=aerie.admin_token,
        json={"default": False, "enabled": False, "rollout": {**rollout, "percentage": 100}},
    )
    assert r.status_code == 200, r.text[:300]
    killed = r.json()["version"]  # what every evaluation of it answers as its revision

    def disabled() -> bool:
        r = aerie.call(
            "POST", "flags", "/v1/evaluate", token=token, json={"context": {"user_id": USERS[0]}, "keys": [key]}
        )
        off = {"value": False, "variant": None, "reason": "DISABLED", "rule": None, "revision": killed}
        return r.status_code == 200 and r.json()["flags"][key] == off

    aerie.eventually(disabled, PROPAGATION_S, "the kill switch answering DISABLED")
