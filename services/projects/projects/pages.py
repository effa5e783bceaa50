"""List pages: the stored JSON documents of one page, and this process's copies of recent ones.

A page of 50 is the hot read of this service. Reading it costs Redis a script that walks the
index and copies 50 documents out (~80 us of its CPU), and the worker as much again to parse
them; most pages are read many times between two writes. :class:`ProjectPageCache` keeps the
pages a process served, each with the tenant's *lists version* it was read at.
:meth:`~projects.storage.ProjectRepository.list` sends the version it holds with the page
query, and the script answers "unchanged" instead of the page when it still matches.

Every project write sets the tenant's lists version to a value never used before (its
event's id) in the same ``MULTI`` as the write, so "unchanged" is exact: a cached page is
what a fresh read would return, in every process and instance, right after any write.
"""

from __future__ import annotations

import functools
import threading
from dataclasses import dataclass

import orjson
from cachetools import LRUCache

__all__ = ["DEFAULT_MAX_BYTES", "JsonPage", "ProjectPageCache"]

#: What one process keeps at most (``AERIE_PAGE_CACHE_BYTES``): about 90 pages of 50 typical projects.
DEFAULT_MAX_BYTES = 4 * 1024 * 1024


@dataclass(frozen=True)
class JsonPage:
    """A page of stored documents, kept as the JSON they are stored as."""

    items: list[str]
    next_cursor: str | None

    @functools.cached_property
    def encoded(self) -> bytes:
        return (
            b'{"items":[' + ",".join(self.items).encode() + b'],"next_cursor":' + orjson.dumps(self.next_cursor) + b"}"
        )

    def body(self) -> bytes:
        """``{"items": [...], "next_cursor": ...}``, the contract's list body, as UTF-8 JSON."""
        return self.encoded


PageKey = tuple[str, str, int]


class ProjectPageCache:
    """Recently served pages by (index key, start, limit), with the lists version of each.

    Thread-safe, bounded by the bytes a page holds (its documents and its encoded body); a
    page larger than an eighth of the bound is not kept. The index key names the tenant
    (``projects:{<tenant>}:...``), so one tenant's entry can never answer another's query.
    """

    def __init__(self, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self._max_page = max_bytes // 8
        self._pages: LRUCache[PageKey, tuple[str, JsonPage]] = LRUCache(
            maxsize=max_bytes, getsizeof=lambda entry: _footprint(entry[1])
        )
        self._lock = threading.Lock()

    def get(self, key: PageKey) -> tuple[str, JsonPage] | None:
        """The lists version and page kept for ``key``, if any."""
        with self._lock:
            return self._pages.get(key)

    def put(self, key: PageKey, version: str, page: JsonPage) -> None:
        if not version or _footprint(page) > self._max_page:
            return
        with self._lock:
            self._pages[key] = (version, page)

    def __len__(self) -> int:
        return len(self._pages)


def _footprint(page: JsonPage) -> int:
    """What a kept page holds: its documents, and the body encoded from them."""
    return sum(map(len, page.items)) + len(page.body())
