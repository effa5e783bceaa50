"""Which Redis hash slot each write lives in, and the event stream shard that shares it.

A write and its event are one ``MULTI`` (:mod:`aerie.events`), and Redis Cluster runs a
``MULTI`` only when every key is in one hash slot. So the event stream is split into
``shards`` streams, each with its own hash tag, and every key a write touches carries the
tag of the stream its event goes to:

- a tenant's keys in projects carry the tag of the tenant's shard (a stable hash of the
  tenant id), so tenants spread over the shards and the shards over the cluster's masters;
- what is global to a service (the tenants service's tenants, clients and members; flag
  definitions and overrides, which share one revision) carries the tag of shard 0, the
  *platform* shard, whose stream also takes those writes' events.

The tags are chosen so that shard ``k``'s slot lies in the ``k``-th of ``shards`` equal
ranges of the 16384 slots: ``redis-cli --cluster create`` gives each master a contiguous
range, so the shards (and the tenants) split evenly between masters.

``shards=0`` is the single-node layout: no tags, the one stream ``aerie:events``, the key
names every single-node deployment has always had. The code path is the same; only the
names differ. Every service of one deployment must use the same number of shards: it is
part of where data is, and changing it means moving data (``python -m aerie.migrate``).
"""

from __future__ import annotations

import functools
import zlib
from dataclasses import dataclass

from redis.crc import REDIS_CLUSTER_HASH_SLOTS, key_slot

__all__ = ["UNSHARDED", "Keyspace", "Shard", "tag_of"]

LEGACY_STREAM = "aerie:events"
LEGACY_DEAD_LETTERS = "aerie:events:dead"
#: The most shards a deployment may have: every consumer reads every shard on each round.
MAX_SHARDS = 256


@dataclass(frozen=True)
class Shard:
    """One event stream shard and the hash tag of the keys whose writes publish to it."""

    index: int
    #: ``{...}`` put in front of a key to place it in this shard's slot; "" when unsharded.
    tag: str
    stream: str
    dead_letters: str

    def key(self, name: str) -> str:
        """``name`` in this shard's slot."""
        return self.tag + name

    @classmethod
    def named(cls, stream: str, dead_letters: str | None = None) -> Shard:
        """A shard of one stream by name (a scratch stream, a test's), its keys in its slot.

        A name without a hash tag is hashed whole, which is the slot of ``{<name>}``: that is
        the tag its processed markers and dead letters get, so that marking and acknowledging
        stay one ``MULTI`` on a cluster.
        """
        tag = tag_of(stream) or f"{{{stream}}}"
        return cls(0, tag, stream, dead_letters or (f"{stream}:dead" if tag_of(stream) else f"{tag}:dead"))


def tag_of(key: str) -> str:
    """The hash tag that places ``key`` (``{...}`` at its start), or "" when it has none."""
    if key.startswith("{"):
        end = key.find("}")
        if end > 1:
            return key[: end + 1]
    return ""


@functools.lru_cache(maxsize=16)
def _tags(shards: int) -> tuple[str, ...]:
    """``{e<k>.<n>}`` for each shard ``k``, ``n`` the first that lands in the ``k``-th slot range."""
    width = REDIS_CLUSTER_HASH_SLOTS / shards
    tags = []
    for k in range(shards):
        low, high = int(k * width), int((k + 1) * width)
        n = 0
        while not low <= key_slot(f"e{k}.{n}".encode()) < high:
            n += 1
        tags.append(f"{{e{k}.{n}}}")
    return tuple(tags)


class Keyspace:
    """The shards of one deployment; immutable, shared by every part of a process."""

    def __init__(self, shards: int = 0) -> None:
        if not 0 <= shards <= MAX_SHARDS:
            raise ValueError(f"shards must be between 0 and {MAX_SHARDS}")
        self.count = shards
        if shards == 0:
            self.shards: tuple[Shard, ...] = (Shard(0, "", LEGACY_STREAM, LEGACY_DEAD_LETTERS),)
        else:
            self.shards = tuple(
                Shard(k, tag, f"{tag}{LEGACY_STREAM}", f"{tag}{LEGACY_DEAD_LETTERS}")
                for k, tag in enumerate(_tags(shards))
            )
        self._by_stream = {s.stream: s for s in self.shards}

    @property
    def sharded(self) -> bool:
        return self.count > 0

    @property
    def platform(self) -> Shard:
        """Shard 0: where what belongs to no one tenant is written, with its events."""
        return self.shards[0]

    def of_tenant(self, tenant_id: str | None) -> Shard:
        """The shard of ``tenant_id``'s keys; the platform shard for None."""
        if tenant_id is None or self.count <= 1:
            return self.shards[0]
        return self.shards[zlib.crc32(tenant_id.encode("utf-8", "surrogatepass")) % self.count]

    def of_stream(self, stream: str) -> Shard:
        return self._by_stream[stream]

    @property
    def streams(self) -> tuple[str, ...]:
        return tuple(s.stream for s in self.shards)

    def __repr__(self) -> str:
        return f"Keyspace(shards={self.count})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Keyspace) and other.count == self.count

    def __hash__(self) -> int:
        return hash(self.count)


UNSHARDED = Keyspace(0)
