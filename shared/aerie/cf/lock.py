"""``make lock``: each app's ``requirements.lock``, the exact third-party wheels ``make stage`` ships.

Without a lock, two stages of the same commit could vendor different versions (whatever the
index offered that day), so what was tested is not what is pushed. The lock pins every
distribution a service runs, with the sha256 of each of its files, resolved by
``uv pip compile --generate-hashes`` for the platform the apps run on (CPython
:data:`~aerie.cf.stage.DEFAULT_PYTHON`, manylinux x86_64 up to cflinuxfs4's glibc).

An app is a service (``services/<name>/``) or the synthetic monitor, :data:`MONITOR`, whose
``requirements.txt`` and lock sit in ``e2e/`` beside the journeys it runs (:func:`app_dir`).
Its inputs are the app's ``requirements.txt`` and the runtime dependencies of
``aerie-shared`` and ``aerie-client`` (their pyprojects), less those two: they are built
from this repository by ``make stage``, which adds them to the staged requirements with the
hashes of the wheels it built. The lock's header holds the sha256 of those inputs, so a
stale lock is found without the network: ``make stage`` refuses it and a unit test fails
(shared/tests/test_cf_lock.py), both saying to run ``make lock``.
"""

from __future__ import annotations

import argparse
import hashlib
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
from collections.abc import Sequence
from pathlib import Path

from aerie.suite.layout import find_repo_root

__all__ = [
    "LOCAL_DISTRIBUTIONS",
    "LOCK_NAME",
    "MONITOR",
    "LockError",
    "app_dir",
    "check_lock",
    "compile_lock",
    "inputs_digest",
    "lock_inputs",
    "lock_path",
    "main",
    "third_party_requirements",
]

LOCK_NAME = "requirements.lock"
#: The synthetic monitor (:mod:`aerie.synthetic`, ``manifests/monitor.yml``): locked, staged and
#: pushed like a service, but its folder is ``e2e/``: what it runs is the journeys there.
MONITOR = "monitor"
#: Built from this repository by ``make stage``, never fetched from an index.
LOCAL_DISTRIBUTIONS = frozenset({"aerie-shared", "aerie-client"})
#: The target the lock resolves for; part of the digest, so changing it makes every lock stale.
PYTHON = "3.11"
PLATFORM = "x86_64-manylinux_2_35"
_DIGEST = re.compile(r"^# inputs-sha256: (?P<digest>[0-9a-f]{64})$", re.MULTILINE)
_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")


class LockError(RuntimeError):
    """A lock is missing, stale or cannot be made; the message says which and what to run."""


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _is_local(requirement: str) -> bool:
    match = _NAME.match(requirement)
    return bool(match) and _canonical(match.group(1)) in LOCAL_DISTRIBUTIONS


def app_dir(repo_root: Path, app: str) -> Path:
    """The folder holding ``app``'s ``requirements.txt`` and lock: ``services/<app>``, or ``e2e`` for the monitor."""
    return Path(repo_root) / "e2e" if app == MONITOR else Path(repo_root) / "services" / app


def lock_path(repo_root: Path, service: str) -> Path:
    return app_dir(repo_root, service) / LOCK_NAME


def lock_inputs(repo_root: Path, service: str) -> list[Path]:
    """The files the lock of ``service`` is compiled from."""
    repo = Path(repo_root)
    return [
        app_dir(repo, service) / "requirements.txt",
        repo / "shared" / "pyproject.toml",
        repo / "shared" / "client" / "pyproject.toml",
    ]


def third_party_requirements(repo_root: Path, service: str) -> list[str]:
    """What the lock resolves: the inputs' requirements, without the local distributions.

    Only the requirements count, not the rest of the files, so a changed description or
    tool setting in a pyproject does not make a lock stale, while any changed bound does.
    """
    service_reqs, *pyprojects = lock_inputs(repo_root, service)
    found: list[str] = []
    for raw in service_reqs.read_text(encoding="utf-8").splitlines():
        line = raw.split("#", 1)[0].strip()
        if line:
            found.append(line)
    extras = _local_extras(found)
    for pyproject in pyprojects:
        project = tomllib.loads(pyproject.read_text(encoding="utf-8")).get("project", {})
        found.extend(str(r).strip() for r in project.get("dependencies", []))
        for extra in sorted(extras.get(_canonical(str(project.get("name", ""))), ())):
            found.extend(str(r).strip() for r in project.get("optional-dependencies", {}).get(extra, []))
    return [r for r in dict.fromkeys(found) if not _is_local(r)]


