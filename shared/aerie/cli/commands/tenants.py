"""``aerie tenants``: list, create, show, suspend, reactivate (platform:admin)."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from aerie.cli.errors import ApiError, CliError

if TYPE_CHECKING:
    from aerie.cli.api import Api
    from aerie.cli.output import Output

__all__ = ["COLUMNS", "register", "resolve_tenant"]

COLUMNS = [("id", "id"), ("slug", "slug"), ("name", "name"), ("plan", "plan"), ("status", "status"),
           ("created", "created_at")]  # fmt: skip
RECORD = ["id", "slug", "name", "plan", "status", "language", "created_at", "updated_at", "version"]


def resolve_tenant(api: Api, ref: str) -> dict[str, Any]:
    """The tenant whose id or slug is ``ref``: people remember slugs, the API addresses ids."""
    from aerie.cli.api import segment

    try:
        return api.json("GET", "tenants", f"/v1/tenants/{segment(ref)}")
    except ApiError as exc:
        if exc.status != 404:
            raise
    for tenant in api.pages("tenants", "/v1/tenants"):
        if tenant.get("slug") == ref:
            return tenant
    raise CliError(f"no tenant has the id or slug {ref!r}")


def _list(api: Api, args: argparse.Namespace, out: Output) -> int:
    out.table(api.pages("tenants", "/v1/tenants", {"status": args.status}), COLUMNS)
    return 0


def _show(api: Api, args: argparse.Namespace, out: Output) -> int:
    out.record(resolve_tenant(api, args.tenant), RECORD)
    return 0


def _create(api: Api, args: argparse.Namespace, out: Output) -> int:
    body = {"slug": args.slug, "name": args.name or args.slug, "plan": args.plan, "language": args.language}
    tenant = api.json("POST", "tenants", "/v1/tenants", body={k: v for k, v in body.items() if v is not None})
    out.record(tenant, RECORD)
    return 0


def _transition(action: str) -> Any:
    def run(api: Api, args: argparse.Namespace, out: Output) -> int:
        from aerie.cli.api import segment

        tenant = resolve_tenant(api, args.tenant)
        changed = api.json("POST", "tenants", f"/v1/tenants/{segment(tenant['id'])}/{action}")
        changed = changed if isinstance(changed, dict) else {**tenant}
        out.result(changed, text=f"tenant {tenant['slug']} ({tenant['id']}) is {changed.get('status', action)}")
        return 0

    return run


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    tenants = sub.add_parser("tenants", help="list, create, suspend and reactivate tenants", parents=[common])
    verbs = tenants.add_subparsers(title="commands", metavar="COMMAND", required=True)

    p = verbs.add_parser("list", help="every tenant (all pages)", parents=[common])
    p.add_argument("--status", choices=["active", "suspended", "deleted"], help="only tenants in this status")
    p.set_defaults(run=_list)

    p = verbs.add_parser("show", help="one tenant", parents=[common])
    p.add_argument("tenant", help="tenant id or slug")
    p.set_defaults(run=_show)

    p = verbs.add_parser("create", help="a new tenant", parents=[common])
    p.add_argument("slug", help="lower-case letters, digits and dashes; unique")
    p.add_argument("--name", help="display name (default: the slug)")
    p.add_argument("--plan", choices=["free", "team", "enterprise"], help="default: the service's (free)")
    p.add_argument("--language", help="the tenant's language, e.g. en or de")
    p.set_defaults(run=_create)

    for action, text in (("suspend", "refuse the tenant's writes (reads go on)"), ("reactivate", "undo a suspend")):
        p = verbs.add_parser(action, help=text, parents=[common])
        p.add_argument("tenant", help="tenant id or slug")
        p.set_defaults(run=_transition(action))
