"""Audit ingestion: events published to the durable stream until their entries are queryable.

    python bench/audit_ingest.py [--events 20000] [--rate 500] [--seconds 10]

Starts Redis, tenants and audit on free ports (or uses a running stack when
``AERIE_TENANTS_URL``, ``AERIE_AUDIT_URL``, ``REDIS_URL`` and the bootstrap client are set,
as in ``.aerie/local.env``), then measures, in one run:

1. **baseline**: how fast this machine's Redis takes the same events with raw pipelined
   ``XADD`` to a scratch stream (the ceiling no consumer can beat);
2. **throughput**: ``--events`` events across 20 tenants published as fast as possible,
   timed from the first publish until every entry is recorded (each trail's head seq,
   polled every 10 ms): events/s end to end. Target: at least 2,000/s;
3. **lag**: events published at ``--rate`` per second for ``--seconds``, each entry's lag
   being its ``recorded_at`` minus its event's ``occurred_at`` (both stamped on this
   machine's clock; ``recorded_at`` is taken just before the entry's transaction commits).
   Target: p99 under 1 s at 500 events/s;

and checks through the API that every trail it wrote verifies. Prints a table and writes
``bench/results/audit-ingest-<timestamp>.json``.
"""

from __future__ import annotations

import argparse
import json
import secrets
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
sys.path.insert(0, str(BENCH.parent / "shared"))

import redis  # noqa: E402
from load import percentile  # noqa: E402
from run import BenchError, Context, aerie_stack, git_commit, platform_token  # noqa: E402

from aerie.events import EventContext, EventPublisher, new_event  # noqa: E402
from aerie.keyspace import Keyspace  # noqa: E402

TARGET_EVENTS_PER_S = 2000.0
#: On a local Redis Cluster (issue 21): the consumer reads 16 shards, each read pipelined.
TARGET_CLUSTER_EVENTS_PER_S = 3000.0
TARGET_LAG_P99_MS = 1000.0
CTX = EventContext({"type": "client", "id": "cli_bench", "client_id": "cli_bench"}, "req-bench", "10.0.0.9", "bench/1")


def _events(tenants: list[str], n: int) -> list[dict[str, Any]]:
    return [
        new_event("project.updated", tenants[i % len(tenants)], {"project": {"id": f"prj_{i}", "name": "bench"}}, CTX)
        for i in range(n)
    ]


def _publish(r: redis.Redis, events: list[dict[str, Any]], publisher: EventPublisher) -> None:
    pipe = r.pipeline(transaction=False)
    for e in events:
        publisher.add(pipe, e)
    pipe.execute()


def _recorded(r: redis.Redis, tenants: list[str]) -> int:
    pipe = r.pipeline(transaction=False)
    for t in tenants:
        pipe.hget(f"audit:{{{t}}}:meta", "seq")
    return sum(int(v or 0) for v in pipe.execute())


def _wait_recorded(r: redis.Redis, tenants: list[str], n: int, timeout: float) -> float:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _recorded(r, tenants) >= n:
            return time.monotonic()
        time.sleep(0.01)
    raise BenchError(f"only {_recorded(r, tenants)} of {n} events were recorded within {timeout:g}s")


def baseline_xadd(r: redis.Redis, n: int) -> float:
    """Events/s of raw pipelined XADD (with the pub/sub PUBLISH every event gets) to a scratch stream."""
    scratch = f"bench:xadd:{secrets.token_hex(4)}"
    publisher = EventPublisher(stream=scratch)
    events = _events([f"ten_x{i}" for i in range(20)], n)
    started = time.monotonic()
    for i in range(0, n, 500):
        _publish(r, events[i : i + 500], publisher)
    elapsed = time.monotonic() - started
    r.delete(scratch)
    return n / elapsed


def throughput(r: redis.Redis, n: int, keyspace: Keyspace) -> tuple[float, float, list[str]]:
    tenants = [f"ten_bench{secrets.token_hex(5)}" for _ in range(20)]
    events = _events(tenants, n)
    publisher = EventPublisher(keyspace)
    started = time.monotonic()
    for i in range(0, n, 500):
        _publish(r, events[i : i + 500], publisher)
    published = time.monotonic()
    done = _wait_recorded(r, tenants, n, timeout=max(60.0, n / 200))
    return n / (done - started), n / (published - started), tenants


def lag(r: redis.Redis, rate: float, seconds: float, keyspace: Keyspace) -> tuple[list[float], list[str]]:
    tenants = [f"ten_lag{secrets.token_hex(5)}" for _ in range(10)]
    publisher = EventPublisher(keyspace)
    tick = 0.01
    started = time.monotonic()
    sent = 0
    while (now := time.monotonic()) - started < seconds:
        owed = rate * (now - started) - sent
        if owed >= 1:
            k = int(owed)
            _publish(r, _events(tenants, k), publisher)
            sent += k
        time.sleep(max(0.0, tick - (time.monotonic() - now)))
    _wait_recorded(r, tenants, sent, timeout=60)
    lags: list[float] = []
    for t in tenants:
        for raw in r.hvals(f"audit:{{{t}}}:entries"):
            entry = json.loads(raw)
            occurred = datetime.fromisoformat(entry["occurred_at"].replace("Z", "+00:00"))
            recorded = datetime.fromisoformat(entry["recorded_at"].replace("Z", "+00:00"))
            lags.append((recorded - occurred).total_seconds() * 1000)
    return sorted(lags), tenants


