"""Where the services are and which client the command acts as: flags, then environment, then an env file.

The env file is what ``make run`` writes (``.aerie/local.env``, ``KEY=value`` lines), so
against a local stack the command works with no setup; it is looked for in the current
folder and its parents, so it works from anywhere inside the repository. Against staging or
production the ``AERIE_*`` variables of docs/api.md say the same thing, and a flag wins over
both for a one-off call.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from aerie.cli.errors import ConfigError

__all__ = ["DEFAULT_ENV_FILE", "SERVICES", "Settings", "find_env_file", "read_env_file"]

SERVICES = ("tenants", "projects", "flags", "audit")
DEFAULT_ENV_FILE = Path(".aerie") / "local.env"


def read_env_file(path: Path) -> dict[str, str]:
    """``KEY=value`` lines; blank lines, ``#`` comments and an ``export`` prefix are allowed, quotes stripped."""
    values: dict[str, str] = {}
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read the env file {path}: {exc.strerror or exc}") from None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.removeprefix("export ").partition("=")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[key.strip()] = value
    return values


def find_env_file(start: Path) -> Path | None:
    """``.aerie/local.env`` in ``start`` or the nearest parent that has one."""
    for folder in (start, *start.parents):
        candidate = folder / DEFAULT_ENV_FILE
        if candidate.is_file():
            return candidate
    return None


@dataclass(frozen=True)
class Settings:
    """The resolved configuration of one run."""

    urls: Mapping[str, str] = field(default_factory=dict)
    client_id: str | None = None
    client_secret: str | None = None
    timeout: float = 10.0
    env_file: Path | None = None

    @classmethod
    def resolve(
        cls,
        *,
        flags: Mapping[str, str | None],
        environ: Mapping[str, str],
        env_file: str | None,
        cwd: Path | None = None,
        timeout: float = 10.0,
    ) -> Settings:
        """Merge the three sources; ``env_file`` None means the default file, if there is one.

        Credentials are taken as a pair from one source, never an id from one place and a
        secret from another: ``--client-id``/``--client-secret``, else ``AERIE_CLIENT_ID``/
        ``AERIE_CLIENT_SECRET``, else the bootstrap client that ``make run`` writes.
        """
        if env_file is not None:
            path: Path | None = Path(env_file)
            if not path.is_file():
                raise ConfigError(f"the env file {env_file} does not exist")
        else:
            path = find_env_file(cwd or Path.cwd())
        merged = {**(read_env_file(path) if path else {}), **{k: v for k, v in environ.items() if v}}
        urls = {}
        for service in SERVICES:
            value = flags.get(f"{service}_url") or merged.get(f"AERIE_{service.upper()}_URL")
            if value:
                urls[service] = value.rstrip("/")
        client_id, secret = flags.get("client_id"), flags.get("client_secret")
        if not (client_id or secret):
            for prefix in ("AERIE_CLIENT", "AERIE_BOOTSTRAP_CLIENT"):
                if merged.get(f"{prefix}_ID") and merged.get(f"{prefix}_SECRET"):
                    client_id, secret = merged[f"{prefix}_ID"], merged[f"{prefix}_SECRET"]
                    break
        return cls(urls=urls, client_id=client_id, client_secret=secret, timeout=timeout, env_file=path)

    def url(self, service: str) -> str:
        """The base URL of ``service``, or a :class:`ConfigError` saying every way to give it."""
        try:
            return self.urls[service]
        except KeyError:
            raise ConfigError(
                f"no URL for the {service} service: pass --{service}-url or set AERIE_{service.upper()}_URL"
                f" (or run `make run`, which writes {DEFAULT_ENV_FILE})"
            ) from None

    def credentials(self) -> tuple[str, str]:
        """The platform client's id and secret, or a :class:`ConfigError` saying how to give them."""
        if not (self.client_id and self.client_secret):
            raise ConfigError(
                "no client credentials: pass --client-id and --client-secret, or set AERIE_CLIENT_ID and"
                " AERIE_CLIENT_SECRET (or AERIE_BOOTSTRAP_CLIENT_ID and AERIE_BOOTSTRAP_CLIENT_SECRET)"
            )
        return self.client_id, self.client_secret
