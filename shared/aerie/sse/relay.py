"""The loop of an open stream's live part: frames as they come, heartbeats, and its end."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import TypeVar

from aerie.sse.fanout import Listener
from aerie.sse.frames import HEARTBEAT

__all__ = ["relay"]

T = TypeVar("T")


def relay(
    listener: Listener[T],
    render: Callable[[T], bytes | None],
    gone: Callable[[], bool],
    *,
    until: float,
    heartbeat_seconds: float,
    last_sent: float | None = None,
) -> Iterator[bytes]:
    """The live part of a stream: ``render``'s frames, heartbeats, until it must end.

    Ends when ``gone()`` (checked each second), at ``until`` (``time.monotonic()``), or when
    the listener broke. ``render`` returns None for a message not to send (a duplicate).
    A heartbeat comment follows ``heartbeat_seconds`` without a frame (since ``last_sent``).
    """
    last = time.monotonic() if last_sent is None else last_sent
    while not gone():
        now = time.monotonic()
        remaining = until - now
        if remaining <= 0:
            return
        # Wake for whichever comes first: the end, the next heartbeat, or the next gone() check.
        message = listener.get(timeout=max(0.0, min(1.0, remaining, last + heartbeat_seconds - now)))
        if listener.broken:
            return  # pub/sub reconnected or we fell behind: the client resumes elsewhere
        if message is not None:
            out = render(message)
            if out is not None:
                yield out
                last = time.monotonic()
        elif time.monotonic() - last >= heartbeat_seconds:
            yield HEARTBEAT
            last = time.monotonic()
