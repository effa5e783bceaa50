"""Recomputing a trail's chain: the proof that no retained entry was changed, removed or reordered.

Every retained entry must sit at its seq, name the previous entry's hash (the checkpoint's
for the first one after a trim, 64 zeros for a trail never trimmed) and carry the hash of
its own content; the last one must be the recorded head. The first seq where any of that
fails is ``first_invalid_seq``, and ``reason`` says what failed. It reads the trail in chunks
(constant memory) and costs one SHA-256 per entry: about 10 us, so 100,000 entries take
about a second.

The chain alone cannot see a trail that lost keys as a whole: a Redis that evicts (or a
partial restore) can drop the head record, leaving entries no head vouches for and a trail
that reads as never written, or drop everything, leaving only the trail's name in
``audit:trails``. So the head is first held against what is stored: a head record must
exist wherever entries or ids do, a registered trail must have one, and the stored entries
and ids must number exactly the retained range ``cp_seq + 1 .. seq``. Only a trail with no
keys at all that was never registered is an empty, valid trail.
"""

from __future__ import annotations

import time
from typing import Any

import orjson

from audit.entry import chain_hash
from audit.trail import Stored, Trail, TrailState

__all__ = ["verify"]

#: How long a registered trail with no head gets to finish its first append before it is
#: called emptied: ``append`` registers the trail just before its transaction writes the head.
FIRST_APPEND_GRACE_S = 0.05


def _check(trail: Trail, state: TrailState) -> tuple[int | None, int, str | None]:
    """The first invalid seq (None: all valid), how many entries were checked, and why."""
    prev = state.cp_hash
    checked = 0
    for seq, raw in trail.ascending(state.first_seq, state.head_seq):
        checked += 1
        if raw is None:
            return seq, checked, f"entry {seq} is missing"
        try:
            entry = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return seq, checked, f"entry {seq} is not JSON"
        if not isinstance(entry, dict) or entry.get("seq") != seq:
            return seq, checked, f"entry {seq} is not at its seq"
        if entry.get("prev_hash") != prev:
            return seq, checked, f"entry {seq} does not name the previous entry's hash"
        if entry.get("hash") != chain_hash(prev, entry):
            return seq, checked, f"entry {seq} does not match its hash"
        prev = entry["hash"]
    if state.head_seq > state.cp_seq and prev != state.head_hash:
        return state.head_seq, checked, "the last entry is not the recorded head"
    return None, checked, None


def _lost(stored: Stored) -> tuple[int, str] | None:
    """Why the stored keys contradict the head before any entry is read (None: they agree)."""
    state = stored.state
    if not stored.has_head:
        if stored.entries or stored.ids:
            return state.first_seq, (
                f"the head record is missing while {stored.entries} entries and {stored.ids} ids remain"
            )
        if stored.registered:
            return state.first_seq, "the trail was written to, but its head and all its entries are gone"
        return None
    if stored.entries > state.retained:
        return state.head_seq + 1, (
            f"{stored.entries} entries are stored but the head accounts for {state.retained} "
            f"(seq {state.first_seq} to {state.head_seq})"
        )
    if stored.ids != state.retained and stored.entries == state.retained:
        return state.first_seq, f"the id index holds {stored.ids} ids for {state.retained} entries"
    return None


def verify(trail: Trail) -> dict[str, Any]:
    """docs/api.md's ``{"valid", "entries", "head", "first_invalid_seq"}``, plus the checkpoint,
    and ``reason`` (a sentence) when the trail is not valid.

    The head and the counts are read together, so an append in between cannot make them
    disagree. A trim that runs during the chain check moves the checkpoint, and the removed
    entries would look missing: the check is then repeated on the new range (a trail is only
    trimmed every few minutes, so once suffices in practice; three times bounds it).
    """
    for attempt in range(3):
        stored = trail.stored()
        state = stored.state
        lost = _lost(stored)
        if lost is not None and not stored.has_head and attempt == 0:
            time.sleep(FIRST_APPEND_GRACE_S)
            continue
        if lost is not None:
            first_invalid, checked, reason = lost[0], 0, lost[1]
        else:
            first_invalid, checked, reason = _check(trail, state)
            if first_invalid is None and stored.entries < state.retained:
                first_invalid, reason = state.first_seq, f"{stored.entries} of {state.retained} entries are stored"
        if first_invalid is None or trail.state().cp_seq == state.cp_seq:
            break
    result: dict[str, Any] = {
        "valid": first_invalid is None,
        "entries": state.retained if first_invalid is None else checked,
        "head": {"seq": state.head_seq, "hash": state.head_hash},
        "first_invalid_seq": first_invalid,
        "checkpoint": {"seq": state.cp_seq, "hash": state.cp_hash} if state.cp_seq else None,
    }
    if reason is not None:
        result["reason"] = reason
    return result
