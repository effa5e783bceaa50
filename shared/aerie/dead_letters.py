"""The dead letters: poison events an operator lists, replays into the stream, or discards.

A consumer group that fails to handle an event ``max_deliveries`` times moves it to
:data:`aerie.events.DEAD_LETTER_STREAM` (:class:`aerie.events.StreamConsumer`), so the events
behind it keep flowing. Once the cause is fixed (a bug deployed away, a peer back), an
operator replays it: the original entry goes back onto the event stream as a new entry and
leaves the dead letters, in one transaction, so a letter is replayed once however many
operators press the button.

A replayed event reaches every group again, not only the one that failed. The others skip
it: per-event consumers keep a processed marker per event id for a week (``processed_ttl_s``)
and audit lands each event id once. Replaying a letter older than that week can make a
per-event group apply it a second time; their handlers apply state by revision, so that is
a no-op for flags and projects, but the list shows ``dead_at`` so an operator can tell.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

import redis

from aerie import errors
from aerie.events import DEAD_LETTER_STREAM, STREAM_KEY
from aerie.i18n import msg
from aerie.pagination import Page, decode_cursor, encode_cursor
from aerie.redis import RedisProvider

__all__ = ["LETTER_FIELDS", "DeadLetters", "LetterNotFound"]

#: The fields the consumer adds to an entry when it buries it; everything else is the
#: original entry, which a replay puts back as it was.
LETTER_FIELDS = ("group", "entry_id", "deliveries", "dead_at")
#: A stream entry id: what a letter's id must look like before it reaches Redis.
_ENTRY_ID = re.compile(r"\A[0-9]{1,20}-[0-9]{1,20}\Z")
_BATCH = 200


class LetterNotFound(LookupError):
    """No dead letter has this id (never had, or it was replayed or discarded)."""


@dataclass(frozen=True)
class DeadLetters:
    """The dead-letter stream of one Redis, as an operator sees it."""

    redis: RedisProvider
    stream: str = STREAM_KEY
    dead: str = DEAD_LETTER_STREAM

    def count(self) -> int:
        return int(self.redis.client.xlen(self.dead))

    def list(self, *, limit: int, cursor: str | None = None, group: str | None = None) -> Page:
        """Letters oldest first; ``group`` keeps those one consumer group gave up on."""
        start = "-"
        if cursor:
            after = decode_cursor(cursor, "after")
            if not _ENTRY_ID.match(after):
                raise errors.validation_error([{"field": "cursor", "message": msg("is not a cursor this list issued")}])
            start = f"({after}"
        items: list[dict[str, Any]] = []
        # Read past other groups' letters in batches, so a page is full when it can be.
        while True:
            batch = self.redis.client.xrange(self.dead, start, "+", count=_BATCH)
            for letter_id, fields in batch:
                if group is not None and fields.get("group") != group:
                    continue
                if len(items) == limit:
                    return Page(items, encode_cursor({"after": items[-1]["id"]}))
                items.append(_letter(letter_id, fields))
            if len(batch) < _BATCH:
                return Page(items, None)
            start = f"({batch[-1][0]}"

    def get(self, letter_id: str) -> dict[str, Any]:
        return _letter(letter_id, self._fields(self.redis.client, letter_id))

    def replay(self, letter_id: str) -> str:
        """Put the letter's original entry back on the event stream; its new entry id."""
        r = self.redis.client
        with r.pipeline(transaction=True) as pipe:
            while True:
                try:
                    pipe.watch(self.dead)
                    fields = self._fields(pipe, letter_id)
                    original = {k: v for k, v in fields.items() if k not in LETTER_FIELDS}
                    pipe.multi()
                    pipe.xadd(self.stream, original)
                    pipe.xdel(self.dead, letter_id)
                    new_id, _deleted = pipe.execute()
                    return str(new_id)
                except redis.WatchError:
                    continue  # another letter was buried or replayed meanwhile: look again

    def discard(self, letter_id: str) -> None:
        """Forget the letter, for an event no consumer should ever handle."""
        if not _ENTRY_ID.match(letter_id) or not self.redis.client.xdel(self.dead, letter_id):
            raise LetterNotFound(letter_id)

    def _fields(self, client: Any, letter_id: str) -> dict[str, str]:
        if not _ENTRY_ID.match(letter_id):
            raise LetterNotFound(letter_id)
        found = client.xrange(self.dead, letter_id, letter_id)
        if not found:
            raise LetterNotFound(letter_id)
        return dict(found[0][1])


def _letter(letter_id: str, fields: dict[str, str]) -> dict[str, Any]:
    raw = fields.get("event")
    try:
        event = json.loads(raw) if raw is not None else None
    except ValueError:
        event = None
    try:
        deliveries = int(fields.get("deliveries", "0"))
    except ValueError:
        deliveries = 0
    return {
        "id": letter_id,
        "group": fields.get("group"),
        "entry_id": fields.get("entry_id"),
        "deliveries": deliveries,
        "dead_at": fields.get("dead_at"),
        # What the stream held: the event as it was published, or its raw text when it was
        # never valid JSON (the reason it could be poison in the first place).
        "event": event if isinstance(event, dict) else None,
        "raw": None if isinstance(event, dict) else raw,
    }