def verify_trails(ctx: Context, tenants: list[str]) -> list[str]:
    """The trails whose chain does not verify through the API (should be none)."""
    headers = {"Authorization": f"Bearer {ctx.vars['token']}"}
    bad = []
    for t in tenants:
        result = ctx.call("audit", "GET", f"/v1/audit/verify?tenant_id={t}", headers=headers, expect=(200,))
        if not result["valid"]:
            bad.append(t)
    return bad


def measure(args: argparse.Namespace, env: Mapping[str, str], echo: Callable[[str], None]) -> dict[str, Any]:
    if "REDIS_URL" not in env:
        raise BenchError("REDIS_URL is needed to publish events (it is in .aerie/local.env)")
    cluster = env.get("AERIE_REDIS_CLUSTER") == "true"
    # The services' layout: 16 stream shards on a cluster (their default), one stream otherwise.
    keyspace = Keyspace(int(env.get("AERIE_REDIS_SHARDS", "16" if cluster else "0")))
    client = redis.RedisCluster if cluster else redis.Redis
    r = client.from_url(env["REDIS_URL"], decode_responses=True)
    urls = {k[len("AERIE_") : -len("_URL")].lower(): v.rstrip("/") for k, v in env.items() if k.endswith("_URL")}
    ctx = Context(urls)
    ctx.vars["token"] = platform_token(ctx, env["AERIE_BOOTSTRAP_CLIENT_ID"], env["AERIE_BOOTSTRAP_CLIENT_SECRET"])
    ctx.call("audit", "GET", "/ready", expect=(200,))
    echo(f"baseline: raw pipelined XADD of {args.events} events ...")
    xadd_rate = baseline_xadd(r, args.events)
    echo(f"throughput: {args.events} events published at once, until all are recorded ...")
    ingest_rate, publish_rate, t_tenants = throughput(r, args.events, keyspace)
    echo(f"lag: {args.rate:g} events/s for {args.seconds:g}s ...")
    lags, l_tenants = lag(r, args.rate, args.seconds, keyspace)
    bad = verify_trails(ctx, t_tenants + l_tenants)
    return {
        "xadd_events_per_s": xadd_rate,
        "publish_events_per_s": publish_rate,
        "ingest_events_per_s": ingest_rate,
        "lag_events": len(lags),
        "lag_p50_ms": percentile(lags, 50),
        "lag_p99_ms": percentile(lags, 99),
        "lag_max_ms": lags[-1] if lags else 0.0,
        "invalid_trails": bad,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--events", type=int, default=20_000, help="events for the throughput run (default 20000)")
    p.add_argument("--rate", type=float, default=500.0, help="events/s of the lag run (default 500)")
    p.add_argument("--seconds", type=float, default=10.0, help="length of the lag run (default 10)")
    p.add_argument("--results-dir", type=Path, default=BENCH / "results")
    p.add_argument("--redis-cluster", action="store_true", help="the stack on a local Redis Cluster (3+3 nodes)")
    args = p.parse_args(argv)

    def echo(msg: str) -> None:
        print(msg, flush=True)

    started = datetime.now(UTC)
    try:
        with (
            tempfile.TemporaryDirectory(prefix="aerie-bench-") as tmp,
            aerie_stack(["audit"], Path(tmp), echo, redis_cluster=args.redis_cluster) as env,
        ):
            result = measure(args, env, echo)
    except RuntimeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    target = TARGET_CLUSTER_EVENTS_PER_S if args.redis_cluster else TARGET_EVENTS_PER_S
    ok_rate = result["ingest_events_per_s"] >= target
    ok_lag = result["lag_p99_ms"] < TARGET_LAG_P99_MS
    echo("")
    echo(f"{'measure':<40}{'value':>12}  target  (timestamps have millisecond precision)")
    echo(f"{'XADD, scratch stream (baseline)':<40}{result['xadd_events_per_s']:>10.0f}/s  -")
    echo(f"{'XADD, aerie:events (while audit reads)':<40}{result['publish_events_per_s']:>10.0f}/s  -")
    verdict = "PASS" if ok_rate else "MISS"
    echo(f"{'ingest, published -> recorded':<40}{result['ingest_events_per_s']:>10.0f}/s  >={target:.0f}/s {verdict}")
    ratio = result["ingest_events_per_s"] / result["xadd_events_per_s"]
    echo(f"{'  ratio to the baseline':<40}{ratio:>11.1%}")
    echo(f"{'lag p50 at ' + format(args.rate, 'g') + '/s':<40}{result['lag_p50_ms']:>10.1f}ms")
    verdict = "PASS" if ok_lag else "MISS"
    echo(f"{'lag p99 at ' + format(args.rate, 'g') + '/s':<40}{result['lag_p99_ms']:>10.1f}ms  <1000ms {verdict}")
    echo(f"{'lag max':<40}{result['lag_max_ms']:>10.1f}ms")
    echo(
        f"chains verified through the API: {'all valid' if not result['invalid_trails'] else result['invalid_trails']}"
    )
    args.results_dir.mkdir(parents=True, exist_ok=True)
    out = args.results_dir / f"audit-ingest-{started:%Y%m%dT%H%M%SZ}.json"
    settings = {"events": args.events, "rate": args.rate, "seconds": args.seconds}
    out.write_text(json.dumps({"started": started.isoformat(), "commit": git_commit(), **settings, **result}, indent=2))
    echo(f"results: {out}")
    return 0 if not result["invalid_trails"] else 1


if __name__ == "__main__":
    sys.exit(main())
