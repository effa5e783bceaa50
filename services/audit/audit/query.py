"""Reading a trail: filters, newest-first pages with cursors, and chain-order scans for export.

There are no secondary indexes: a trail is a gapless run of seqs, so the newest page is the
head (one small ``HMGET``) and one ``HMGET`` of ``limit + 1`` seqs below it, whatever the
trail's size; while the head has not moved, the rendered page comes from
:class:`audit.page_cache.TrailPageCache` and the entries are not fetched again. Filters are
applied while scanning newest-first in chunks; one page scans at most :data:`SCAN_BUDGET`
entries. A page that exhausts the budget before filling up comes back short (possibly
empty) with a ``next_cursor`` where the scan stopped, so a rare match deep in a large trail
costs the client several requests rather than the server one unbounded one. ``since`` and
``until`` compare ``occurred_at`` (which, unlike ``recorded_at``, need not follow seq order,
so they narrow results but cannot end a scan early).

Cursors (:mod:`aerie.pagination`) hold the trail id and the seq to continue below; one
issued for another trail is refused as a foreign cursor (422 on ``cursor``).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

from aerie import errors
from aerie.pagination import decode_cursor, encode_cursor
from audit.page_cache import TrailPageCache
from audit.trail import Trail

__all__ = ["SCAN_BUDGET", "Filters", "chain_order", "newest_first_page"]

#: The most entries one filtered page examines.
SCAN_BUDGET = 5000
_FILTER_CHUNK = 200
_SEQ = re.compile(r"^[1-9][0-9]{0,17}$")


def _parse_time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))


@dataclass(frozen=True)
class Filters:
    """The query's filters; ``action`` ending in ``.*`` matches every action under that prefix."""

    action: str | None = None
    actor_id: str | None = None
    target_type: str | None = None
    target_id: str | None = None
    since: datetime | None = None
    until: datetime | None = None

    @classmethod
    def from_query(cls, query: Mapping[str, Any]) -> Filters:
        """From a validated query; ``since`` after ``until`` is a 422."""
        since = _parse_time(query["since"]) if query.get("since") else None
        until = _parse_time(query["until"]) if query.get("until") else None
        if since and until and since > until:
            raise errors.validation_error([{"field": "until", "message": "must not be before since"}])
        return cls(
            action=query.get("action"),
            actor_id=query.get("actor_id"),
            target_type=query.get("target_type"),
            target_id=query.get("target_id"),
            since=since,
            until=until,
        )

    @property
    def empty(self) -> bool:
        return not any((self.action, self.actor_id, self.target_type, self.target_id, self.since, self.until))

    def matches(self, entry: Mapping[str, Any]) -> bool:
        """``since`` is inclusive, ``until`` exclusive."""
        if self.action is not None:
            action = entry.get("action") or ""
            if self.action.endswith(".*"):
                if not action.startswith(self.action[:-1]):
                    return False
            elif action != self.action:
                return False
        if self.actor_id is not None and (entry.get("actor") or {}).get("id") != self.actor_id:
            return False
        target = entry.get("target") or {}
        if self.target_type is not None and target.get("type") != self.target_type:
            return False
        if self.target_id is not None and target.get("id") != self.target_id:
            return False
        if self.since is not None or self.until is not None:
            occurred = _parse_time(entry["occurred_at"])
            if self.since is not None and occurred < self.since:
                return False
            if self.until is not None and occurred >= self.until:
                return False
        return True


def _cursor_position(trail: Trail, cursor: str) -> int:
    position = decode_cursor(cursor, "trail", "before")
    before = position["before"]
    if position["trail"] != trail.name or not _SEQ.match(before):
        raise errors.validation_error([{"field": "cursor", "message": "is not a cursor this list issued"}])
    return int(before)


def newest_first_page(
    trail: Trail, filters: Filters, limit: int, cursor: str | None, cache: TrailPageCache | None = None
) -> bytes:
    """The page as the JSON body ``{"items": [...], "next_cursor": ...}``."""
    top = _cursor_position(trail, cursor) - 1 if cursor else None
    if filters.empty:
        head, cp_seq = trail.head()
        start = head if top is None else min(top, head)
        key = (trail.name, start, cp_seq, limit)
        if cache is not None and (hit := cache.get(key)) is not None:
            return hit
        seqs = list(range(start, max(start - limit - 1, cp_seq), -1))
        present = [(seq, raw) for seq, raw in zip(seqs, trail.raw(seqs), strict=True) if raw is not None]
        page = present[:limit]
        more = len(present) > limit
        body = _body([raw for _, raw in page], _cursor(trail, page[-1][0]) if more and page else None)
        if cache is not None:
            cache.put(key, body)
        return body
    state = trail.state()
    start = state.head_seq if top is None else min(top, state.head_seq)
    first = state.first_seq
    items: list[str] = []
    last_match = 0
    for scanned, (seq, raw) in enumerate(trail.descending(start, first, chunk=_FILTER_CHUNK), start=1):
        if raw is not None and filters.matches(orjson.loads(raw)):
            if len(items) == limit:  # one more match than the page: there is a next page
                return _body(items, _cursor(trail, last_match))
            items.append(raw)
            last_match = seq
        if scanned >= SCAN_BUDGET and seq > first:
            return _body(items, _cursor(trail, seq))
    return _body(items, None)


def _body(items: list[str], next_cursor: str | None) -> bytes:
    """The list body from the entries' stored JSON as it is (no parse, no re-dump)."""
    return f'{{"items":[{",".join(items)}],"next_cursor":{orjson.dumps(next_cursor).decode()}}}'.encode()


def _cursor(trail: Trail, before: int | None) -> str | None:
    return None if before is None else encode_cursor({"trail": trail.name, "before": str(before)})


def chain_order(trail: Trail, filters: Filters) -> Iterator[str]:
    """The stored JSON of every retained entry that matches, oldest first.

    The range is read now, before anything streams, so Redis being away is still a 503
    rather than a truncated 200; entries appended later belong to the next export. Memory
    stays at one chunk whatever the trail's size.
    """
    state = trail.state()

    def scan() -> Iterator[str]:
        for _seq, raw in trail.ascending(state.first_seq, state.head_seq):
            if raw is None:  # removed by retention during the scan
                continue
            if filters.empty or filters.matches(orjson.loads(raw)):
                yield raw

    return scan()
