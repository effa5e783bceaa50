"""``aerie events``: the dead letters, events a consumer group gave up on (replay and discard: platform:admin)."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from aerie.cli.api import Api
    from aerie.cli.output import Output

__all__ = ["register"]

PATH = "/v1/platform/dead-letters"
COLUMNS = [("letter", "id"), ("group", "group"), ("type", "type"), ("tenant", "tenant_id"),
           ("event id", "event_id"), ("deliveries", "deliveries"), ("dead at", "dead_at")]  # fmt: skip


def _row(letter: dict[str, Any]) -> dict[str, Any]:
    """A letter with its event's type, id and tenant beside it, for the table (JSON keeps them too)."""
    event = letter.get("event") or {}
    return {**letter, "type": event.get("type"), "event_id": event.get("id"), "tenant_id": event.get("tenant_id")}


def _list(api: Api, args: argparse.Namespace, out: Output) -> int:
    out.table((_row(letter) for letter in api.pages("tenants", PATH, {"group": args.group})), COLUMNS)
    return 0


def _show(api: Api, args: argparse.Namespace, out: Output) -> int:
    from aerie.cli.api import segment

    out.record(api.json("GET", "tenants", f"{PATH}/{segment(args.letter)}"))
    return 0


def _replay(api: Api, args: argparse.Namespace, out: Output) -> int:
    from aerie.cli.api import segment

    done = api.json("POST", "tenants", f"{PATH}/{segment(args.letter)}/replay")
    out.result(done, text=f"letter {args.letter} is back on the event stream as entry {done['replayed_as']}")
    return 0


def _discard(api: Api, args: argparse.Namespace, out: Output) -> int:
    from aerie.cli.api import segment

    api.call("DELETE", "tenants", f"{PATH}/{segment(args.letter)}")
    out.result({"id": args.letter, "discarded": True}, text=f"letter {args.letter} is discarded")
    return 0


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    events = sub.add_parser("events", help="dead letters: list, show, replay, discard", parents=[common])
    verbs = events.add_subparsers(title="commands", metavar="COMMAND", required=True)

    p = verbs.add_parser("dead", help="every dead letter, oldest first (all pages)", parents=[common])
    p.add_argument("--group", help="only what this consumer group gave up on: audit, flags or projects")
    p.set_defaults(run=_list)

    p = verbs.add_parser("show", help="one dead letter, with its event", parents=[common])
    p.add_argument("letter", metavar="LETTER_ID", help="the letter's id, from `aerie events dead`")
    p.set_defaults(run=_show)

    p = verbs.add_parser(
        "replay", help="put the event back on the stream once its cause is fixed (every group sees it; "
        "groups that handled it skip it)", parents=[common]
    )  # fmt: skip
    p.add_argument("letter", metavar="LETTER_ID")
    p.set_defaults(run=_replay)

    p = verbs.add_parser("discard", help="forget an event no consumer should ever handle", parents=[common])
    p.add_argument("letter", metavar="LETTER_ID")
    p.set_defaults(run=_discard)
