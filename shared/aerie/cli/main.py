"""``aerie``'s entry point: the argument parser, the configuration, and one line per failure.

The shared options (``--json``, the URLs, the client, ``--env-file``) are accepted before the
resource or after the subcommand alike (``aerie --json tenants list`` and ``aerie tenants
list --json``): operators type them where they think of them.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from aerie.cli.commands import audit, clients, events, flags, tenants
from aerie.cli.config import DEFAULT_ENV_FILE, SERVICES, Settings
from aerie.cli.errors import CliError
from aerie.cli.output import Output

__all__ = ["build_parser", "main"]

DEFAULTS = {"json": False, "env_file": None, "client_id": None, "client_secret": None, "timeout": 10.0}
DEFAULTS.update({f"{service}_url": None for service in SERVICES})


def _common() -> argparse.ArgumentParser:
    """The shared options, defaulting to nothing: a subcommand's copy must not reset what was given before it.

    Each parser gets its own instance (argparse shares a parent's action objects, so defaults
    set on one would show up in all); the top parser's defaults are :data:`DEFAULTS`.
    """
    common = argparse.ArgumentParser(add_help=False, argument_default=argparse.SUPPRESS)
    group = common.add_argument_group("connection and output")
    group.add_argument("--json", action="store_true", help="print the API's JSON instead of a table")
    group.add_argument(
        "--env-file", metavar="PATH", help=f"KEY=value settings (default: {DEFAULT_ENV_FILE} here or above, if any)"
    )
    for service in SERVICES:
        group.add_argument(f"--{service}-url", metavar="URL", help=f"default: $AERIE_{service.upper()}_URL")
    group.add_argument("--client-id", help="default: $AERIE_CLIENT_ID, else $AERIE_BOOTSTRAP_CLIENT_ID")
    group.add_argument(
        "--client-secret", help="default: $AERIE_CLIENT_SECRET, else $AERIE_BOOTSTRAP_CLIENT_SECRET (prefer those)"
    )
    group.add_argument("--timeout", type=float, metavar="SECONDS", help="per request (default: 10)")
    return common


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="aerie",
        parents=[_common()],
        description="Operate Aerie through its public APIs as a platform client.",
        epilog="Exit status: 0 done, 1 the API or network failed, 2 usage or configuration, "
        "3 an audit chain that does not verify, 130 interrupted.",
    )
    parser.set_defaults(**DEFAULTS)
    sub = parser.add_subparsers(title="resources", metavar="RESOURCE", required=True)
    for module in (tenants, clients, flags, audit, events):
        module.register(sub, _common())
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; every failure it expects is one ``aerie: error:`` line on stderr."""
    parser = build_parser()
    args = parser.parse_args(argv)
    out = Output(as_json=args.json)
    try:
        flags_given = {name: getattr(args, name) for name in ("client_id", "client_secret")}
        flags_given.update({f"{s}_url": getattr(args, f"{s}_url") for s in SERVICES})
        settings = Settings.resolve(flags=flags_given, environ=os.environ, env_file=args.env_file, timeout=args.timeout)
        from aerie.cli.api import Api  # requests costs a tenth of a second: only for commands that call out

        with Api(settings) as api:
            return args.run(api, args, out)
    except CliError as exc:
        print(f"aerie: error: {exc}", file=sys.stderr)
        return exc.exit_status
    except KeyboardInterrupt:
        print("aerie: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader (`| head`) has gone; say nothing more, and let Python not complain at exit.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
