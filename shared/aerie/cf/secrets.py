"""The secrets vars file of a Cloud Foundry environment: made once, never committed.

It is kept apart from ``manifests/vars/<env>.yml`` (tracked) as
``manifests/vars/<env>.secrets.yml`` (ignored by git, mode 0600). It holds what the apps
need: the tenants service's signing keys and bootstrap client, and each other service's
own client id and secret with the hashes the issuer checks them against.

``make deploy`` does not hand these to ``cf push``: each app's own secrets go into a
user-provided service ``aerie-secrets-<app>`` (:func:`app_secrets`), bound by its manifest
and read from ``VCAP_SERVICES`` (:func:`aerie.config.secrets_from_bindings`), so ``cf env``
shows no secret in the app's environment. Every deploy updates that service before the
rolling push, whose restarts make the instances read it again: rotating is editing this
file, then ``make deploy``.

Run ``python -m aerie.cf.secrets staging`` once per environment; an existing file is never
overwritten (its keys sign live tokens). Rotating the signing key takes three pushes of
tenants, because during a rolling push old and new instances answer the JWKS route side by
side: ``--add-signing-key`` (published, not yet signing), ``--sign-with-newest`` (it signs,
the old one still verifies), and after the token lifetime ``--drop-old-keys``.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from aerie.cf.lock import MONITOR
from aerie.suite.secrets import (
    DEFAULT_CLIENT_SERVICES,
    generate,
    new_signing_jwks,
    write_private_file,
)

__all__ = [
    "SECRETS_SERVICE_TAG",
    "add_signing_key",
    "app_secret_vars",
    "app_secrets",
    "drop_old_keys",
    "is_secret_var",
    "main",
    "secrets_path",
    "secrets_service",
    "secrets_vars",
    "sign_with_newest",
]

_SECRET_VARS = frozenset({"signing_keys", "bootstrap_client_id", "bootstrap_client_secret", "service_clients"})


def is_secret_var(name: str) -> bool:
    """Whether a manifest variable comes from the secrets vars file (and never from a tracked one)."""
    return name in _SECRET_VARS or name.endswith(("_client_id", "_client_secret"))


#: The tag :mod:`aerie.config` finds a bound secrets service by.
SECRETS_SERVICE_TAG = "aerie-secrets"
#: The issuer's own secrets; every other app holds only its platform client.
_TENANTS_SECRETS = {
    "AERIE_SIGNING_KEYS": "signing_keys",
    "AERIE_BOOTSTRAP_CLIENT_ID": "bootstrap_client_id",
    "AERIE_BOOTSTRAP_CLIENT_SECRET": "bootstrap_client_secret",
    "AERIE_SERVICE_CLIENTS": "service_clients",
}


#: The synthetic monitor's: the journeys it runs act as the platform, through the bootstrap client.
_MONITOR_SECRETS = {
    "AERIE_BOOTSTRAP_CLIENT_ID": "bootstrap_client_id",
    "AERIE_BOOTSTRAP_CLIENT_SECRET": "bootstrap_client_secret",
}


def secrets_service(service: str) -> str:
    """The user-provided service holding ``service``'s secrets; its manifest binds it by this name."""
    return f"{SECRETS_SERVICE_TAG}-{service}"


def app_secret_vars(service: str) -> dict[str, str]:
    """The ``AERIE_*`` settings ``service`` keeps in its secrets service, each with its ((var)).

    Only what that app needs: a leaked binding of one service then never exposes the
    issuer's signing keys or another service's client.
    """
    if service == "tenants":
        return dict(_TENANTS_SECRETS)
    if service == MONITOR:
        return dict(_MONITOR_SECRETS)
    return {"AERIE_CLIENT_ID": f"{service}_client_id", "AERIE_CLIENT_SECRET": f"{service}_client_secret"}


def app_secrets(service: str, variables: Mapping[str, Any]) -> dict[str, str]:
    """The credentials of ``service``'s secrets service, from the secrets vars; KeyError names a missing one."""
    return {setting: str(variables[name]) for setting, name in app_secret_vars(service).items()}


