"""Rendered newest-first pages, kept briefly in the process that rendered them.

A trail is append-only: once recorded, the entries at and below a given head never change
(retention only removes from the old end, and moves the checkpoint when it does). So the
page of ``limit`` entries below head ``top`` with checkpoint ``cp`` is the same bytes for
as long as those three numbers are, and a reader that has just fetched the head (one small
``HMGET``) can answer from here instead of fetching ~30 KB of entries again. Any append
moves the head and so changes the key; nothing needs invalidating.

The one way a page could go stale is an entry changed behind the service's back, directly
in Redis; ``ttl_s`` bounds how long a cached page can hide that from a listing (verify
always reads Redis, so it reports the change at once). Memory is bounded by ``max_pages``
(64 pages of 50 entries is about 2 MB).
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable

__all__ = ["PageKey", "TrailPageCache"]

#: (trail id, top seq, checkpoint seq, limit)
PageKey = tuple[str, int, int, int]


class TrailPageCache:
    def __init__(self, max_pages: int = 64, ttl_s: float = 2.0, clock: Callable[[], float] = time.monotonic) -> None:
        self._max = max_pages
        self._ttl = ttl_s
        self._clock = clock
        self._lock = threading.Lock()
        self._pages: OrderedDict[PageKey, tuple[float, bytes]] = OrderedDict()

    def get(self, key: PageKey) -> bytes | None:
        with self._lock:
            hit = self._pages.get(key)
            if hit is None:
                return None
            if self._clock() - hit[0] > self._ttl:
                del self._pages[key]
                return None
            self._pages.move_to_end(key)
            return hit[1]

    def put(self, key: PageKey, page: bytes) -> None:
        with self._lock:
            self._pages[key] = (self._clock(), page)
            self._pages.move_to_end(key)
            while len(self._pages) > self._max:
                self._pages.popitem(last=False)
