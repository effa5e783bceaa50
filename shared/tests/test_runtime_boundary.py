"""The runtime library stands without the development tooling, and a staged app gets no tooling.

A pushed app installs the wheel ``make stage`` vendors (:func:`aerie.cf.stage.build_shared_wheel`);
the tooling packages are left out of it, so a runtime module that imported one would fail
only on Cloud Foundry. These tests make that fail here.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import tomllib
import zipfile
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from aerie.cf.stage import DEV_DISTRIBUTIONS, DEV_PACKAGES, StageError, build_shared_wheel, dev_files, stage_service

SHARED = Path(__file__).resolve().parents[1]
REPO = SHARED.parent


def _runtime_modules() -> list[str]:
    """Every module of the ``aerie`` source tree outside :data:`DEV_PACKAGES`."""
    dev = tuple(DEV_PACKAGES)
    modules = []
    for path in sorted((SHARED / "aerie").rglob("*.py")):
        parts = path.relative_to(SHARED).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        if not any(name == d or name.startswith(d + ".") for d in dev):
            modules.append(name)
    return modules


def test_the_staged_wheel_holds_the_runtime_library_and_no_tooling(tmp_path: Path) -> None:
    wheel = build_shared_wheel(REPO, tmp_path)
    assert dev_files(wheel) == []
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
    assert not [n for n in names if n.startswith(("aerie/local/", "aerie/testing/", "aerie/cf/", "aerie/suite/"))]
    assert not [n for n in names if "/tests/" in n or n.endswith(".pyc")]
    expected = {m.replace(".", "/") + ".py" for m in _runtime_modules()}
    expected = {n if (SHARED / n).is_file() else n[: -len(".py")] + "/__init__.py" for n in expected}
    assert expected <= names, sorted(expected - names)
    client_wheels = list(tmp_path.glob("aerie_client-*.whl"))
    assert len(client_wheels) == 1, "the aerie-client wheel the shared one requires is built beside it"
    with zipfile.ZipFile(client_wheels[0]) as archive:
        assert "aerie_client/flags/vectors.json" in archive.namelist()
    assert not [n for n in names if n.startswith("aerie_client/")]


def test_no_runtime_module_imports_the_tooling() -> None:
    modules = _runtime_modules()
    assert "aerie.app" in modules and "aerie.tenant_directory" in modules
    script = textwrap.dedent(
        f"""
        import importlib, importlib.abc, sys

        BLOCKED = {tuple(DEV_PACKAGES)!r}

        class Block(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if any(name == b or name.startswith(b + ".") for b in BLOCKED):
                    raise ImportError(f"runtime code imported the development tooling {{name}}")
                return None

        sys.meta_path.insert(0, Block())
        for module in {modules!r}:
            importlib.import_module(module)
        leaked = sorted(m for m in sys.modules if any(m == b or m.startswith(b + ".") for b in BLOCKED))
        assert not leaked, leaked
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]


def test_the_tooling_packages_do_not_import_each_other_in_a_circle() -> None:
    """``aerie.suite`` is what ``aerie.local`` and ``aerie.cf`` share; neither imports the other."""
    for importer, forbidden in [("aerie.local", "aerie.cf"), ("aerie.cf", "aerie.local"), ("aerie.suite", None)]:
        folder = SHARED.joinpath(*importer.split("."))
        for path in folder.rglob("*.py"):
            text = path.read_text(encoding="utf-8")
            others = [forbidden] if forbidden else ["aerie.local", "aerie.cf", "aerie.testing"]
            for other in others:
                assert f"from {other}" not in text and f"import {other}" not in text, f"{path} imports {other}"


def _closure(requirements: list[str]) -> set[str]:
    """Every distribution ``requirements`` install, by the installed packages' own metadata.

    A requirement's marker is evaluated where it is written: at the top level against this
    interpreter, below it against the extras its parent was asked with.
    """
    todo = [r for r in map(Requirement, requirements) if r.marker is None or r.marker.evaluate({"extra": ""})]
    seen: set[tuple[str, frozenset[str]]] = set()
    while todo:
        requirement = todo.pop()
        key = (canonicalize_name(requirement.name), frozenset(requirement.extras))
        if key in seen:
            continue
        seen.add(key)
        try:
            requires = metadata.distribution(requirement.name).requires or []
        except metadata.PackageNotFoundError:
            continue  # not installed here: pip would resolve it, but it names no tooling by itself
        contexts = [{"extra": e} for e in ("", *requirement.extras)]
        for raw in requires:
            child = Requirement(raw)
            if child.marker is None or any(child.marker.evaluate(c) for c in contexts):
                todo.append(child)
    return {name for name, _ in seen}


def _project() -> dict:
    return tomllib.loads((SHARED / "pyproject.toml").read_text(encoding="utf-8"))["project"]


def _staged_requirements() -> list[str]:
    """What a staged app installs: the shared library's own dependencies and each service's others."""
    lines = list(_project()["dependencies"])
    for path in sorted((REPO / "services").glob("*/requirements.txt")):
        for line in path.read_text(encoding="utf-8").splitlines():
            line = line.split("#", 1)[0].strip()
            if line and canonicalize_name(Requirement(line).name) != "aerie-shared":
                lines.append(line)
    return lines


