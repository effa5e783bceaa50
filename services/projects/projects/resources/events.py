"""``GET /v1/projects/events``: SSE of the caller tenant's project events (see event_stream)."""

from __future__ import annotations

import falcon

from aerie.endpoints import endpoint
from projects.event_stream import EventStream, client_gone_probe, parse_last_event_id
from projects.resources.projects import READ, Scope


class ProjectEvents:
    def __init__(self, scope: Scope, stream: EventStream) -> None:
        self._scope = scope
        self._stream = stream

    @endpoint(
        "Server-Sent Events of the caller tenant's project.* events",
        scopes=READ,
        tenant=True,
        description="`text/event-stream`. Each event's `id:` is its durable stream entry id; send it back as "
        "`Last-Event-ID` to resume. Heartbeat comments keep idle connections open. A connection ends after "
        "about 25 s (EventSource reconnects by itself and resumes); too many open streams answer 503.",
        responses={400: "Last-Event-ID is not an id this stream sent", 503: "Too many open streams"},
    )
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        tenant_id = self._scope.reader(req).tenant_id
        last = parse_last_event_id(req.get_header("Last-Event-ID"))
        resp.content_type = "text/event-stream"
        resp.cache_control = ["no-cache"]
        resp.set_header("X-Accel-Buffering", "no")
        resp.stream = self._stream.open(tenant_id, last, client_gone_probe())
