"""Rendered pages are reused only while the trail's head and checkpoint stay where they were."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from audittest import TEN_A, event, ingest

from audit.ingest import Ingestor
from audit.page_cache import TrailPageCache
from audit.query import Filters, newest_first_page
from audit.retention import Retention
from audit.trail import Trail


def seqs(body: bytes) -> list[int]:
    return [e["seq"] for e in json.loads(body)["items"]]


def test_a_cached_page_is_served_until_the_head_moves(redis_provider):
    ingest(redis_provider, [event("project.created", TEN_A, {"project": {"id": f"p{i}"}}) for i in range(5)])
    trail, cache = Trail(redis_provider, TEN_A), TrailPageCache()
    first = newest_first_page(trail, Filters(), 3, None, cache)
    assert seqs(first) == [5, 4, 3]
    assert cache.get((TEN_A, 5, 0, 3)) == first
    assert newest_first_page(trail, Filters(), 3, None, cache) is first  # no entries fetched again
    ingest(redis_provider, [event("project.deleted", TEN_A, {"project": {"id": "p0"}})])
    assert seqs(newest_first_page(trail, Filters(), 3, None, cache)) == [6, 5, 4]


def test_a_trim_changes_the_key(redis_provider):
    old = datetime(2026, 1, 1, tzinfo=UTC)
    stamp = old.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    Ingestor(redis_provider, clock=lambda: stamp)([(str(i), event("x.y", TEN_A)) for i in range(3)])
    trail, cache = Trail(redis_provider, TEN_A), TrailPageCache()
    assert seqs(newest_first_page(trail, Filters(), 10, None, cache)) == [3, 2, 1]
    Retention(redis_provider, 1, clock=lambda: old + timedelta(days=30)).sweep()
    assert seqs(newest_first_page(trail, Filters(), 10, None, cache)) == []


def test_pages_expire_and_the_cache_is_bounded():
    now = [0.0]
    cache = TrailPageCache(max_pages=2, ttl_s=2.0, clock=lambda: now[0])
    cache.put(("t", 1, 0, 50), b"a")
    cache.put(("t", 2, 0, 50), b"b")
    assert cache.get(("t", 1, 0, 50)) == b"a"
    cache.put(("t", 3, 0, 50), b"c")  # evicts the least recently used: seq 2
    assert cache.get(("t", 2, 0, 50)) is None and cache.get(("t", 1, 0, 50)) == b"a"
    now[0] = 2.5
    assert cache.get(("t", 3, 0, 50)) is None