def test_the_development_provider_and_its_web_stack_come_in_through_the_local_extra_alone() -> None:
    """``make run``'s OpenID Connect provider brings Flask, Authlib, uvicorn...: none of it is staged."""
    local = _closure(_project()["optional-dependencies"]["local"])
    staged = _closure(_staged_requirements())
    provider_stack = {"oidc-provider-mock", "flask", "authlib", "uvicorn", "htpy", "joserfc", "pydantic", "httpx"}
    assert provider_stack <= local, sorted(provider_stack - local)
    assert provider_stack <= DEV_DISTRIBUTIONS
    assert "falcon" in staged and "pyjwt" in staged and "cryptography" in staged  # the walk does reach deps
    assert not staged & DEV_DISTRIBUTIONS, sorted(staged & DEV_DISTRIBUTIONS)
    # Everything the dev extras add over what a staged app installs is named, so make stage refuses it.
    extras = _project()["optional-dependencies"]
    added = _closure([*extras["local"], *extras["cf"]]) - staged
    unnamed = added - DEV_DISTRIBUTIONS - _DEV_ONLY_HELPERS
    assert not unnamed, f"add to aerie.cf.stage.DEV_DISTRIBUTIONS: {sorted(unnamed)}"


#: Small libraries the dev extras also pull in that a runtime dependency might one day need
#: too; they are tooling today but not worth refusing in a vendor/ folder.
_DEV_ONLY_HELPERS = {
    "annotated-types",
    "attrs",
    "jsonschema-specifications",
    "psutil",
    "referencing",
    "rpds-py",
    "setuptools",
    "typing-inspection",
}


def test_the_staged_wheel_names_the_tooling_only_as_extras(tmp_path: Path) -> None:
    """pip installs a wheel's ``extra == "local"`` requirements only when asked: staging never asks."""
    wheel = build_shared_wheel(REPO, tmp_path)
    with zipfile.ZipFile(wheel) as archive:
        meta = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        requires = [
            Requirement(line.split(":", 1)[1].strip())
            for line in archive.read(meta).decode().splitlines()
            if line.startswith("Requires-Dist:")
        ]
    tooling = [r for r in requires if canonicalize_name(r.name) in DEV_DISTRIBUTIONS | {"pyuwsgi"}]
    assert any(canonicalize_name(r.name) == "oidc-provider-mock" for r in tooling)
    for requirement in tooling:
        assert requirement.marker is not None and not requirement.marker.evaluate({"extra": ""}), str(requirement)


def test_runtime_modules_import_no_development_distribution() -> None:
    """Not Flask, Authlib or the provider either: importing one would work here and fail on the platform."""
    owners = metadata.packages_distributions()
    blocked = sorted(
        top
        for top, dists in owners.items()
        if any(canonicalize_name(d) in DEV_DISTRIBUTIONS for d in dists) and top.isidentifier()
    )
    assert {"oidc_provider_mock", "flask", "authlib", "uvicorn"} <= set(blocked)
    script = textwrap.dedent(
        f"""
        import importlib, importlib.abc, sys

        BLOCKED = {tuple(blocked)!r}

        class Block(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in BLOCKED:
                    raise ImportError(f"runtime code imported the development distribution {{name}}")
                return None

        sys.meta_path.insert(0, Block())
        for module in {_runtime_modules()!r}:
            importlib.import_module(module)
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]


def test_make_stage_refuses_a_vendor_folder_holding_tooling(tmp_path: Path) -> None:
    class Fetcher:
        def fill_wheelhouse(self, requirements: object, wheelhouse: Path, python: str) -> None:
            raise AssertionError("not called by stage_service")

        def vendor(self, requirements: Path, wheelhouse: Path, vendor: Path, python: str) -> None:
            with zipfile.ZipFile(vendor / "aerie_shared-0.1.0-py3-none-any.whl", "w") as wheel:
                wheel.writestr("aerie/__init__.py", "")
            for name in ("falcon-4.4.0-py3-none-any.whl", "Flask-3.1.3-py3-none-any.whl"):
                (vendor / name).write_bytes(b"")
            (vendor / "oidc_provider_mock-0.3.4-py3-none-any.whl").write_bytes(b"")

    # The wheels build_shared_wheel would have left, which the staged requirements hash.
    wheelhouse = tmp_path / "wheelhouse"
    wheelhouse.mkdir()
    for name in ("aerie_shared-0.1.0-py3-none-any.whl", "aerie_client-0.1.0-py3-none-any.whl"):
        (wheelhouse / name).write_bytes(b"")
    with pytest.raises(StageError, match=r"development tooling .*: Flask-3\.1\.3.*, oidc_provider_mock-0\.3\.4"):
        stage_service(REPO, "tenants", tmp_path, wheelhouse=wheelhouse, fetcher=Fetcher())
