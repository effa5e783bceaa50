"""``aerie flags``: list, show, kill, enable, set the rollout, evaluate as a tenant.

A change reads the definition, changes one field and writes it back with the version it
read (the API's If-Match), so it never undoes a change someone made in between; when that
happens it reads again and retries, a few times.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from aerie.cli.commands.tenants import resolve_tenant
from aerie.cli.errors import ApiError, CliError

if TYPE_CHECKING:
    from aerie.cli.api import Api
    from aerie.cli.output import Output

__all__ = ["register"]

COLUMNS = [("key", "key"), ("enabled", "enabled"), ("default", "default"), ("rollout", "rollout"),
           ("version", "version"), ("updated", "updated_at")]  # fmt: skip
RECORD = ["key", "description", "enabled", "default", "off", "variants", "rules", "rollout", "allow_overrides",
          "version", "created_at", "updated_at", "last_evaluated_at"]  # fmt: skip
READ_ONLY = ("created_at", "updated_at", "last_evaluated_at")
ATTEMPTS = 3


def _path(key: str) -> str:
    from aerie.cli.api import segment

    return f"/v1/flags/{segment(key)}"


def _list(api: Api, args: argparse.Namespace, out: Output) -> int:
    out.table(api.pages("flags", "/v1/flags"), COLUMNS)
    return 0


def _show(api: Api, args: argparse.Namespace, out: Output) -> int:
    out.record(api.json("GET", "flags", _path(args.key)), RECORD)
    return 0


def _change(api: Api, key: str, change: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    """Apply ``change`` to the current definition and write it back, conditional on its version."""
    for _ in range(ATTEMPTS):
        flag = api.json("GET", "flags", _path(key))
        body = {k: v for k, v in flag.items() if k not in READ_ONLY}
        change(body)
        try:
            return api.json("PUT", "flags", _path(key), body=body)
        except ApiError as exc:
            if exc.status != 412:
                raise
    raise CliError(f"flag {key} kept changing while this command tried to change it; try again")


def _set_enabled(enabled: bool) -> Callable[[Api, argparse.Namespace, Output], int]:
    def run(api: Api, args: argparse.Namespace, out: Output) -> int:
        flag = _change(api, args.key, lambda body: body.update(enabled=enabled))
        state = "on (enabled)" if enabled else "off (killed)"
        out.result(flag, text=f"flag {flag['key']} is {state}, version {flag['version']}")
        return 0

    return run


def _rollout(api: Api, args: argparse.Namespace, out: Output) -> int:
    def change(body: dict[str, Any]) -> None:
        current = body.get("rollout") or {}
        body["rollout"] = {"percentage": args.percentage, "stickiness": args.stickiness or current.get("stickiness")}
        if body["rollout"]["stickiness"] is None:
            del body["rollout"]["stickiness"]

    flag = _change(api, args.key, change)
    rollout = flag.get("rollout") or {}
    text = f"flag {flag['key']} rolls out to {rollout.get('percentage')}% by {rollout.get('stickiness')}"
    out.result(flag, text=f"{text}, version {flag['version']}")
    return 0


def _evaluate(api: Api, args: argparse.Namespace, out: Output) -> int:
    tenant = resolve_tenant(api, args.tenant)
    params = {"user_id": args.user_id}
    result = api.json("GET", "flags", f"{_path(args.key)}/evaluation", params=params, tenant_id=tenant["id"])
    out.record(result, ["key", "value", "variant", "reason", "rule", "revision"])
    return 0


def _percentage(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0 <= value <= 100:
        raise argparse.ArgumentTypeError("must be between 0 and 100")
    return int(value) if value.is_integer() else value


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    flags = sub.add_parser("flags", help="show flags, kill one, set its rollout", parents=[common])
    verbs = flags.add_subparsers(title="commands", metavar="COMMAND", required=True)

    p = verbs.add_parser("list", help="every flag definition", parents=[common])
    p.set_defaults(run=_list)

    p = verbs.add_parser("show", help="one flag's definition", parents=[common])
    p.add_argument("key")
    p.set_defaults(run=_show)

    p = verbs.add_parser("kill", help="turn a flag off everywhere (enabled: false)", parents=[common])
    p.add_argument("key")
    p.set_defaults(run=_set_enabled(False))

    p = verbs.add_parser("enable", help="undo a kill (enabled: true)", parents=[common])
    p.add_argument("key")
    p.set_defaults(run=_set_enabled(True))

    p = verbs.add_parser("rollout", help="set the rollout percentage", parents=[common])
    p.add_argument("key")
    p.add_argument("percentage", type=_percentage, help="0 to 100")
    p.add_argument("--stickiness", choices=["user_id", "tenant_id", "session_id", "ip"], help="default: as it was")
    p.set_defaults(run=_rollout)

    p = verbs.add_parser("evaluate", help="what a tenant (and a user) is served", parents=[common])
    p.add_argument("key")
    p.add_argument("--tenant", required=True, help="tenant id or slug")
    p.add_argument("--user-id", help="the evaluation context's user_id")
    p.set_defaults(run=_evaluate)
