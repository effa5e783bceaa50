"""``aerie audit``: verify a trail's hash chain, export it to a file (resumable)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from aerie.cli.commands.tenants import resolve_tenant

if TYPE_CHECKING:
    from aerie.cli.api import Api
    from aerie.cli.output import Output

__all__ = ["EXIT_INVALID", "register"]

#: ``verify`` found the chain broken: distinct from a failed call, so a script can alert on it.
EXIT_INVALID = 3
FILTERS = ("action", "actor_id", "target_type", "target_id", "since", "until")


def _trail(api: Api, args: argparse.Namespace) -> str | None:
    """The trail's tenant id; None for the platform's own trail."""
    return None if args.tenant == "platform" else resolve_tenant(api, args.tenant)["id"]


def _verify(api: Api, args: argparse.Namespace, out: Output) -> int:
    tenant_id = _trail(api, args)
    result = api.json("GET", "audit", "/v1/audit/verify", params={"tenant_id": tenant_id})
    if out.as_json:
        out.json(result)
    else:
        head = result.get("head") or {}
        verdict = "valid" if result.get("valid") else f"INVALID from seq {result.get('first_invalid_seq')}"
        out.record(
            {
                "trail": tenant_id or "platform",
                "chain": verdict,
                "entries": result.get("entries"),
                "head seq": head.get("seq"),
                "head hash": head.get("hash"),
            }
        )
    return 0 if result.get("valid") else EXIT_INVALID


def _export(api: Api, args: argparse.Namespace, out: Output) -> int:
    from aerie.cli.export import ExportRequest, export

    filters = {name: getattr(args, name) for name in FILTERS if getattr(args, name)}
    request = ExportRequest(tenant_id=_trail(api, args), filters=filters)
    result = export(
        api,
        request,
        Path(args.output),
        restart=args.restart,
        overwrite=args.overwrite,
        progress=args.progress,
        err=sys.stderr,
    )
    summary = {
        "path": str(result.path),
        "entries": result.count,
        "resumed_after_seq": result.resumed_after,
        "last_seq": result.last_seq,
    }
    out.result(summary, text=f"{result.count} entries (to seq {result.last_seq}) in {result.path}")
    return 0


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    audit = sub.add_parser("audit", help="verify and export audit trails", parents=[common])
    verbs = audit.add_subparsers(title="commands", metavar="COMMAND", required=True)
    trail_help = "tenant id or slug, or `platform` for the platform's own trail"

    p = verbs.add_parser("verify", help="check a trail's hash chain (exit 3 when broken)", parents=[common])
    p.add_argument("tenant", help=trail_help)
    p.set_defaults(run=_verify)

    p = verbs.add_parser(
        "export",
        help="a trail as NDJSON in a file; run again after an interruption to resume",
        parents=[common],
        description="Entries go to FILE.partial until the export is complete; running the same command "
        "again continues after the last entry written.",
    )
    p.add_argument("tenant", help=trail_help)
    p.add_argument("-o", "--output", required=True, metavar="FILE", help="where the NDJSON goes")
    p.add_argument("--action", help="only this action, or a prefix such as project.*")
    p.add_argument("--actor-id", dest="actor_id")
    p.add_argument("--target-type", dest="target_type")
    p.add_argument("--target-id", dest="target_id")
    p.add_argument("--since", help="occurred at or after (RFC 3339)")
    p.add_argument("--until", help="occurred before (RFC 3339)")
    p.add_argument("--restart", action="store_true", help="discard a partial export and start over")
    p.add_argument("--overwrite", action="store_true", help="replace FILE when a finished export is there")
    p.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="draw a progress bar on stderr (default: when stderr is a terminal)",
    )
    p.set_defaults(run=_export)