def _local_extras(requirements: list[str]) -> dict[str, set[str]]:
    """The extras a service asks of the local distributions (``aerie-shared[tracing]``)."""
    out: dict[str, set[str]] = {}
    for requirement in requirements:
        match = re.match(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*\[([^\]]*)\]", requirement)
        if match and _canonical(match.group(1)) in LOCAL_DISTRIBUTIONS:
            names = {e.strip() for e in match.group(2).split(",") if e.strip()}
            out.setdefault(_canonical(match.group(1)), set()).update(names)
    return out


def inputs_digest(repo_root: Path, service: str) -> str:
    """The sha256 of what the lock of ``service`` resolves and for which target."""
    text = f"python {PYTHON}\nplatform {PLATFORM}\n" + "".join(
        f"{r}\n" for r in third_party_requirements(repo_root, service)
    )
    return hashlib.sha256(text.encode()).hexdigest()


def _header(service: str, digest: str) -> str:
    return (
        f"# The exact third-party distributions {service} runs, with their hashes; `make lock` makes it\n"
        f"# (uv pip compile --generate-hashes, CPython {PYTHON} on {PLATFORM}): do not edit.\n"
        "# make stage adds the aerie-shared and aerie-client wheels it builds, with their hashes.\n"
        f"# inputs-sha256: {digest}\n"
    )


def check_lock(repo_root: Path, service: str) -> Path:
    """The lock of ``service`` if it matches its inputs; else :class:`LockError` naming ``make lock``."""
    path = lock_path(repo_root, service)
    folder = app_dir(repo_root, service).relative_to(repo_root)
    where = f"{folder}/{LOCK_NAME}"
    if not path.is_file():
        raise LockError(f"{where} is missing: run `make lock`")
    match = _DIGEST.search(path.read_text(encoding="utf-8"))
    if match is None:
        raise LockError(f"{where} has no inputs-sha256 line: run `make lock`")
    if match["digest"] != inputs_digest(repo_root, service):
        raise LockError(
            f"{where} is stale: {folder}/requirements.txt or the shared pyprojects changed "
            "since it was made; run `make lock` and commit it"
        )
    return path


def _uv() -> str:
    try:
        from uv import find_uv_bin  # type: ignore[import-not-found, import-untyped, unused-ignore]

        return str(find_uv_bin())
    except (ImportError, FileNotFoundError):
        found = shutil.which("uv")
        if found is None:
            raise LockError("uv is not installed (make install brings it with tox-uv)") from None
        return found


def compile_lock(repo_root: Path, service: str) -> Path:
    """Resolve and write the lock of ``service`` (network: the package index)."""
    requirements = third_party_requirements(repo_root, service)
    with tempfile.TemporaryDirectory(prefix="aerie-lock-") as tmp:
        source = Path(tmp) / "requirements.in"
        source.write_text("".join(f"{r}\n" for r in requirements), encoding="utf-8")
        result = subprocess.run(
            [
                _uv(),
                "pip",
                "compile",
                "--quiet",
                "--generate-hashes",
                "--no-header",
                "--no-annotate",
                "--python-version",
                PYTHON,
                "--python-platform",
                PLATFORM,
                str(source),
            ],
            capture_output=True,
            text=True,
        )
    if result.returncode != 0:
        raise LockError(f"uv pip compile for {service} failed:\n{result.stderr[-3000:]}")
    path = lock_path(repo_root, service)
    path.write_text(_header(service, inputs_digest(repo_root, service)) + result.stdout, encoding="utf-8")
    return path


def main(argv: Sequence[str] | None = None) -> int:
    from aerie.cf.stage import stageable_apps

    parser = argparse.ArgumentParser(prog="python -m aerie.cf.lock", description=__doc__.split("\n\n")[0])
    parser.add_argument("services", nargs="*", help=f"default: every stageable service and the {MONITOR}")
    parser.add_argument("--check", action="store_true", help="only check that every lock matches its inputs")
    args = parser.parse_args(argv)
    repo = find_repo_root()
    try:
        for service in args.services or stageable_apps(repo):
            if args.check:
                check_lock(repo, service)
            else:
                print(f"locked {compile_lock(repo, service).relative_to(repo)}")
    except LockError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
