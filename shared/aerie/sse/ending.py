"""What ends an open stream before its lifetime: the client hung up, or lost its right to it."""

from __future__ import annotations

import select
import time
from collections.abc import Callable, Mapping
from typing import Any

from aerie.auth.principal import Principal

__all__ = ["client_gone_probe", "while_authorized"]


def client_gone_probe(environ: Mapping[str, Any] | None = None) -> Callable[[], bool]:
    """A check that the client of this request hung up: waitress's own (the stream server,
    ``aerie.stream_server``), else under uWSGI a poll of the connection; elsewhere, never.

    A server only notices a closed connection when it writes, which for an idle stream is
    the next heartbeat: asking each second frees the thread (and the stream slot) within a
    second of the client leaving instead.
    """
    waitress_probe = (environ or {}).get("waitress.client_disconnected")
    if callable(waitress_probe):
        return waitress_probe
    try:
        import uwsgi

        fd = uwsgi.connection_fd()
    except Exception:
        return lambda: False
    hangup = select.POLLHUP | select.POLLERR | select.POLLNVAL | getattr(select, "POLLRDHUP", 0)

    def gone() -> bool:
        poller = select.poll()
        poller.register(fd, hangup)
        return any(events & hangup for _fd, events in poller.poll(0))

    return gone


def while_authorized(
    principal: Principal, is_revoked: Callable[[Principal], bool], gone: Callable[[], bool]
) -> Callable[[], bool]:
    """A stream's end condition: the client hung up, its token expired, or its client was revoked.

    A token is checked when a request starts, and a stream outlives that moment: without
    this, a revoked client (or an expired token) would keep receiving events until the
    stream's own end, past the contract's one second.
    """

    def ended() -> bool:
        return gone() or time.time() >= principal.expires_at or is_revoked(principal)

    return ended
