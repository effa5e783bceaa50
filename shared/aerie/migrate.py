"""Move a single-node deployment's data to a Redis Cluster (or to a sharded layout).

``python -m aerie.migrate --from <single-node URL> --to <cluster seed URL> [--shards 16]``
with the services stopped (``cf stop``): nothing may write while the data moves. Each key
is copied with ``DUMP``/``RESTORE`` (its TTL kept) under the name the sharded layout gives
it (:mod:`aerie.keyspace`): the tenants service's keys, flags' keys and the revocations into
the platform shard's slot, each tenant's projects into its own shard's; audit's, rate
limits' and idempotency records' names do not change. The event stream is split over the
shard streams by each entry's tenant, every entry keeping its id (so projects' stream
positions stay true), and each consumer group starts on every shard where it stood: after
its last delivered entry, or before its oldest pending one, which is then delivered again
(every consumer is idempotent by event id). Dead letters follow their event's tenant.

Refused, before anything is written: a target that holds any key, a source key this
command does not know (it would be left behind), and ``--shards`` outside 1..256. The
source is only read. ``--dry-run`` prints what would be copied.

Processed-markers (``aerie:processed:*``, a week's dedupe of redeliveries) and locks are
not copied: a redelivered event is recognised by the consumers themselves.

URLs may be given as ``AERIE_MIGRATE_FROM`` / ``AERIE_MIGRATE_TO`` instead, which keeps
passwords off the command line.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import redis

from aerie.auth.revocation import MEMBER_FLOORS_KEY, REVOKED_CLIENTS_KEY
from aerie.keyspace import LEGACY_DEAD_LETTERS, LEGACY_STREAM, Keyspace, Shard

__all__ = ["MigrationError", "Report", "migrate", "target_name"]

_PROJECTS = re.compile(r"\Aprojects:\{([A-Za-z0-9_-]{1,64})\}:")
#: Keys moved into the platform shard's slot (written in its transactions).
_PLATFORM = ("tenants:", "flags:")
_PLATFORM_KEYS = (REVOKED_CLIENTS_KEY, MEMBER_FLOORS_KEY)
#: Keys whose names (and slots) stay: no transaction of theirs spans an event.
_UNCHANGED = ("audit:", "aerie:idem:", "aerie:ratelimit:", "tenants:authfail:")
#: Transient keys left behind.
_SKIPPED = ("aerie:processed:", "aerie:events:janitor:lock", "aerie:replicated:")
_BATCH = 500


class MigrationError(RuntimeError):
    """The migration cannot start (nothing was written)."""


@dataclass
class Report:
    keys: Counter[str] = field(default_factory=Counter)
    events: int = 0
    dead_letters: int = 0
    groups: list[str] = field(default_factory=list)
    skipped: int = 0


def target_name(key: str, keyspace: Keyspace) -> str | None:
    """The key's name in the sharded layout; None when it is not copied.

    Raises :class:`MigrationError` for a key no service writes.
    """
    if key.startswith(_SKIPPED) or key.endswith(":lock"):
        return None
    match = _PROJECTS.match(key)
    if match:
        return keyspace.of_tenant(match.group(1)).key(key)
    if key.startswith(_UNCHANGED):
        return key
    if key.startswith(_PLATFORM) or key in _PLATFORM_KEYS:
        return keyspace.platform.key(key)
    raise MigrationError(f"unknown key {key!r}: no Aerie service writes it, so it would be left behind")


def _connect(url: str) -> redis.Redis:
    client = redis.Redis.from_url(url, socket_timeout=30)
    info = client.info("cluster")
    if int(info.get("cluster_enabled", 0)) == 1:
        client.close()
        return redis.RedisCluster.from_url(url, socket_timeout=30)  # type: ignore[return-value]
    return client


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def migrate(
    source: redis.Redis, target: redis.Redis, keyspace: Keyspace, *, dry_run: bool = False, echo: Callable[[str], None]
) -> Report:
    """Copy everything from ``source`` (the single-node layout) to ``target`` (sharded)."""
    if not keyspace.sharded:
        raise MigrationError("the target layout must be sharded (--shards 1 or more)")
    if int(target.dbsize()) != 0:
        raise MigrationError("the target holds keys already: migrate into an empty Redis only")
    keys = sorted(_text(k) for k in source.scan_iter(count=1000))
    plan: list[tuple[str, str]] = []
    report = Report()
    for key in keys:
        if key in (LEGACY_STREAM, LEGACY_DEAD_LETTERS):
            continue
        name = target_name(key, keyspace)
        if name is None:
            report.skipped += 1
        else:
            plan.append((key, name))
    groups = _groups(source) if source.exists(LEGACY_STREAM) else []
    echo(f"{len(plan)} keys to copy, {report.skipped} transient keys left behind, {len(groups)} consumer groups")
    if dry_run:
        for key, _name in plan:
            report.keys[key.split(":", 1)[0]] += 1
        return report
    for start in range(0, len(plan), _BATCH):
        chunk = plan[start : start + _BATCH]
        read = source.pipeline(transaction=False)
        for key, _name in chunk:
            read.dump(key)
            read.pttl(key)
        values = read.execute()
        write = target.pipeline(transaction=False)
        for (key, name), dumped, ttl in zip(chunk, values[0::2], values[1::2], strict=True):
            if dumped is None:
                continue  # expired meanwhile
            write.restore(name, max(int(ttl), 0), dumped)
            report.keys[key.split(":", 1)[0]] += 1
        write.execute()
    report.events = _split_stream(source, target, LEGACY_STREAM, keyspace, lambda s: s.stream)
    report.dead_letters = _split_stream(source, target, LEGACY_DEAD_LETTERS, keyspace, lambda s: s.dead_letters)
    for name, position in groups:
        for shard in keyspace.shards:
            target.xgroup_create(shard.stream, name, id=position, mkstream=True)
        report.groups.append(name)
    echo(
        f"copied {sum(report.keys.values())} keys, {report.events} events, {report.dead_letters} dead letters; "
        f"groups {', '.join(report.groups) or '(none)'} on each of {len(keyspace.shards)} shards"
    )
    return report


def _groups(source: redis.Redis) -> list[tuple[str, str]]:
    """Each group of the stream and the id its shards' groups start after."""
    out = []
    for group in source.xinfo_groups(LEGACY_STREAM):
        name = _text(group["name"])
        position = _text(group.get("last-delivered-id") or "0-0")
        summary = source.xpending(LEGACY_STREAM, name)
        if summary and summary.get("pending"):
            ms, _, seq = _text(summary["min"]).partition("-")
            before = f"{ms}-{int(seq) - 1}" if int(seq) > 0 else f"{int(ms) - 1}-18446744073709551615"
            position = min(position, before, key=lambda i: tuple(int(p) for p in i.split("-")))
        out.append((name, position))
    return out


