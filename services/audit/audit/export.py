"""Export formats: NDJSON (the entries exactly as stored) and CSV safe to open in a spreadsheet.

Both are generators over :func:`audit.query.chain_order`, so an export of any size holds
one chunk of entries in memory, and the response streams while it is produced. Rows come
in chain order (oldest first): an NDJSON export can be verified line by line.

CSV cells starting with ``=``, ``+``, ``-``, ``@`` (and tab or carriage return, which some
spreadsheets skip before looking) get a leading ``'`` (OWASP "CSV injection"), so a
message or user agent chosen by an attacker is shown as text, never run as a formula.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator
from typing import Any

import orjson

__all__ = ["CSV_COLUMNS", "FORMATS", "csv_rows", "ndjson_lines", "neutralise"]

CSV_COLUMNS = (
    "seq",
    "id",
    "tenant_id",
    "occurred_at",
    "recorded_at",
    "action",
    "actor_type",
    "actor_id",
    "actor_client_id",
    "target_type",
    "target_id",
    "ip",
    "user_agent",
    "request_id",
    "message",
    "metadata",
    "prev_hash",
    "hash",
    # Last, so the columns before it keep their positions for whoever reads CSV by index.
    "source",
)
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
#: Rows buffered before a chunk is handed to the server.
_ROWS_PER_CHUNK = 200


def neutralise(cell: str) -> str:
    return "'" + cell if cell.startswith(_FORMULA_START) else cell


def _flatten(entry: dict[str, Any]) -> list[str]:
    actor = entry.get("actor") or {}
    target = entry.get("target") or {}
    values: list[Any] = [
        entry.get("seq"),
        entry.get("id"),
        entry.get("tenant_id"),
        entry.get("occurred_at"),
        entry.get("recorded_at"),
        entry.get("action"),
        actor.get("type"),
        actor.get("id"),
        actor.get("client_id"),
        target.get("type"),
        target.get("id"),
        entry.get("ip"),
        entry.get("user_agent"),
        entry.get("request_id"),
        entry.get("message"),
        orjson.dumps(entry.get("metadata") or {}).decode(),
        entry.get("prev_hash"),
        entry.get("hash"),
        entry.get("source"),
    ]
    return [neutralise("" if v is None else str(v)) for v in values]


def ndjson_lines(raws: Iterable[str]) -> Iterator[bytes]:
    chunk: list[str] = []
    for raw in raws:
        chunk.append(raw)
        if len(chunk) >= _ROWS_PER_CHUNK:
            yield ("\n".join(chunk) + "\n").encode()
            chunk = []
    if chunk:
        yield ("\n".join(chunk) + "\n").encode()


def csv_rows(raws: Iterable[str]) -> Iterator[bytes]:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    rows = 0
    for raw in raws:
        writer.writerow(_flatten(orjson.loads(raw)))
        rows += 1
        if rows >= _ROWS_PER_CHUNK:
            yield buffer.getvalue().encode()
            buffer.seek(0)
            buffer.truncate()
            rows = 0
    yield buffer.getvalue().encode()


#: format -> (content type, file extension, producer)
FORMATS = {
    "ndjson": ("application/x-ndjson", "ndjson", ndjson_lines),
    "csv": ("text/csv; charset=utf-8", "csv", csv_rows),
}
