"""Request bodies as JSON, refusing what no service could store or send back.

The json module reads more than the services can keep: ``NaN`` and ``Infinity`` (not JSON
at all), numbers past what a double holds (``1e400`` becomes infinity), integers past 64
bits (signed), and unpaired surrogate escapes (``"\\ud800"``, which no UTF-8 encoder
takes). Unchecked, each would pass validation and fail later: a 500 while writing to Redis,
a 500 on every later read of the stored document, or a value silently stored as ``null``.
They are refused here, before any service code sees the body.

JSON exchanged between systems is UTF-8, without a byte order mark (RFC 8259, section 8.1).
The json module also reads UTF-16 and UTF-32, with or without a BOM, and UTF-8 after a
BOM; those are refused (:class:`NotUTF8`) rather than guessed at.
"""

from __future__ import annotations

import json
import math
from typing import Any

import orjson

from aerie.i18n import msg

__all__ = ["NOT_TEXT", "OUT_OF_RANGE", "NotStorable", "NotUTF8", "loads_json", "nests_deeper_than"]

#: Integers as every service keeps them: signed 64 bits, what orjson writes and what the
#: usual readers of these documents (Redis, Java's long, Go's int64) hold.
MIN_INT = -(2**63)
MAX_INT = 2**63 - 1
OUT_OF_RANGE = msg("is out of range: integers must fit in 64 bits (signed) and other numbers must be finite")
NOT_TEXT = msg("holds an unpaired surrogate escape (\\ud800 to \\udfff), which is not Unicode text")

#: A run of 19 digits may be an integer past 64 bits, which orjson reads as a float (a
#: silent loss of precision); bodies with one go to the json module. Found by mapping every
#: digit to "0" and everything else to " ", then a substring search: both in C, ~0.8 us for
#: an evaluation body, where the regular expression ``\d{19}`` took 6 us, more than json.
_DIGITS_AS_ZEROS = bytes(0x30 if 0x30 <= b <= 0x39 else 0x20 for b in range(256))
_LONG_DIGIT_RUN = b"0" * 19


class NotStorable(ValueError):
    """Well-formed JSON holding values no service can keep (see the module's docstring).

    ``errors`` names each such value as ``{"field", "message"}`` with the dotted path the
    validator uses; it is empty when a value cannot be named (the body itself, or a key
    that is not text).
    """

    def __init__(self, errors: list[dict[str, str]]) -> None:
        super().__init__("the body holds values that cannot be stored")
        self.errors = errors


class NotUTF8(ValueError):
    """A body in another encoding than UTF-8, or one that starts with a byte order mark."""

    def __init__(self) -> None:
        super().__init__("JSON must be UTF-8 without a byte order mark")


class _OutOfRange:
    """Stands in for a number out of range while the document is parsed."""


_OUT_OF_RANGE = _OutOfRange()


def _parse_int(text: str) -> int | _OutOfRange:
    # A long run of digits is out of range whatever it is; int() of thousands of digits
    # is slow, and past 4,300 it raises.
    if len(text) > 21:
        return _OUT_OF_RANGE
    value = int(text)
    return value if MIN_INT <= value <= MAX_INT else _OUT_OF_RANGE


def _parse_float(text: str) -> float | _OutOfRange:
    value = float(text)
    return value if math.isfinite(value) else _OUT_OF_RANGE


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _is_text(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _unstorable(value: Any, path: str, out: list[dict[str, str]]) -> bool:
    """Append an error for each unstorable value under ``value``; False if one has no name."""
    nameable = True
    if value is _OUT_OF_RANGE:
        out.append({"field": path, "message": OUT_OF_RANGE})
        return bool(path)
    if isinstance(value, str):
        if not _is_text(value):
            out.append({"field": path, "message": NOT_TEXT})
            return bool(path)
        return True
    if isinstance(value, dict):
        for key, item in value.items():
            if not _is_text(key):
                nameable = False
                continue
            nameable &= _unstorable(item, f"{path}.{key}" if path else key, out)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            nameable &= _unstorable(item, f"{path}.{index}" if path else str(index), out)
    return nameable


def loads_json(raw: bytes) -> Any:
    """``raw`` as ``json.loads`` reads it, or :class:`NotStorable` for what it must not take.

    orjson reads nearly every body (the json module cost ~7% of a flag evaluation's CPU):
    it refuses everything the json module refuses, and everything named in the module's
    docstring except integers past 64 bits, kept away from it above. Whatever it refuses
    goes to the json module, which decides as it always did and whose result is then
    checked for what orjson refused on purpose. ``NaN`` and ``Infinity`` are refused as
    not JSON (a ``ValueError``), and anything but UTF-8 without a BOM as :class:`NotUTF8`.
    """
    if _LONG_DIGIT_RUN not in raw.translate(_DIGITS_AS_ZEROS):
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError:
            pass
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise NotUTF8() from None
    # A NUL is never in JSON text (nor escaped-free in its strings): UTF-16 or UTF-32 without a BOM.
    if text.startswith("\ufeff") or "\x00" in text:
        raise NotUTF8()
    document = json.loads(text, parse_int=_parse_int, parse_float=_parse_float, parse_constant=_refuse_constant)
    errors: list[dict[str, str]] = []
    nameable = _unstorable(document, "", errors)
    if errors or not nameable:
        raise NotStorable(errors if nameable else [])
    return document


def nests_deeper_than(value: Any, limit: int) -> bool:
    """Whether ``value`` has objects or lists more than ``limit`` levels deep.

    Free-form values (a flag's served value, audit metadata) need a bound: the json module
    reads about a thousand levels, but orjson writes at most 254, and code that walks a
    value recursively stops at Python's recursion limit. Level by level, so a value of any
    depth is measured without recursing.
    """
    level: list[Any] = [value]
    for _ in range(limit + 1):
        level = [
            child
            for node in level
            if isinstance(node, dict | list)
            for child in (node.values() if isinstance(node, dict) else node)
        ]
        if not level:
            return False
    return True
