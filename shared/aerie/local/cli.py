"""``python -m aerie.local.stack`` (``make run``): the stack in the foreground until Ctrl-C or SIGTERM.

It stops everything when one process dies on its own, and says which with its log's tail.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from aerie.local.dev_idp import DEFAULT_IDP_PORT
from aerie.local.discovery import (
    DEFAULT_REDIS_PORT,
    HOST,
    discover_services,
    env_key,
    port_from_env,
    resolve_ports,
)
from aerie.local.errors import StackError
from aerie.local.stack import LocalStack
from aerie.suite.layout import KNOWN_SERVICES, RepoNotFound, find_repo_root, service_order

__all__ = ["main"]


class _Terminated(Exception):
    """SIGTERM, turned into an exception so the same ``finally`` stops everything."""


def _parse_args(argv: Sequence[str] | None, repo_root: Path) -> argparse.Namespace:
    names = service_order(list(dict.fromkeys([*KNOWN_SERVICES, *discover_services(repo_root)])))
    p = argparse.ArgumentParser(
        prog="python -m aerie.local.stack", description="Run Redis and every Aerie service locally."
    )
    p.add_argument(
        "--state-dir",
        type=Path,
        default=repo_root / ".aerie",
        help="secrets, Redis data, logs (default: <repo>/.aerie)",
    )
    p.add_argument("--redis-port", type=int, default=None, help=f"default $AERIE_REDIS_PORT or {DEFAULT_REDIS_PORT}")
    p.add_argument(
        "--idp-port",
        type=int,
        default=None,
        help=f"the development OpenID Connect provider; default $AERIE_DEV_IDP_PORT or {DEFAULT_IDP_PORT}",
    )
    p.add_argument("--base-port", type=int, default=None, help="tenants on this port, the others on the next ones")
    for name in names:
        p.add_argument(
            f"--port-{name}",
            type=int,
            default=None,
            dest=f"port_{env_key(name).lower()}",
            help=f"default $AERIE_{env_key(name)}_PORT or {resolve_ports(names, environ={})[name]}",
        )
    p.add_argument(
        "--appendfsync", choices=["always", "everysec", "no"], default="everysec", help="Redis AOF fsync policy"
    )
    p.add_argument(
        "--redis-cluster",
        action="store_true",
        help="a Redis Cluster (3 masters, 3 replicas) on the Redis port and the five after it, instead of one Redis",
    )
    p.add_argument("--ready-timeout", type=float, default=60.0, help="seconds every service has to become ready")
    p.add_argument(
        "-v", "--verbose", action="store_true", help="also show every service's output, prefixed with its name"
    )
    args = p.parse_args(argv)
    args.names = names
    return args


def _banner(stack: LocalStack, elapsed: float) -> str:
    s = stack.secrets
    tenants = stack.url("tenants")
    # The command finds the provider in <repo>/.aerie/local.env; elsewhere it must be told.
    default_state = stack.state_dir.resolve() == (stack.repo_root / ".aerie").resolve()
    told = "" if default_state else f"AERIE_DEV_IDP_URL={stack.idp_url} "
    sign_in = f"{told}.venv/bin/python -m aerie.local.sign_in"
    lines = [
        "",
        f"Aerie {stack.version} ({stack.commit}) is up in {elapsed:.1f}s.",
        "",
        *(f"  {name:<9} {stack.url(name)}{'/' if name == 'console' else '/docs'}" for name in stack.services),
        (
            f"  {'redis':<9} cluster, seed redis://:***@{HOST}:{stack.redis_port}/0 and 5 more nodes "
            f"(data in {stack.state_dir / 'redis-cluster'})"
            if stack.redis_cluster
            else f"  {'redis':<9} redis://:***@{HOST}:{stack.redis_port}/0 (data in {stack.state_dir / 'redis'})"
        ),
        f"  {'dev-idp':<9} {stack.idp_url} (development OpenID Connect provider)",
        "",
        f"Bootstrap client (platform:admin): {s.bootstrap_client_id} / {s.bootstrap_client_secret}",
        f"Everything above, for scripts and tests: {stack.state_dir / 'local.env'}",
        "",
        "Get a token:",
        f"  curl -s -u '{s.bootstrap_client_id}:{s.bootstrap_client_secret}' "
        f"-d grant_type=client_credentials {tenants}/v1/oauth/token",
        "",
        "Sign a person in at the dev provider (prints their ID token, for the token exchange):",
        f"  {sign_in} admin@example.com     (the platform-admin)",
        f"  {sign_in} alice@example.com     (anyone a tenant invites; README, first session)",
        "",
        f"Logs in {stack.state_dir / 'logs'}. Ctrl-C stops everything.",
    ]
    if "tenants" not in stack.services:
        lines.insert(-2, "  (tenants is not running: services/tenants has no uwsgi.ini yet)")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    try:
        repo_root = find_repo_root()
    except RepoNotFound as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    args = _parse_args(argv, repo_root)
    try:
        ports = resolve_ports(
            args.names,
            overrides={n: getattr(args, f"port_{env_key(n).lower()}") for n in args.names},
            base_port=args.base_port,
        )
        redis_port = args.redis_port or port_from_env(os.environ, "AERIE_REDIS_PORT") or DEFAULT_REDIS_PORT
        idp_port = args.idp_port or port_from_env(os.environ, "AERIE_DEV_IDP_PORT") or DEFAULT_IDP_PORT
    except StackError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    stack = LocalStack(
        repo_root,
        args.state_dir,
        ports=ports,
        redis_port=redis_port,
        idp_port=idp_port,
        redis_appendfsync=args.appendfsync,
        redis_cluster=args.redis_cluster,
        ready_timeout=args.ready_timeout,
        verbose=args.verbose,
        echo=lambda msg: print(msg, flush=True),
    )
    if not stack.services:
        print("note: no services/<name>/uwsgi.ini found yet; running Redis alone", flush=True)

    def on_term(_signum: int, _frame: object) -> None:
        raise _Terminated

    signal.signal(signal.SIGTERM, on_term)
    started = time.monotonic()
    status = 0
    try:
        stack.start()
        print(_banner(stack, time.monotonic() - started), flush=True)
        while True:
            time.sleep(0.5)
            dead = stack.dead()
            if dead:
                print(f"\n{', '.join(dead)} exited unexpectedly; stopping everything.", file=sys.stderr, flush=True)
                for name in stack.services:
                    if any(d.startswith(f"{name} ") for d in dead):
                        print(stack.log_tail(name), file=sys.stderr, flush=True)
                status = 1
                break
    except (KeyboardInterrupt, _Terminated):
        print("\nstopping...", flush=True)
    except StackError as exc:
        print(f"\nerror: {exc}", file=sys.stderr, flush=True)
        status = 1
    finally:
        # A second Ctrl-C must not leave processes behind half-way through stopping them.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        stack.stop()
    print("stopped.", flush=True)
    return status
