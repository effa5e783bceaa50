"""``GET /v1/projects/events``: SSE of the caller tenant's project events (see event_stream)."""

from __future__ import annotations

from collections.abc import Callable

import falcon

from aerie.auth.principal import Principal
from aerie.endpoints import endpoint
from aerie.sse import EVENT_STREAM, client_gone_probe, respond, while_authorized
from projects.event_stream import ProjectEventStream, parse_last_event_id
from projects.resources.projects import READ, ProjectAccess


class ProjectEvents:
    def __init__(
        self, projects: ProjectAccess, stream: ProjectEventStream, is_revoked: Callable[[Principal], bool]
    ) -> None:
        self._projects = projects
        self._stream = stream
        self._is_revoked = is_revoked

    @endpoint(
        "Server-Sent Events of the caller tenant's project.* events",
        scopes=READ,
        tenant=True,
        response_media=EVENT_STREAM,
        description="`text/event-stream`. Each event's `id:` is its event id and `data:` its envelope; send "
        "the last id back as `Last-Event-ID` to resume (the tenant's newest 10,000 events can be resumed "
        "from). An unknown or expired `Last-Event-ID` starts live with an `event: reset` frame: events may "
        "have been missed, re-read the list. Heartbeat comments keep idle connections open. A connection "
        "ends after about 25 s (EventSource reconnects by itself and resumes), at the token's expiry, and "
        "within a second of its client's revocation; too many open streams answer 503.",
        responses={
            400: "Last-Event-ID is not an event id",
            503: "Too many open streams, or live events are unavailable",
        },
    )
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        tenant_id = self._projects.reader(req).tenant_id
        ended = while_authorized(req.context.principal, self._is_revoked, client_gone_probe(req.env))
        body = self._stream.open(tenant_id, parse_last_event_id(req.get_header("Last-Event-ID")), ended)
        respond(resp, body)
