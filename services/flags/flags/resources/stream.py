"""``GET /v1/flags/stream``: Server-Sent Events of the caller's flag changes (see flags.stream)."""

from __future__ import annotations

import falcon

from aerie import errors
from aerie.auth.principal import PLATFORM_ADMIN
from aerie.endpoints import endpoint
from aerie.i18n import msg
from aerie.sse import EVENT_STREAM, client_gone_probe, respond
from flags.stream import FlagChanges

READ = ("flags:read",)


class FlagStream:
    def __init__(self, changes: FlagChanges) -> None:
        self._changes = changes

    @endpoint(
        "Server-Sent Events of flag definition changes and the caller tenant's override changes",
        scopes=READ,
        response_media=EVENT_STREAM,
        description="`text/event-stream`: `id:` the event id, `event:` its type (`flag.created|updated|deleted`, "
        "`flag.override.set|removed`), `data:` the event envelope. A change feed: it starts at the live end "
        "and does not replay, so a client (re)connects, then fetches `/v1/flags/snapshot`. Heartbeat comments "
        "keep idle connections open. A connection ends after about 5 minutes, when the token expires or its "
        "client is revoked, or when events may have been missed (reconnect and refetch); too many open "
        "streams answer 503. A platform-admin token (which defines flags) gets definition changes only: "
        "what a console's live flag list follows; other platform tokens get 403 `tenant_required`.",
        responses={
            403: "A platform token without platform:admin (`tenant_required`)",
            503: "Too many open streams, or live events are unavailable",
        },
    )
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        principal = req.context.principal
        if principal.is_platform and PLATFORM_ADMIN not in principal.scopes:
            # Definition changes are followed by those who make them (the console's live list for admins).
            raise errors.Problem(
                403, "tenant_required", msg("This stream needs a tenant-bound or a platform-admin token.")
            )
        respond(resp, self._changes.open(req.context.principal, client_gone_probe(req.env)))
