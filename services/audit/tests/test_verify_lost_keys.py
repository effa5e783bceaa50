"""``verify`` against a trail that lost keys as a whole, as an evicting Redis loses them.

The chain check alone reads what the head names; these are the losses it cannot see: the
head gone with or without its entries, every entry gone, entries beyond the head.
"""

from __future__ import annotations

import json

import pytest
from audittest import TEN_A, TEN_B, event, ingest

from audit.trail import Trail
from audit.verify import verify

META, ENTRIES, IDS = "audit:{ten_A}:meta", "audit:{ten_A}:entries", "audit:{ten_A}:ids"


@pytest.fixture
def trail(redis_provider) -> Trail:
    ingest(redis_provider, [event("flag.updated", TEN_A, {"flag": {"key": f"f{i}"}}) for i in range(23)])
    trail = Trail(redis_provider, TEN_A)
    assert verify(trail)["valid"] is True
    return trail


def invalid(result: dict) -> dict:
    assert result["valid"] is False, result
    assert result["first_invalid_seq"] is not None and result["reason"]
    return result


def test_a_trail_whose_entries_all_vanished_is_invalid(redis_provider, trail: Trail) -> None:
    redis_provider.client.delete(ENTRIES)
    result = invalid(verify(trail))
    assert result["first_invalid_seq"] == 1 and result["entries"] == 1 and "missing" in result["reason"]


def test_a_trail_emptied_of_every_key_is_invalid(redis_provider, trail: Trail) -> None:
    """The case seen under allkeys-lru: 0 of 23 entries left and verify said valid."""
    redis_provider.client.delete(META, ENTRIES, IDS)
    result = invalid(verify(trail))
    assert result["head"] == {"seq": 0, "hash": "0" * 64} and "gone" in result["reason"]


def test_a_missing_head_with_entries_left_is_invalid(redis_provider, trail: Trail) -> None:
    redis_provider.client.delete(META)
    result = invalid(verify(trail))
    assert "head record is missing" in result["reason"] and "23 entries" in result["reason"]


def test_missing_entries_in_the_middle_and_at_the_end_are_found(redis_provider, trail: Trail) -> None:
    redis_provider.client.hdel(ENTRIES, 23)
    assert invalid(verify(trail))["first_invalid_seq"] == 23
    redis_provider.client.hdel(ENTRIES, 7, 8)
    result = invalid(verify(trail))
    assert result["first_invalid_seq"] == 7 and result["reason"] == "entry 7 is missing"


def test_entries_beyond_the_head_are_invalid(redis_provider, trail: Trail) -> None:
    """A head rolled back (restored from an older snapshot than its entries) hides the newest."""
    twentieth = json.loads(trail.raw([20])[0] or "{}")
    redis_provider.client.hset(META, mapping={"seq": 20, "hash": twentieth["hash"]})
    result = invalid(verify(trail))
    assert result["first_invalid_seq"] == 21 and "23 entries are stored" in result["reason"]


def test_a_lost_id_index_is_invalid(redis_provider, trail: Trail) -> None:
    redis_provider.client.delete(IDS)
    assert "id index holds 0 ids for 23 entries" in invalid(verify(trail))["reason"]


def test_a_trail_never_written_is_valid_and_empty(redis_provider) -> None:
    result = verify(Trail(redis_provider, TEN_B))
    assert result["valid"] is True and result["entries"] == 0 and "reason" not in result


def test_a_trimmed_trail_still_verifies(redis_provider, trail: Trail) -> None:
    removed = trail.trim_before("9999")  # every entry is older than that
    assert removed == 23
    result = verify(trail)
    assert result["valid"] is True and result["entries"] == 0 and result["checkpoint"]["seq"] == 23
