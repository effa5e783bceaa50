"""Cursor pagination: ``{"items": [...], "next_cursor": "..." | null}``.

A cursor is opaque to clients: URL-safe base64 of a small JSON object naming the position.
It carries no authority: storage applies the caller's scope before the position, so a
forged or foreign cursor can only move within what the caller may already see. A cursor
that does not decode is a 422 on the ``cursor`` field.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from typing import Any

from aerie import errors
from aerie.i18n import msg

__all__ = ["Page", "decode_cursor", "encode_cursor", "page_schema"]


@dataclass(frozen=True)
class Page:
    items: list[dict[str, Any]]
    next_cursor: str | None

    def as_body(self) -> dict[str, Any]:
        return {"items": self.items, "next_cursor": self.next_cursor}


def encode_cursor(position: dict[str, Any]) -> str:
    raw = json.dumps(position, separators=(",", ":"), sort_keys=True).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str, *required: str) -> Any:
    """The position in ``cursor``; with one ``required`` field, just that field's value."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        position = json.loads(base64.urlsafe_b64decode(padded.encode()))
    except (ValueError, binascii.Error, UnicodeDecodeError):
        position = None
    if not isinstance(position, dict) or any(not isinstance(position.get(f), str) for f in required):
        raise errors.validation_error([{"field": "cursor", "message": msg("is not a cursor this list issued")}])
    if len(required) == 1:
        return position[required[0]]
    return position


def page_schema(item: dict[str, Any]) -> dict[str, Any]:
    """The response schema of a list of ``item`` documents, for the OpenAPI document."""
    return {
        "items": {"type": "list", "schema": {"type": "dict", "schema": item}},
        "next_cursor": {"type": "string", "nullable": True},
    }
