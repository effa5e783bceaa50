"""The WSGI body of a stream, whose cleanup runs however the stream ends.

It runs also when the client left before the first byte, where a plain generator's
``finally`` never runs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

__all__ = ["SSEBody"]


class SSEBody:
    """The WSGI body of a stream: runs ``on_close`` exactly once, however the stream ends."""

    def __init__(self, frames: Iterator[bytes], on_close: Callable[[], None]) -> None:
        self._frames = frames
        self._on_close = on_close
        self._closed = False

    def __iter__(self) -> SSEBody:
        return self

    def __next__(self) -> bytes:
        try:
            return next(self._frames)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            close = getattr(self._frames, "close", None)
            if close is not None:
                close()
        finally:
            self._on_close()
