"""``aerie clients``: a tenant's OAuth clients; create shows the secret, which nobody can read again."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from aerie.cli.commands.tenants import resolve_tenant

if TYPE_CHECKING:
    from aerie.cli.api import Api
    from aerie.cli.output import Output

__all__ = ["register"]

COLUMNS = [("client id", "client_id"), ("name", "name"), ("scopes", "scopes"), ("created", "created_at")]


def _path(api: Api, ref: str) -> tuple[dict, str]:
    from aerie.cli.api import segment

    tenant = resolve_tenant(api, ref)
    return tenant, f"/v1/tenants/{segment(tenant['id'])}/clients"


def _list(api: Api, args: argparse.Namespace, out: Output) -> int:
    _, path = _path(api, args.tenant)
    page = api.json("GET", "tenants", path)
    out.table(page.get("items", []) if isinstance(page, dict) else page, COLUMNS)
    return 0


def _create(api: Api, args: argparse.Namespace, out: Output) -> int:
    _, path = _path(api, args.tenant)
    scopes = [s for value in args.scope for s in value.replace(",", " ").split()]
    body: dict = {"name": args.name, "scopes": scopes}
    if args.grant:
        body["grants"] = args.grant
    client = api.json("POST", "tenants", path, body=body)
    if out.as_json:
        out.json(client)
    else:
        out.record(client, ["client_id", "client_secret", "name", "scopes", "grants", "created_at"])
        out.note(f"The client secret of {client['client_id']} is shown only this once: store it now.")
    return 0


def _revoke(api: Api, args: argparse.Namespace, out: Output) -> int:
    from aerie.cli.api import segment

    tenant, path = _path(api, args.tenant)
    api.call("DELETE", "tenants", f"{path}/{segment(args.client)}")
    result = {"tenant_id": tenant["id"], "client_id": args.client, "revoked": True}
    out.result(result, text=f"client {args.client} of tenant {tenant['slug']} is revoked")
    return 0


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    clients = sub.add_parser("clients", help="create, list and revoke a tenant's clients", parents=[common])
    verbs = clients.add_subparsers(title="commands", metavar="COMMAND", required=True)

    p = verbs.add_parser("list", help="a tenant's clients", parents=[common])
    p.add_argument("tenant", help="tenant id or slug")
    p.set_defaults(run=_list)

    p = verbs.add_parser("create", help="a new client; prints its secret once", parents=[common])
    p.add_argument("tenant", help="tenant id or slug")
    p.add_argument("--name", required=True, help="what the client is for")
    p.add_argument(
        "--scope", action="append", required=True, help="a scope it may ask for; repeat, or separate by spaces"
    )
    p.add_argument("--grant", action="append", choices=["client_credentials", "token-exchange"], help="repeatable")
    p.set_defaults(run=_create)

    p = verbs.add_parser("revoke", help="revoke a client: its tokens stop working everywhere", parents=[common])
    p.add_argument("tenant", help="tenant id or slug")
    p.add_argument("client", metavar="CLIENT_ID", help="the client to revoke")
    p.set_defaults(run=_revoke)