def secrets_path(repo_root: Path, environment: str) -> Path:
    return Path(repo_root) / "manifests" / "vars" / f"{environment}.secrets.yml"


def secrets_vars(services: Sequence[str] = DEFAULT_CLIENT_SERVICES) -> dict[str, str]:
    """Fresh secrets as manifest variables; JSON values as strings, as env values must be."""
    made = generate(services)
    out: dict[str, str] = {
        "signing_keys": made.signing_keys_json(),
        "bootstrap_client_id": made.bootstrap_client_id,
        "bootstrap_client_secret": made.bootstrap_client_secret,
        "service_clients": made.service_clients_json(),
    }
    for name, client in sorted(made.service_clients.items()):
        out[f"{name}_client_id"] = client.client_id
        out[f"{name}_client_secret"] = client.secret
    return out


def _keys(current: Mapping[str, Any]) -> list[dict[str, Any]]:
    return list(json.loads(current["signing_keys"])["keys"])


def _with_keys(current: Mapping[str, Any], keys: list[dict[str, Any]]) -> dict[str, Any]:
    return {**current, "signing_keys": json.dumps({"keys": keys}, separators=(",", ":"))}


def add_signing_key(current: Mapping[str, Any]) -> dict[str, Any]:
    """``current`` with a fresh key last: published in the JWKS, not yet signing."""
    return _with_keys(current, [*_keys(current), *new_signing_jwks()["keys"]])


def sign_with_newest(current: Mapping[str, Any]) -> dict[str, Any]:
    """``current`` with its newest (last) key moved first, so it signs; the others still verify."""
    keys = _keys(current)
    return _with_keys(current, [keys[-1], *keys[:-1]])


def drop_old_keys(current: Mapping[str, Any]) -> dict[str, Any]:
    """``current`` with only the signing key left (once every token of the others expired)."""
    return _with_keys(current, _keys(current)[:1])


def _write(path: Path, data: Mapping[str, Any]) -> None:
    header = "# Secrets for cf push --vars-file. Never commit this file (it is in .gitignore).\n"
    write_private_file(path, header + yaml.safe_dump(dict(data), sort_keys=True, width=1_000_000))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m aerie.cf.secrets", description=__doc__.split("\n\n")[0])
    parser.add_argument("environment", help="staging, production, ...")
    parser.add_argument("--repo", type=Path, default=Path.cwd(), help="the repository root (default: cwd)")
    parser.add_argument("--out", type=Path, help="where to write (default: manifests/vars/<env>.secrets.yml)")
    step = parser.add_mutually_exclusive_group()
    step.add_argument("--add-signing-key", action="store_true", help="rotation 1/3: publish a new key")
    step.add_argument("--sign-with-newest", action="store_true", help="rotation 2/3: the new key signs")
    step.add_argument("--drop-old-keys", action="store_true", help="rotation 3/3: after the token lifetime")
    args = parser.parse_args(argv)
    path = args.out or secrets_path(args.repo, args.environment)
    steps = {"add_signing_key": add_signing_key, "sign_with_newest": sign_with_newest, "drop_old_keys": drop_old_keys}
    rotation = next((step for flag, step in steps.items() if getattr(args, flag)), None)
    if rotation is not None:
        if not path.exists():
            print(f"error: {path} does not exist; run without options first", file=sys.stderr)
            return 1
        current = rotation(yaml.safe_load(path.read_text(encoding="utf-8")))
        _write(path, current)
        kids = [k["kid"] for k in json.loads(current["signing_keys"])["keys"]]
        print(f"{path}: signing keys now {', '.join(kids)} (the first signs); `make deploy` applies them")
        return 0
    if path.exists():
        print(f"{path} exists; not overwriting live secrets", file=sys.stderr)
        return 1
    _write(path, secrets_vars())
    print(f"wrote {path} (mode 0600); keep a copy in your secret store")
    return 0


if __name__ == "__main__":
    sys.exit(main())
