"""Where the services live in a checkout and the order they start in."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

__all__ = ["KNOWN_SERVICES", "RepoNotFound", "find_repo_root", "service_order"]

#: Start order: the issuer first, so the others find its JWKS when they come up; the console,
#: which only calls the others, last.
KNOWN_SERVICES: tuple[str, ...] = ("tenants", "projects", "flags", "audit", "console")


class RepoNotFound(RuntimeError):
    """No Aerie checkout at or above the directory the tooling runs in."""


def find_repo_root(start: Path | None = None) -> Path:
    """The nearest directory at or above ``start`` (default: cwd) that holds ``services/``."""
    here = Path(start or Path.cwd()).resolve()
    for candidate in (here, *here.parents):
        if (candidate / "services").is_dir():
            return candidate
    # Run from elsewhere: this file sits at <repo>/shared/aerie/suite/layout.py.
    fallback = Path(__file__).resolve().parents[3]
    if (fallback / "services").is_dir():
        return fallback
    raise RepoNotFound(f"no services/ folder at or above {here}; run from inside the Aerie repository")


def service_order(names: Sequence[str]) -> list[str]:
    """Known services in their start order, any others alphabetically after them."""
    known = [n for n in KNOWN_SERVICES if n in names]
    return known + sorted(n for n in names if n not in KNOWN_SERVICES)
