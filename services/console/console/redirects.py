"""Where a person may be sent after signing in: a path on the console itself, nothing else.

``next`` arrives from a URL anyone can craft, so everything a browser might read as another
origin is refused rather than cleaned: a scheme, a host, ``//`` or ``\\`` at the start
(browsers treat a backslash as a slash), control characters and whitespace (browsers strip
them, revealing what they hid), and each of those again after percent-decoding, since a
redirect target is decoded by whoever follows it. A refused target becomes the home page.
"""

from __future__ import annotations

from urllib.parse import unquote, urlsplit

__all__ = ["HOME", "safe_next"]

HOME = "/"
MAX_LENGTH = 2000


def _is_local_path(value: str, *, sent: bool) -> bool:
    """``sent``: the value as it goes into ``Location``, where even a space is refused; once
    decoded, a space is only a space (the browser keeps it encoded), but controls are not."""
    if not value.startswith("/") or value.startswith(("//", "/\\")):
        return False
    lowest = 0x21 if sent else 0x20
    if "\\" in value or any(ord(ch) < lowest or ord(ch) == 0x7F for ch in value):
        return False
    parts = urlsplit(value)
    return not parts.scheme and not parts.netloc


def safe_next(value: str | None) -> str:
    """``value`` when it is a path on the console (query and fragment allowed), else :data:`HOME`."""
    if not value or len(value) > MAX_LENGTH:
        return HOME
    candidate = value
    # Decoded until it no longer changes (bounded): %2F%2F, %252F%252F and the like.
    for _ in range(4):
        if not _is_local_path(candidate, sent=candidate is value):
            return HOME
        decoded = unquote(candidate)
        if decoded == candidate:
            return value
        candidate = decoded
    return HOME
