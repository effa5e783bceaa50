"""Which services the local stack runs, in what order, and on which ports."""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping, Sequence
from pathlib import Path

from aerie.local.errors import StackError
from aerie.suite.layout import KNOWN_SERVICES, service_order

__all__ = [
    "DEFAULT_PORTS",
    "DEFAULT_REDIS_PORT",
    "HOST",
    "discover_services",
    "env_key",
    "port_from_env",
    "port_is_free",
    "resolve_ports",
]

DEFAULT_PORTS: Mapping[str, int] = {"tenants": 8081, "projects": 8082, "flags": 8083, "audit": 8084, "console": 8085}
DEFAULT_REDIS_PORT = 6380
HOST = "127.0.0.1"


def discover_services(repo_root: Path) -> list[str]:
    """Every ``services/<name>/`` with a ``uwsgi.ini``: a folder still being written is skipped."""
    services_dir = Path(repo_root) / "services"
    found = (
        [p.name for p in services_dir.iterdir() if p.is_dir() and (p / "uwsgi.ini").is_file()]
        if services_dir.is_dir()
        else []
    )
    return service_order(found)


def env_key(name: str) -> str:
    """A service name as it appears in variable names: ``AERIE_<KEY>_URL``."""
    return name.upper().replace("-", "_")


def resolve_ports(
    services: Sequence[str],
    *,
    overrides: Mapping[str, int | None] | None = None,
    base_port: int | None = None,
    environ: Mapping[str, str] | None = None,
) -> dict[str, int]:
    """The port of every known and discovered service.

    Precedence, most specific first: ``--port-<name>``, ``--base-port`` (+ position in the
    start order), ``AERIE_<NAME>_PORT``, ``AERIE_BASE_PORT``, the default (8081..8084, then on).
    """
    env = os.environ if environ is None else environ
    overrides = overrides or {}
    names = service_order(list(dict.fromkeys([*KNOWN_SERVICES, *services])))
    env_base = port_from_env(env, "AERIE_BASE_PORT")
    ports: dict[str, int] = {}
    for index, name in enumerate(names):
        default = DEFAULT_PORTS.get(name, DEFAULT_PORTS["tenants"] + index)
        candidates = (
            overrides.get(name),
            base_port + index if base_port is not None else None,
            port_from_env(env, f"AERIE_{env_key(name)}_PORT"),
            env_base + index if env_base is not None else None,
            default,
        )
        ports[name] = next(p for p in candidates if p is not None)
    return ports


def port_from_env(env: Mapping[str, str], name: str) -> int | None:
    """The port in variable ``name``, or None when it is unset or empty."""
    raw = env.get(name)
    if not raw:
        return None
    try:
        port = int(raw)
    except ValueError:
        raise StackError(f"{name} must be a port number, got {raw!r}") from None
    if not 0 < port < 65536:
        raise StackError(f"{name} must be between 1 and 65535, got {port}")
    return port


def port_is_free(port: int) -> bool:
    """Whether a listener could bind ``port`` (uWSGI binds every interface, so check that)."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("", port))
        except OSError:
            return False
    return True
