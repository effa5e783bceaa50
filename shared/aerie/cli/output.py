"""What a command prints: JSON for scripts (``--json``), aligned tables for people.

JSON goes to stdout exactly as the API answered it, so a script can rely on the contract's
field names; tables pick a few columns and format them for reading. Remarks that are not
the result (a secret shown only once, a resume point) go to stderr, so that piping stdout
into another tool keeps only the data.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, TextIO

__all__ = ["Output", "cell"]


def cell(value: Any) -> str:
    """One value as a table cell: absent or empty as ``-``, lists joined, objects as compact JSON."""
    if value is None or value == "":
        return "-"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list) and all(isinstance(v, str | int | float) for v in value):
        return ", ".join(map(str, value)) or "-"
    if isinstance(value, dict | list):
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    return str(value)


@dataclass
class Output:
    """Where and how one run prints."""

    as_json: bool = False
    out: TextIO = field(default_factory=lambda: sys.stdout)
    err: TextIO = field(default_factory=lambda: sys.stderr)

    def result(self, data: Any, *, text: str | None = None) -> None:
        """A command's result: ``data`` as JSON, else ``text`` (default: the data as a record)."""
        if self.as_json:
            self.json(data)
        elif text is not None:
            print(text, file=self.out)
        elif isinstance(data, dict):
            self.record(data)
        else:
            print(cell(data), file=self.out)

    def json(self, data: Any) -> None:
        print(json.dumps(data, indent=2, ensure_ascii=False), file=self.out)

    def table(self, rows: Iterable[dict[str, Any]], columns: Sequence[tuple[str, str]]) -> None:
        """``rows`` as JSON, or under ``columns`` (header, field), each as wide as its widest cell."""
        items = list(rows)
        if self.as_json:
            self.json(items)
            return
        if not items:
            print("(none)", file=self.out)
            return
        grid = [[header.upper() for header, _ in columns]]
        grid += [[cell(item.get(name)) for _, name in columns] for item in items]
        widths = [max(len(row[i]) for row in grid) for i in range(len(columns))]
        for row in grid:
            print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip(), file=self.out)

    def record(self, data: dict[str, Any], fields: Sequence[str] | None = None) -> None:
        """One object as ``field: value`` lines, or as JSON."""
        if self.as_json:
            self.json(data)
            return
        names = [f for f in (fields or list(data)) if f in data]
        width = max((len(n) for n in names), default=0)
        for name in names:
            print(f"{name.ljust(width)}  {cell(data[name])}", file=self.out)

    def note(self, text: str) -> None:
        """A remark for the person at the terminal, never part of the result."""
        print(text, file=self.err)
