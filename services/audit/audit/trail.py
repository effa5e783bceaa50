"""One tenant's audit trail in Redis: appended atomically, read by seq, trimmed from the old end.

Key layout; the trail id sits in a hash tag, so one trail's keys share a Redis Cluster slot
and its transactions stay legal. The trail id is the tenant id, or ``@platform`` for
events without a tenant and for the platform's copy of a tenant's ``token.denied``
(:func:`audit.entry.trails_of`; ``@`` cannot occur in a tenant id, so the two never meet):

- ``audit:{<trail>}:meta``     hash: ``seq``/``hash`` of the head (the newest entry) and
  ``cp_seq``/``cp_hash``, the checkpoint: the last entry retention removed (absent until
  the first trim). The retained entries are ``cp_seq + 1 .. seq``, with no gap.
- ``audit:{<trail>}:entries``  hash: seq -> the entry as the API returns it (JSON)
- ``audit:{<trail>}:ids``      hash: entry id -> seq; finds an entry by id and dedupes
- ``audit:trails``             set of trail ids, for retention (outside any hash tag)

Appends WATCH ``meta``, read the head and which of the batch's ids are already recorded,
and write the new entries, their ids and the new head in one ``MULTI``. Any concurrent
append to the same trail (another worker, another instance) changes ``meta``, so ``EXEC``
fails and the batch is sealed again on the fresh head: seqs stay gapless and the chain
unbroken, and an id is recorded once however often its event is delivered. The hash is
SHA-256, which Redis's Lua does not offer, hence WATCH rather than a script.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import orjson
import redis

from aerie.redis import RedisProvider
from audit.entry import GENESIS, TENANT_ID_RE, seal

__all__ = ["PLATFORM_TRAIL", "TRAILS_KEY", "Appended", "Stored", "Trail", "TrailState", "trail_name"]

PLATFORM_TRAIL = "@platform"
TRAILS_KEY = "audit:trails"
#: How many entries one HMGET fetches when a trail is read in order.
CHUNK = 500
#: Attempts before an append under heavy contention gives up (the event stays pending).
MAX_ATTEMPTS = 200


def trail_name(tenant_id: str | None) -> str:
    """The trail id of a tenant (None: the platform's); refuses anything that is not a tenant id."""
    if tenant_id is None:
        return PLATFORM_TRAIL
    if not TENANT_ID_RE.match(tenant_id):
        raise ValueError("not a tenant id")
    return tenant_id


@dataclass(frozen=True)
class TrailState:
    """Where a trail stands: its head and its retention checkpoint (seq 0: none yet)."""

    head_seq: int
    head_hash: str
    cp_seq: int
    cp_hash: str

    @property
    def first_seq(self) -> int:
        return self.cp_seq + 1

    @property
    def retained(self) -> int:
        return self.head_seq - self.cp_seq

    @classmethod
    def from_meta(cls, meta: Mapping[str, str]) -> TrailState:
        return cls(
            head_seq=int(meta.get("seq", 0)),
            head_hash=meta.get("hash", GENESIS),
            cp_seq=int(meta.get("cp_seq", 0)),
            cp_hash=meta.get("cp_hash", GENESIS),
        )


@dataclass(frozen=True)
class Stored:
    """What is actually there beside the head: counts to hold the head against.

    ``meta`` says how many entries the trail retains; a Redis that lost keys (evicted, a
    partial restore) can leave the head without its entries or entries without their head,
    and only counting what remains shows it.
    """

    state: TrailState
    #: The head record (``meta``) exists at all.
    has_head: bool
    entries: int
    ids: int
    #: The trail is in ``audit:trails``: something was appended to it once.
    registered: bool


@dataclass(frozen=True)
class Appended:
    """The outcome for one entry of a batch: its seq, and whether this call recorded it."""

    id: str
    seq: int
    created: bool
    entry: dict[str, Any] | None  # the sealed entry when created


class Trail:
    """One trail's keys; the tenant is fixed at construction and never a parameter."""

    def __init__(self, redis_provider: RedisProvider, tenant_id: str | None) -> None:
        self._redis = redis_provider
        self.tenant_id = tenant_id
        self.name = trail_name(tenant_id)
        prefix = f"audit:{{{self.name}}}:"
        self._meta = prefix + "meta"
        self._entries = prefix + "entries"
        self._ids = prefix + "ids"

    @classmethod
    def from_name(cls, redis_provider: RedisProvider, name: str) -> Trail:
        return cls(redis_provider, None if name == PLATFORM_TRAIL else name)

    @property
    def _client(self) -> redis.Redis:
        return self._redis.client

    # -- reads ------------------------------------------------------------------------

    def state(self) -> TrailState:
        return TrailState.from_meta(self._client.hgetall(self._meta))

    def stored(self) -> Stored:
        """The head and the counts of what is stored, read atomically (one ``MULTI``, one slot).

        Whether the trail is registered is asked only of a trail without a head: that key
        lies outside the hash tag, so it cannot join the transaction.
        """
        with self._client.pipeline(transaction=True) as pipe:
            pipe.hgetall(self._meta)
            pipe.hlen(self._entries)
            pipe.hlen(self._ids)
            meta, entries, ids = pipe.execute()
        has_head = "seq" in meta
        registered = has_head or bool(self._client.sismember(TRAILS_KEY, self.name))
        return Stored(TrailState.from_meta(meta), has_head, int(entries), int(ids), registered)

    def get(self, entry_id: str) -> dict[str, Any] | None:
        seq = self._client.hget(self._ids, entry_id)
        if seq is None:
            return None
        raw = self._client.hget(self._entries, seq)
        return orjson.loads(raw) if raw else None

    def raw(self, seqs: list[int]) -> list[str | None]:
        """The stored JSON of each seq (None where retention removed it meanwhile)."""
        return self._client.hmget(self._entries, seqs) if seqs else []

    def head(self) -> tuple[int, int]:
        """``(head seq, checkpoint seq)``: one small read, all a newest-first page needs first."""
        seq, cp_seq = self._client.hmget(self._meta, ["seq", "cp_seq"])
        return int(seq or 0), int(cp_seq or 0)

    def ascending(self, first: int, last: int, chunk: int = CHUNK) -> Iterator[tuple[int, str | None]]:
        """``(seq, json)`` from ``first`` to ``last`` inclusive, one HMGET per chunk."""
        for start in range(first, last + 1, chunk):
            seqs = list(range(start, min(start + chunk - 1, last) + 1))
            yield from zip(seqs, self.raw(seqs), strict=True)

    def descending(self, start: int, first: int, chunk: int = CHUNK) -> Iterator[tuple[int, str | None]]:
        """``(seq, json)`` from ``start`` down to ``first`` inclusive, one HMGET per chunk."""
        for top in range(start, first - 1, -chunk):
            seqs = list(range(top, max(top - chunk + 1, first) - 1, -1))
            yield from zip(seqs, self.raw(seqs), strict=True)

    # -- writes -----------------------------------------------------------------------

    def append(self, entries: list[dict[str, Any]], clock: Callable[[], str]) -> list[Appended]:
        """Record each entry whose id this trail has not recorded yet, in order, atomically.

        ``clock`` gives ``recorded_at`` on each attempt. Returns one :class:`Appended` per
        distinct id (the first of duplicates within the batch wins).
        """
        unique: dict[str, dict[str, Any]] = {}
        for entry in entries:
            unique.setdefault(entry["id"], entry)
        ids = list(unique)
        r = self._client
        r.sadd(TRAILS_KEY, self.name)
        for _attempt in range(MAX_ATTEMPTS):
            with r.pipeline(transaction=True) as pipe:
                try:
                    pipe.watch(self._meta)
                    state = TrailState.from_meta(pipe.hgetall(self._meta))
                    known = pipe.hmget(self._ids, ids)
                    results: list[Appended] = []
                    fresh: dict[int, bytes] = {}
                    fresh_ids: dict[str, int] = {}
                    seq, prev = state.head_seq, state.head_hash
                    recorded_at = clock()
                    for entry_id, existing in zip(ids, known, strict=True):
                        if existing is not None:
                            results.append(Appended(entry_id, int(existing), False, None))
                            continue
                        seq += 1
                        sealed = seal(unique[entry_id], seq, prev, recorded_at)
                        prev = sealed["hash"]
                        fresh[seq] = orjson.dumps(sealed)
                        fresh_ids[entry_id] = seq
                        results.append(Appended(entry_id, seq, True, sealed))
                    if not fresh:
                        pipe.unwatch()
                        return results
                    pipe.multi()
                    pipe.hset(self._entries, mapping=fresh)  # type: ignore[arg-type]
                    pipe.hset(self._ids, mapping=fresh_ids)  # type: ignore[arg-type]
                    pipe.hset(self._meta, mapping={"seq": seq, "hash": prev})
                    pipe.execute()
                    # On the replicas before the events are acknowledged or the entry answered.
                    self._redis.replicated(self._meta)
                    return results
                except redis.WatchError:
                    continue
        raise RuntimeError(f"audit trail {self.name}: append kept conflicting; the events stay pending")

    def trim_before(self, cutoff: str, batch: int = CHUNK) -> int:
        """Remove the oldest entries recorded before ``cutoff``; returns how many.

        The checkpoint moves to the last removed entry (its ``seq`` and ``hash``), so what
        remains still verifies: its first entry's ``prev_hash`` is the checkpoint's hash.
        Only a prefix is ever removed, so the retained seqs stay gapless. Ids go too, so an
        event redelivered after its entry expired would be recorded again (the stream
        redelivers only pending events, long before any retention period ends).
        """
        removed = 0
        r = self._client
        while True:
            with r.pipeline(transaction=True) as pipe:
                try:
                    pipe.watch(self._meta)
                    state = TrailState.from_meta(pipe.hgetall(self._meta))
                    last = min(state.first_seq + batch - 1, state.head_seq)
                    seqs = list(range(state.first_seq, last + 1))
                    raws = pipe.hmget(self._entries, seqs) if seqs else []
                    doomed: list[tuple[int, dict[str, Any]]] = []
                    for seq, raw in zip(seqs, raws, strict=True):
                        if raw is None:
                            break
                        entry = orjson.loads(raw)
                        if entry["recorded_at"] >= cutoff:
                            break
                        doomed.append((seq, entry))
                    if not doomed:
                        pipe.unwatch()
                        return removed
                    pipe.multi()
                    pipe.hdel(self._entries, *[s for s, _ in doomed])
                    pipe.hdel(self._ids, *[e["id"] for _, e in doomed])
                    last_seq, last_entry = doomed[-1]
                    pipe.hset(self._meta, mapping={"cp_seq": last_seq, "cp_hash": last_entry["hash"]})
                    pipe.execute()
                    self._redis.replicated(self._meta)
                    removed += len(doomed)
                    if len(doomed) < len(seqs):
                        return removed
                except redis.WatchError:
                    continue
