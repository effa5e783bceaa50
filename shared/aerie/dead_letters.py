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
from aerie.i18n import msg
from aerie.keyspace import Shard
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
    """The dead-letter streams of one deployment, as an operator sees them.

    Unsharded, a letter's id is its entry id in ``aerie:events:dead``. Sharded
    (:mod:`aerie.keyspace`), each stream shard has its dead letters beside it, in its slot
    (burying is one ``MULTI`` with the acknowledgement), and a letter's id is
    ``<shard>.<entry id>``; lists go shard by shard, each oldest first.
    """

    redis: RedisProvider

    @property
    def _shards(self) -> tuple[Shard, ...]:
        return self.redis.keyspace.shards

    def count(self) -> int:
        r = self.redis.client
        return sum(int(r.xlen(shard.dead_letters)) for shard in self._shards)

    def list(self, *, limit: int, cursor: str | None = None, group: str | None = None) -> Page:
        """Letters oldest first; ``group`` keeps those one consumer group gave up on."""
        first, start = 0, "-"
        if cursor:
            after = decode_cursor(cursor, "after")
            try:
                shard, entry_id = self._locate(after)
            except LetterNotFound:
                raise errors.validation_error(
                    [{"field": "cursor", "message": msg("is not a cursor this list issued")}]
                ) from None
            first, start = shard.index, f"({entry_id}"
        items: list[dict[str, Any]] = []
        for shard in self._shards[first:]:
            # Read past other groups' letters in batches, so a page is full when it can be.
            while True:
                batch = self.redis.client.xrange(shard.dead_letters, start, "+", count=_BATCH)
                for entry_id, fields in batch:
                    if group is not None and fields.get("group") != group:
                        continue
                    if len(items) == limit:
                        return Page(items, encode_cursor({"after": items[-1]["id"]}))
                    items.append(_letter(self._id(shard, entry_id), fields))
                if len(batch) < _BATCH:
                    break
                start = f"({batch[-1][0]}"
            start = "-"
        return Page(items, None)

    def get(self, letter_id: str) -> dict[str, Any]:
        shard, entry_id = self._locate(letter_id)
        return _letter(letter_id, self._fields(self.redis.client, shard, entry_id))

    def replay(self, letter_id: str) -> str:
        """Put the letter's original entry back on its stream; its new entry id."""
        shard, entry_id = self._locate(letter_id)
        r = self.redis.client
        with r.pipeline(transaction=True) as pipe:
            while True:
                try:
                    pipe.watch(shard.dead_letters)
                    fields = self._fields(pipe, shard, entry_id)
                    original = {k: v for k, v in fields.items() if k not in LETTER_FIELDS}
                    pipe.multi()
                    pipe.xadd(shard.stream, original)
                    pipe.xdel(shard.dead_letters, entry_id)
                    new_id, _deleted = pipe.execute()
                    self.redis.replicated(shard.stream)
                    return str(new_id)
                except redis.WatchError:
                    continue  # another letter was buried or replayed meanwhile: look again

    def discard(self, letter_id: str) -> None:
        """Forget the letter, for an event no consumer should ever handle."""
        shard, entry_id = self._locate(letter_id)
        if not self.redis.client.xdel(shard.dead_letters, entry_id):
            raise LetterNotFound(letter_id)

    def _id(self, shard: Shard, entry_id: str) -> str:
        return f"{shard.index}.{entry_id}" if self.redis.keyspace.sharded else entry_id

    def _locate(self, letter_id: str) -> tuple[Shard, str]:
        """The shard and entry id a letter id names; LetterNotFound when it names none."""
        index, entry_id = 0, letter_id
        if self.redis.keyspace.sharded:
            head, _, entry_id = letter_id.partition(".")
            if not head.isdigit() or int(head) >= len(self._shards):
                raise LetterNotFound(letter_id)
            index = int(head)
        if not _ENTRY_ID.match(entry_id):
            raise LetterNotFound(letter_id)
        return self._shards[index], entry_id

    def _fields(self, client: Any, shard: Shard, entry_id: str) -> dict[str, str]:
        found = client.xrange(shard.dead_letters, entry_id, entry_id)
        if not found:
            raise LetterNotFound(entry_id)
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
