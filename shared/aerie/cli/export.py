"""An audit export to a file that survives interruption: run the same command again and it continues.

While it runs, entries go to ``<file>.partial`` beside a small ``<file>.partial.json`` naming
the trail and filters; only a finished export is renamed to ``<file>``, so a file of that name
is always whole. Running again finds the partial file, drops a last line cut in half, and
continues after the last entry it holds.

The API's filters cannot say "after seq N": ``since`` compares ``occurred_at``, which need not
follow seq order, so resuming with it could skip entries. The export is therefore asked for
again and the entries up to the last one kept are skipped as they stream past, which is
exact (seqs are gapless and the export is in seq order) at the cost of the server reading
them once more. The kept entry at that seq must come back with the same hash, else the
partial file belongs to another trail (or a recreated one) and resuming would splice two.

How far there is to go comes from the list endpoint before the export starts: its newest
matching entry. An export stream that ends before reaching it was cut off (a proxy or an
instance going away can end a response early without an error) and is reported as such.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aerie.cli.errors import EXIT_USAGE, CliError, NetworkError
from aerie.cli.progress import Progress

if TYPE_CHECKING:
    from typing import TextIO

    from aerie.cli.api import Api

__all__ = ["EXIT_INTERRUPTED", "ExportRequest", "ExportResult", "Interrupted", "Kept", "export", "kept_entries"]

EXIT_INTERRUPTED = 130


class Interrupted(CliError):
    """Ctrl-C during an export: what was written is kept for the next run."""

    exit_status = EXIT_INTERRUPTED


@dataclass(frozen=True)
class ExportRequest:
    """Which trail and which of its entries: what a partial file must have been started with."""

    tenant_id: str | None
    filters: Mapping[str, str] = field(default_factory=dict)

    def query(self) -> dict[str, str]:
        return {**({"tenant_id": self.tenant_id} if self.tenant_id else {}), **self.filters}

    def describe(self) -> dict[str, Any]:
        return {"tenant_id": self.tenant_id, "filters": dict(sorted(self.filters.items()))}


@dataclass(frozen=True)
class Kept:
    """What a partial file already holds: its whole lines, the last entry's seq and hash."""

    count: int = 0
    last_seq: int = 0
    last_hash: str | None = None


@dataclass(frozen=True)
class ExportResult:
    path: Path
    count: int
    resumed_after: int
    first_seq: int | None
    last_seq: int


def partial_of(path: Path) -> Path:
    return path.with_name(path.name + ".partial")


def state_of(path: Path) -> Path:
    return path.with_name(path.name + ".partial.json")


def kept_entries(partial: Path) -> Kept:
    """Read ``partial``, cutting off a last line that was never finished, and say what it holds."""
    count, whole, last = 0, 0, b""
    with partial.open("rb") as f:
        for line in f:
            if not line.endswith(b"\n"):
                break
            whole += len(line)
            if line.strip():
                count, last = count + 1, line
    if whole != partial.stat().st_size:
        os.truncate(partial, whole)
    if not last:
        return Kept()
    try:
        entry = json.loads(last)
        return Kept(count=count, last_seq=int(entry["seq"]), last_hash=entry.get("hash"))
    except (ValueError, KeyError, TypeError):
        raise CliError(f"{partial} does not end in an audit entry; remove it or pass --restart") from None


def newest_seq(api: Api, request: ExportRequest) -> int:
    """The seq of the newest entry the export will include (0: none), from the newest-first list."""
    query: dict[str, Any] = {**request.query(), "limit": 1}
    while True:
        page = api.json("GET", "audit", "/v1/audit/events", params=query)
        if page.get("items"):
            return int(page["items"][0]["seq"])
        if not page.get("next_cursor"):
            return 0
        query["cursor"] = page["next_cursor"]


def _prepare(path: Path, request: ExportRequest, *, restart: bool, overwrite: bool) -> Kept:
    if path.exists() and not overwrite:
        raise CliError(f"{path} exists (a finished export); pass --overwrite to replace it")
    partial, state = partial_of(path), state_of(path)
    if partial.exists() and not restart:
        try:
            started = json.loads(state.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            started = None
        if started != request.describe():
            error = CliError(
                f"{partial} holds an export of another trail or other filters ({started}); "
                "pass --restart to discard it, or repeat that export's options"
            )
            error.exit_status = EXIT_USAGE
            raise error
        return kept_entries(partial)
    path.parent.mkdir(parents=True, exist_ok=True)
    state.write_text(json.dumps(request.describe()), encoding="utf-8")
    partial.write_bytes(b"")
    return Kept()


def export(
    api: Api,
    request: ExportRequest,
    path: Path,
    *,
    restart: bool = False,
    overwrite: bool = False,
    progress: bool | None = None,
    err: TextIO,
) -> ExportResult:
    """Export the trail as NDJSON to ``path``, continuing a partial export of the same request."""
    kept = _prepare(path, request, restart=restart, overwrite=overwrite)
    if kept.count:
        print(f"resuming after seq {kept.last_seq} ({kept.count} entries already in {partial_of(path)})", file=err)
    target = newest_seq(api, request)
    bar = Progress(err, total=target, enabled=progress)
    count, first, last = kept.count, None, kept.last_seq
    partial = partial_of(path)
    try:
        with partial.open("ab") as f:
            for line in api.lines("audit", "/v1/audit/export", params={**request.query(), "format": "ndjson"}):
                if not line.strip():
                    continue
                try:
                    entry = json.loads(line)
                    seq = int(entry["seq"])
                except (ValueError, KeyError, TypeError):
                    raise NetworkError(
                        f"audit: the export broke off in the middle of the entry after seq {last}"
                    ) from None
                if seq <= kept.last_seq:
                    if seq == kept.last_seq and kept.last_hash and entry.get("hash") != kept.last_hash:
                        raise CliError(
                            f"entry {seq} of the trail is not the one in {partial}: the trail changed since"
                            " that export started; pass --restart to export it anew"
                        )
                    bar.update(seq, count)
                    continue
                f.write(line + b"\n")
                count, last = count + 1, seq
                first = seq if first is None else first
                bar.update(seq, count)
            bar.update(last, count, force=True)
    except KeyboardInterrupt:
        raise Interrupted(f"interrupted after seq {last}; run the same command again to resume") from None
    except NetworkError as exc:
        raise NetworkError(f"{exc}; {count} entries kept in {partial}, run the same command again to resume") from None
    finally:
        bar.close()
    if last < target:
        raise NetworkError(
            f"audit: the export ended at seq {last}, before the trail's newest entry (seq {target});"
            f" {count} entries kept in {partial}, run the same command again to resume"
        )
    os.replace(partial, path)
    state_of(path).unlink(missing_ok=True)
    return ExportResult(path=path, count=count, resumed_after=kept.last_seq, first_seq=first, last_seq=last)
