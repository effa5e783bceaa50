"""``GET /v1/flags/stream``: Server-Sent Events of the caller's flag changes (see flags.stream)."""

from __future__ import annotations

import falcon

from aerie.endpoints import endpoint
from aerie.sse import EVENT_STREAM, client_gone_probe, respond
from flags.stream import FlagChanges

READ = ("flags:read",)


class FlagStream:
    def __init__(self, changes: FlagChanges) -> None:
        self._changes = changes

    @endpoint(
        "Server-Sent Events of flag definition changes and the caller tenant's override changes",
        scopes=READ,
        tenant=True,
        response_media=EVENT_STREAM,
        description="`text/event-stream`: `id:` the event id, `event:` its type (`flag.created|updated|deleted`, "
        "`flag.override.set|removed`), `data:` the event envelope. A change feed: it starts at the live end "
        "and does not replay, so a client (re)connects, then fetches `/v1/flags/snapshot`. Heartbeat comments "
        "keep idle connections open. A connection ends after about 5 minutes, when the token expires or its "
        "client is revoked, or when events may have been missed (reconnect and refetch); too many open "
        "streams answer 503.",
        responses={503: "Too many open streams, or live events are unavailable"},
    )
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        respond(resp, self._changes.open(req.context.principal, client_gone_probe(req.env)))
