"""The bytes of a Server-Sent Events stream and the response headers that carry them."""

from __future__ import annotations

from collections.abc import Iterable

import falcon

__all__ = ["EVENT_STREAM", "HEARTBEAT", "RETRY", "frame", "id_only", "respond"]

#: The first bytes of every stream: reconnect one second after the server ends a stream.
RETRY = b"retry: 1000\n\n"
#: The media type of a Server-Sent Events response.
EVENT_STREAM = "text/event-stream"
HEARTBEAT = b": heartbeat\n\n"


def frame(data: str, *, event_id: str | None = None, event: str | None = None) -> bytes:
    """One SSE event. ``data`` must be one line (compact JSON is: it escapes newlines).

    An ``event_id`` of ``""`` sends an empty ``id:``, which clears the client's last id.
    """
    if "\n" in data or "\r" in data:
        raise ValueError("SSE data must be a single line")
    head = ""
    if event_id is not None:
        head += f"id: {event_id}\n"
    if event is not None:
        head += f"event: {event}\n"
    return f"{head}data: {data}\n\n".encode()


def id_only(event_id: str) -> bytes:
    """A frame that only sets the client's last event id (EventSource dispatches nothing)."""
    return f"id: {event_id}\n\n".encode()


def respond(resp: falcon.Response, body: Iterable[bytes]) -> None:
    """Send ``body`` as ``text/event-stream``, neither cached nor buffered by proxies."""
    resp.content_type = EVENT_STREAM
    resp.cache_control = ["no-cache"]
    resp.set_header("X-Accel-Buffering", "no")
    resp.stream = body
