"""Per-request values that code far from the resource needs (logs, events, outgoing calls)."""

from __future__ import annotations

from contextvars import ContextVar

#: The X-Request-ID of the request being served by this thread, if any.
request_id_var: ContextVar[str | None] = ContextVar("aerie_request_id", default=None)
