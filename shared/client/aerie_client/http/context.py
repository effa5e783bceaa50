"""Per-request values that code far from the resource needs (logs, events, outgoing calls).

A WSGI server serves each request on one thread from start to end, so the values live in
a ``threading.local``: setting one is an attribute write, where a ``ContextVar`` copied the
context's mapping on every set (twice per request, about 0.7 us together). Threads a
request starts do not inherit them, as they did not inherit a ContextVar's either.
"""

from __future__ import annotations

import threading

__all__ = ["current_request_id", "current_vcap_request_id", "set_request_id"]

_request = threading.local()


def set_request_id(request_id: str | None, vcap_request_id: str | None = None) -> None:
    """Make ``request_id`` this thread's current request's id (None once it is answered), and
    ``vcap_request_id`` the id Cloud Foundry's router gave it (``X-Vcap-Request-Id``)."""
    _request.id = request_id
    _request.vcap = vcap_request_id


def current_request_id() -> str | None:
    """The X-Request-ID of the request this thread is serving, if any."""
    return getattr(_request, "id", None)


def current_vcap_request_id() -> str | None:
    """The router's ``X-Vcap-Request-Id`` of the request this thread is serving, if any."""
    return getattr(_request, "vcap", None)