def _entries(source: redis.Redis, stream: str) -> Iterator[tuple[str, dict[str, str]]]:
    start = "-"
    while True:
        batch = source.xrange(stream, start, "+", count=_BATCH)
        for entry_id, fields in batch:
            yield _text(entry_id), {_text(k): _text(v) for k, v in fields.items()}
        if len(batch) < _BATCH:
            return
        start = f"({_text(batch[-1][0])}"


def _split_stream(
    source: redis.Redis, target: redis.Redis, stream: str, keyspace: Keyspace, where: Callable[[Shard], str]
) -> int:
    copied = 0
    write = target.pipeline(transaction=False)
    for entry_id, fields in _entries(source, stream):
        write.xadd(where(keyspace.of_tenant(fields.get("tenant_id") or None)), fields, id=entry_id)
        copied += 1
        if copied % _BATCH == 0:
            write.execute()
            write = target.pipeline(transaction=False)
    write.execute()
    return copied


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m aerie.migrate", description=__doc__.split("\n\n")[0])
    p.add_argument("--from", dest="source", default=os.environ.get("AERIE_MIGRATE_FROM"), help="the single node's URL")
    p.add_argument("--to", dest="target", default=os.environ.get("AERIE_MIGRATE_TO"), help="a cluster seed's URL")
    p.add_argument("--shards", type=int, default=16, help="AERIE_REDIS_SHARDS of the services afterwards (16)")
    p.add_argument("--dry-run", action="store_true", help="say what would be copied, copy nothing")
    args = p.parse_args(argv)
    if not args.source or not args.target:
        p.error("give --from and --to (or AERIE_MIGRATE_FROM and AERIE_MIGRATE_TO)")
    try:
        keyspace = Keyspace(args.shards)
        migrate(_connect(args.source), _connect(args.target), keyspace, dry_run=args.dry_run, echo=print)
    except (MigrationError, ValueError, redis.RedisError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
