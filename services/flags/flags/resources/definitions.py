"""``/v1/flags`` and ``/v1/flags/{key}``: definitions, written by platform admins and read by any
platform person (``platform:read``, the platform-viewer, reads them too)."""

from __future__ import annotations

from datetime import UTC

import falcon

from aerie import errors
from aerie.endpoints import endpoint
from aerie.events import EventContext
from aerie.pagination import page_schema
from aerie.versioning import expected_version, set_etag
from aerie_client.flags.operators import parse_timestamp
from flags import schemas
from flags.domain import check_definition, is_key
from flags.snapshot import FlagReplica
from flags.storage import FlagStore

ADMIN = ("platform:admin",)
#: Any one admits: a platform-viewer reads definitions, and only platform-admin changes them.
READ = ("platform:admin", "platform:read")


def as_utc(timestamp: str, field: str) -> str:
    """An RFC 3339 time as stored times are written: UTC, milliseconds, ``Z``; else a 422."""
    moment = parse_timestamp(timestamp)
    if moment is None:
        raise errors.validation_error([{"field": field, "message": "must be an RFC 3339 time with a time zone"}])
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class FlagCollection:
    def __init__(self, store: FlagStore) -> None:
        self._store = store

    @endpoint(
        "List flag definitions, by key",
        scopes=READ,
        query=schemas.FLAG_LIST_QUERY,
        response=page_schema(schemas.FLAG),
    )
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        q = req.context.query
        since = q.get("unused_since")
        unused_since = None if since is None else as_utc(since, "unused_since")
        resp.media = self._store.list(limit=q["limit"], cursor=q.get("cursor"), unused_since=unused_since).as_body()


class FlagItem:
    def __init__(self, store: FlagStore, snapshot: FlagReplica) -> None:
        self._store = store
        self._snapshot = snapshot

    @endpoint("Get a flag definition", scopes=READ, response=schemas.FLAG)
    def on_get(self, req: falcon.Request, resp: falcon.Response, key: str) -> None:
        doc = self._store.require(key)
        set_etag(resp, doc["version"])
        resp.media = {**doc, "last_evaluated_at": self._store.last_evaluated(key)}

    @endpoint(
        "Create or replace a flag definition",
        scopes=ADMIN,
        body=schemas.FLAG_PUT,
        response=schemas.FLAG,
        description="201 when the flag is new, 200 when it replaced one (its `version` goes up by one). "
        "`If-Match` (or `version` in the body) makes the replacement conditional. `enabled: false` is the "
        "kill switch: every evaluation then serves `off` (absent: false for a boolean flag, else `default`) "
        "with reason `DISABLED`, overrides included. `last_evaluated_at` is read-only: when this service last "
        "evaluated the flag, within a minute.",
        responses={
            201: "The flag was created",
            412: "If-Match (or the body's version) names a stale version",
        },
    )
    def on_put(self, req: falcon.Request, resp: falcon.Response, key: str) -> None:
        body = req.context.body
        check_definition(key, body)
        if_match = expected_version(req)
        if "version" in body:
            if if_match is not None and if_match != body["version"]:
                raise errors.precondition_failed("If-Match and the body's version disagree.")
            if_match = body["version"]
        doc, created, event = self._store.put(key, body, EventContext.from_request(req), if_match=if_match)
        self._snapshot.apply(event, local=True)
        if created:
            resp.status = 201
            resp.location = f"/v1/flags/{key}"
        set_etag(resp, doc["version"])
        resp.media = {**doc, "last_evaluated_at": None if created else self._store.last_evaluated(key)}

    @endpoint(
        "Delete a flag definition and every override of it",
        scopes=ADMIN,
        status=204,
        responses={412: "If-Match names a stale version"},
    )
    def on_delete(self, req: falcon.Request, resp: falcon.Response, key: str) -> None:
        if not is_key(key):
            raise errors.not_found(f"There is no flag {key!r}.")
        event = self._store.delete(key, EventContext.from_request(req), if_match=expected_version(req))
        self._snapshot.apply(event, local=True)
        resp.status = 204
