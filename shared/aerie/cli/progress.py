"""A one-line progress display on a terminal, and silence everywhere else.

A long export should show that it is moving and how far it has to go; but a progress line
written into a CI log or a file is noise (every redraw a new line), so it draws only when
stderr is a terminal, unless asked for.
"""

from __future__ import annotations

import time
from typing import TextIO

__all__ = ["Progress"]

BAR_WIDTH = 30
#: Redraws per second at most: drawing on every entry would cost more than writing it.
REDRAW_INTERVAL_S = 0.1


class Progress:
    """``done`` of ``total`` with a bar, the rate, and what ``unit`` counts."""

    def __init__(self, stream: TextIO, *, total: int, enabled: bool | None = None, label: str = "") -> None:
        self.stream = stream
        self.total = total
        self.enabled = stream.isatty() if enabled is None else enabled
        self.label = label
        self._started = time.monotonic()
        self._drawn_at = 0.0
        self._drawn = False

    def update(self, done: int, count: int, *, force: bool = False) -> None:
        """Show position ``done`` (of ``total``) and ``count`` entries written so far."""
        if not self.enabled:
            return
        now = time.monotonic()
        if not force and now - self._drawn_at < REDRAW_INTERVAL_S:
            return
        self._drawn_at = now
        self._drawn = True
        fraction = 1.0 if self.total <= 0 else min(done / self.total, 1.0)
        filled = int(fraction * BAR_WIDTH)
        rate = count / max(now - self._started, 1e-6)
        bar = "#" * filled + "-" * (BAR_WIDTH - filled)
        line = f"{self.label}[{bar}] {fraction:4.0%}  seq {done}/{self.total}  {count} entries  {rate:,.0f}/s"
        self.stream.write("\r" + line + "\x1b[K")
        self.stream.flush()

    def close(self) -> None:
        """End the line, so what is printed next starts on its own."""
        if self._drawn:
            self.stream.write("\n")
            self.stream.flush()
            self._drawn = False
