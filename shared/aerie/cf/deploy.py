"""``make deploy ENV=staging``: the Redis service, a rolling push of each app, then the smoke tests.

A multi-app manifest cannot be pushed with ``--strategy rolling``, so every service has
its own manifest and is pushed on its own, in dependency order (tenants, the issuer,
first), and the synthetic monitor (``aerie-monitor``, staged as ``monitor``) after them all:
it runs the smoke journeys against what was just pushed. Before anything runs, every staged
manifest is interpolated with the environment's vars and checked against the Cloud Foundry
manifest schema, so a missing variable fails the deploy before the first app changes, not
halfway through.

The Redis service is created with ``redis_config`` (``cf create-service -c``) whose
``maxmemory-policy`` is ``noeviction``, set when the vars leave it out and refused when they
name another: Redis holds the suite's only copy of its data, and an evicting Redis loses
tenants and audit trails while every write still succeeds. An existing service is left
as it is; the apps' ``/ready`` fails when it evicts or does not persist.

Each app's secrets go into a user-provided service, ``aerie-secrets-<service>``
(:func:`aerie.cf.secrets.app_secrets`), that its manifest binds: the app reads them from
``VCAP_SERVICES``, and ``cf env`` shows no secret among its environment variables. The
service is created when missing and updated otherwise, right before that app's rolling
push, whose restarts make every instance read the new credentials; so a rotation in the
secrets vars file reaches the apps with the next deploy. The credentials go to ``cf`` as a
JSON file readable by the owner alone, removed once ``cf`` returns, never on its command
line (which ``ps`` shows every user).

``DRY_RUN=1`` (or ``--dry-run``) prints the exact commands instead of running them;
secrets are never printed, only the vars file that holds them.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aerie.cf.lock import MONITOR
from aerie.cf.manifest import (
    SCHEMA_RELATIVE_PATH,
    ManifestError,
    interpolate,
    load_manifest,
    load_vars,
    validate_manifest,
)
from aerie.cf.secrets import SECRETS_SERVICE_TAG, app_secret_vars, app_secrets, secrets_service
from aerie.suite.layout import KNOWN_SERVICES, find_repo_root, service_order
from aerie.suite.version import GitVersion, describe

__all__ = ["CREDENTIALS_FILE", "DeployError", "Step", "main", "plan", "push_order", "redis_config", "run"]

_SMOKE_SECRETS = ("bootstrap_client_id", "bootstrap_client_secret")
#: The only ``maxmemory-policy`` the services accept (:mod:`aerie.readiness`).
REDIS_POLICY = "noeviction"
#: Stands in a step's ``argv`` for the path of the 0600 file of its ``credentials``.
CREDENTIALS_FILE = "<credentials-file>"


class DeployError(RuntimeError):
    """The deploy cannot go on; the message says why."""


@dataclass(frozen=True)
class Step:
    """One command; with ``unless``, it runs only when that check command fails.

    With ``instead`` too, a check that succeeds runs ``instead`` (an update of what exists)
    rather than skipping. ``credentials`` are written as JSON to a 0600 file whose path
    replaces :data:`CREDENTIALS_FILE` in the command, and shown as ``credentials_ref``.
    """

    argv: tuple[str, ...]
    unless: tuple[str, ...] | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    #: Names in ``env`` whose values are secret: shown as a reference, never as the value.
    secret_env: Mapping[str, str] = field(default_factory=dict)
    instead: tuple[str, ...] | None = None
    credentials: Mapping[str, str] | None = field(default=None, repr=False)
    credentials_ref: str = ""

    def _command(self, argv: Sequence[str]) -> str:
        shown = [self.credentials_ref if arg == CREDENTIALS_FILE else arg for arg in argv]
        assigns = [f"{k}={shlex.quote(self.secret_env.get(k, v))}" for k, v in sorted(self.env.items())]
        return " ".join([*assigns, shlex.join(shown)])

    def shell(self) -> str:
        """The step as one shell line, as DRY_RUN prints it."""
        line = self._command(self.argv)
        if self.unless and self.instead:
            check = shlex.join(self.unless)
            return f"if {check} >/dev/null 2>&1; then {self._command(self.instead)}; else {line}; fi"
        if self.unless:
            return f"{shlex.join(self.unless)} >/dev/null 2>&1 || {line}"
        return line


@dataclass(frozen=True)
class Target:
    environment: str
    vars_files: tuple[Path, ...]
    variables: Mapping[str, Any]
    version: GitVersion


def push_order(apps: Sequence[str]) -> list[str]:
    """The services in their start order, then the monitor: it tests what is already pushed."""
    return [*service_order([a for a in apps if a != MONITOR]), *([MONITOR] if MONITOR in apps else [])]


def _rel(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)


def plan(
    repo_root: Path,
    target: Target,
    services: Sequence[str],
    stage_root: Path,
    *,
    smoke: bool = True,
    placeholder_secrets: bool = False,
) -> list[Step]:
    """The commands of a deploy; validates every staged manifest first.

    The last of ``target.vars_files`` is the secrets vars file. ``cf push`` gets only the
    others, and the manifests are checked with their variables alone: a manifest naming a
    secret then fails here, before its value could reach the app's environment.
    ``placeholder_secrets`` lets a dry run without the secrets file plan the secrets
    services (each missing secret stands in as a placeholder, never shown anyway).
    """
    release = {"version": target.version.version, "commit": target.version.commit}
    variables = {**target.variables, **release}
    public_files = target.vars_files[:-1]
    pushed = {**load_vars(list(public_files)), **release}
    secret_file = _rel(target.vars_files[-1], repo_root)
    for name in ("redis_service", "redis_offering", "redis_plan"):
        if not variables.get(name):
            raise DeployError(f"{name} is not set in {', '.join(str(p) for p in target.vars_files)}")
    for service in services:
        manifest_path = stage_root / service / "manifest.yml"
        if not manifest_path.is_file():
            raise DeployError(f"{_rel(manifest_path, repo_root)} is missing: run `make stage` first")
        manifest = load_manifest(manifest_path)
        try:
            validate_manifest(interpolate(manifest, pushed), repo_root / SCHEMA_RELATIVE_PATH)
        except ManifestError as exc:
            raise DeployError(f"{_rel(manifest_path, repo_root)}: {exc}") from None
        missing = [n for n in app_secret_vars(service).values() if n not in variables]
        if missing and not placeholder_secrets:
            raise DeployError(f"{secret_file} has no {', '.join(missing)} (the secrets of {service})")

    redis = variables["redis_service"]
    config = json.dumps(redis_config(variables, target.vars_files), sort_keys=True, separators=(",", ":"))
    steps = [
        Step(
            (
                "cf",
                "create-service",
                variables["redis_offering"],
                variables["redis_plan"],
                redis,
                "-c",
                config,
                "--wait",
            ),
            unless=("cf", "service", redis),
        )
    ]
    vars_args = [arg for path in public_files for arg in ("--vars-file", _rel(path, repo_root))]
    for service in services:
        app_dir = stage_root / service
        app = load_manifest(app_dir / "manifest.yml")["applications"][0]["name"]
        steps.append(_secrets_step(service, variables, secret_file))
        steps.append(
            Step(
                (
                    "cf",
                    "push",
                    app,
                    "-f",
                    _rel(app_dir / "manifest.yml", repo_root),
                    "-p",
                    _rel(app_dir, repo_root),
                    *vars_args,
                    "--var",
                    f"version={target.version.version}",
                    "--var",
                    f"commit={target.version.commit}",
                    "--strategy",
                    "rolling",
                )
            )
        )
    if smoke:
        env = {f"AERIE_{s.upper()}_URL": str(variables[f"{s}_url"]) for s in services if variables.get(f"{s}_url")}
        secret_env: dict[str, str] = {}
        for name in _SMOKE_SECRETS:
            key = f"AERIE_{name.upper()}"
            env[key] = str(variables.get(name, ""))
            secret_env[key] = f"<{name} from {secret_file}>"
        steps.append(
            Step(
                (
                    _rel(Path(sys.executable), repo_root),
                    "-m",
                    "pytest",
                    "e2e",
                    "-m",
                    "smoke",
                    "-q",
                    "-p",
                    "no:cacheprovider",
                ),
                env=env,
                secret_env=secret_env,
            )
        )
    return steps


def _secrets_step(service: str, variables: Mapping[str, Any], secret_file: str) -> Step:
    """Create ``aerie-secrets-<service>`` when missing, else update it, with the app's secrets.

    A dry run without the secrets file gets placeholders; they are never shown either way.
    """
    name = secrets_service(service)
    settings = app_secret_vars(service)
    values = {**{n: f"<{n}>" for n in settings.values()}, **variables}
    return Step(
        ("cf", "create-user-provided-service", name, "-p", CREDENTIALS_FILE, "-t", SECRETS_SERVICE_TAG),
        unless=("cf", "service", name),
        instead=("cf", "update-user-provided-service", name, "-p", CREDENTIALS_FILE),
        credentials=app_secrets(service, values),
        credentials_ref=f"<0600 JSON file: {', '.join(settings)} from {secret_file}>",
    )


@contextmanager
def _credentials_file(credentials: Mapping[str, str] | None) -> Iterator[str | None]:
    """A JSON file of ``credentials`` only the owner can read, removed after use (None: no file)."""
    if credentials is None:
        yield None
        return
    fd, path = tempfile.mkstemp(prefix="aerie-secrets-", suffix=".json")
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(dict(credentials), f)
        yield path
    finally:
        os.unlink(path)


def redis_config(variables: Mapping[str, Any], vars_files: Sequence[Path] = ()) -> dict[str, Any]:
    """The Redis service's configuration parameters: ``redis_config`` with ``noeviction``."""
    where = ", ".join(str(p) for p in vars_files) or "the vars"
    raw = variables.get("redis_config") or {}
    if not isinstance(raw, Mapping):
        raise DeployError(f"redis_config in {where} must be a mapping of Redis parameters")
    config = dict(raw)
    policy = config.setdefault("maxmemory-policy", REDIS_POLICY)
    if policy != REDIS_POLICY:
        raise DeployError(
            f"redis_config in {where} sets maxmemory-policy {policy!r}: the services need {REDIS_POLICY!r} "
            "(an evicting Redis drops tenants and audit trails)"
        )
    return config


