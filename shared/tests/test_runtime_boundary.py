"""The runtime library stands without the development tooling, and a staged app gets no tooling.

A pushed app installs the wheel ``make stage`` vendors (:func:`aerie.cf.stage.build_shared_wheel`);
the tooling packages are left out of it, so a runtime module that imported one would fail
only on Cloud Foundry. These tests make that fail here.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

from aerie.cf.stage import DEV_PACKAGES, build_shared_wheel, dev_files

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
    assert "aerie/flags/vectors.json" in names


def test_no_runtime_module_imports_the_tooling() -> None:
    modules = _runtime_modules()
    assert "aerie.app" in modules and "aerie.flags.client" in modules
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


def test_the_development_identity_provider_is_a_local_extra_only() -> None:
    """``make run``'s OIDC provider (and Flask, Authlib... under it) never reaches a staged app:
    staging installs the shared wheel's own dependencies, not its ``local`` extra."""
    import tomllib

    project = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())["project"]
    runtime = " ".join(project["dependencies"]).lower()
    assert "oidc-provider-mock" not in runtime and "flask" not in runtime and "authlib" not in runtime
    assert any(dep.startswith("oidc-provider-mock") for dep in project["optional-dependencies"]["local"])
    for service in (Path(__file__).resolve().parents[2] / "services").glob("*/requirements.txt"):
        assert "oidc" not in service.read_text().lower(), service
