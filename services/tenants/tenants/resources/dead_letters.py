"""``/v1/platform/dead-letters``: poison events, for the platform's operators (:mod:`aerie.dead_letters`)."""

from __future__ import annotations

import logging
from typing import Any

import falcon

from aerie import errors
from aerie.dead_letters import DeadLetters, LetterNotFound
from aerie.endpoints import endpoint
from aerie.i18n import msg
from aerie.pagination import page_schema
from aerie.validation import LIST_QUERY

ADMIN = ("platform:admin",)
READ = ("platform:read",)

log = logging.getLogger("aerie.events")

LETTER: dict[str, Any] = {
    "id": {"type": "string"},
    "group": {"type": "string", "nullable": True},
    "entry_id": {"type": "string", "nullable": True},
    "deliveries": {"type": "integer"},
    "dead_at": {"type": "string", "nullable": True},
    "event": {"type": "dict", "nullable": True},
    "raw": {"type": "string", "nullable": True},
}
LIST: dict[str, Any] = {**LIST_QUERY, "group": {"type": "string", "maxlength": 200, "empty": False}}
REPLAYED: dict[str, Any] = {"id": {"type": "string"}, "replayed_as": {"type": "string"}}
_GONE = {404: "No dead letter has this id (it may have been replayed or discarded)"}


def _letter_gone() -> errors.Problem:
    return errors.not_found(msg("No dead letter has this id: it may have been replayed or discarded."))


class DeadLetterCollection:
    def __init__(self, letters: DeadLetters) -> None:
        self._letters = letters

    @endpoint(
        "List the events a consumer group gave up on, oldest first",
        scopes=READ,
        query=LIST,
        response=page_schema(LETTER),
    )
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        q = req.context.query
        resp.media = self._letters.list(limit=q["limit"], cursor=q.get("cursor"), group=q.get("group")).as_body()


class DeadLetterItem:
    def __init__(self, letters: DeadLetters) -> None:
        self._letters = letters

    @endpoint("Get one dead letter", scopes=READ, response=LETTER, responses=_GONE)
    def on_get(self, req: falcon.Request, resp: falcon.Response, letter_id: str) -> None:
        try:
            resp.media = self._letters.get(letter_id)
        except LetterNotFound:
            raise _letter_gone() from None

    @endpoint("Discard a dead letter no consumer should ever handle", scopes=ADMIN, status=204, responses=_GONE)
    def on_delete(self, req: falcon.Request, resp: falcon.Response, letter_id: str) -> None:
        try:
            self._letters.discard(letter_id)
        except LetterNotFound:
            raise _letter_gone() from None
        log.warning("dead letter discarded", extra={"letter_id": letter_id, "actor": req.context.principal.subject})
        resp.status = 204


class DeadLetterReplay:
    def __init__(self, letters: DeadLetters) -> None:
        self._letters = letters

    @endpoint(
        "Put a dead letter back on the event stream, once",
        scopes=ADMIN,
        response=REPLAYED,
        description="Every consumer group sees the event again; those that handled it already skip it.",
        responses=_GONE,
    )
    def on_post(self, req: falcon.Request, resp: falcon.Response, letter_id: str) -> None:
        try:
            new_id = self._letters.replay(letter_id)
        except LetterNotFound:
            raise _letter_gone() from None
        log.warning(
            "dead letter replayed",
            extra={"letter_id": letter_id, "entry_id": new_id, "actor": req.context.principal.subject},
        )
        resp.media = {"id": letter_id, "replayed_as": new_id}