def run(steps: Sequence[Step], cwd: Path, echo: Callable[[str], None] = print) -> None:
    """Run ``steps`` in order; the first that fails stops the deploy."""
    for step in steps:
        echo(f"$ {step.shell()}")
        argv = step.argv
        if step.unless is not None:
            check = subprocess.run(step.unless, cwd=cwd, capture_output=True)
            if check.returncode == 0:
                if step.instead is None:
                    echo("  (exists; skipped)")
                    continue
                argv = step.instead
        with _credentials_file(step.credentials) as path:
            command = [path if arg == CREDENTIALS_FILE and path else arg for arg in argv]
            result = subprocess.run(command, cwd=cwd, env={**os.environ, **step.env})
        if result.returncode != 0:
            raise DeployError(f"{shlex.join(argv[:3])} failed with status {result.returncode}")


def _git_version(repo: Path) -> GitVersion:
    try:
        return describe(repo)
    except (OSError, subprocess.SubprocessError, ValueError) as exc:
        raise DeployError(f"cannot read the version from git ({exc}); pass --version and --commit") from None


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    env = os.environ if environ is None else environ
    parser = argparse.ArgumentParser(prog="python -m aerie.cf.deploy", description=__doc__.split("\n\n")[0])
    parser.add_argument("environment", help="a vars file under manifests/vars/ (staging, production)")
    parser.add_argument(
        "services", nargs="*", help=f"default: every staged one of {', '.join(KNOWN_SERVICES)} and the {MONITOR}"
    )
    parser.add_argument("--dry-run", action="store_true", default=env.get("DRY_RUN", "") not in ("", "0"))
    parser.add_argument("--no-smoke", dest="smoke", action="store_false", help="skip the smoke tests")
    parser.add_argument("--stage", type=Path, help="the staged apps (default: <repo>/build/stage)")
    parser.add_argument("--secrets", type=Path, help="default: $AERIE_SECRETS_VARS_FILE or <env>.secrets.yml")
    parser.add_argument("--version", dest="version", help="override the version from git tags")
    parser.add_argument("--commit", help="override the commit from git")
    parser.add_argument("--repo", type=Path, help="the repository root (default: found from cwd)")
    args = parser.parse_args(argv)

    repo = (args.repo or find_repo_root()).resolve()
    stage_root = (args.stage or repo / "build" / "stage").resolve()
    vars_dir = repo / "manifests" / "vars"
    public = vars_dir / f"{args.environment}.yml"
    secrets = args.secrets or Path(env.get("AERIE_SECRETS_VARS_FILE") or vars_dir / f"{args.environment}.secrets.yml")
    secrets = secrets if secrets.is_absolute() else repo / secrets
    try:
        if not public.is_file():
            raise DeployError(f"no vars file {_rel(public, repo)} for environment {args.environment!r}")
        have_secrets = secrets.is_file()
        if not have_secrets and not args.dry_run:
            raise DeployError(
                f"{_rel(secrets, repo)} is missing: `python -m aerie.cf.secrets {args.environment}` makes one"
            )
        variables = load_vars([public, secrets] if have_secrets else [public])
        found = GitVersion(args.version, args.commit) if args.version and args.commit else _git_version(repo)
        version = GitVersion(args.version or found.version, args.commit or found.commit)
        staged = [p.name for p in stage_root.iterdir() if (p / "manifest.yml").is_file()] if stage_root.is_dir() else []
        services = push_order(args.services or staged)
        if not services:
            raise DeployError(f"nothing staged in {_rel(stage_root, repo)}: run `make stage` first")
        target = Target(args.environment, (public, secrets), variables, version)
        steps = plan(repo, target, services, stage_root, smoke=args.smoke, placeholder_secrets=not have_secrets)
        if args.dry_run:
            for step in steps:
                print(step.shell())
            return 0
        run(steps, repo)
    except (DeployError, ManifestError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
