"""``make stage`` layout, with a fetcher that writes wheel names instead of downloading.

The real download and the buildpack's offline install are service_tests/test_buildpack.py.
"""

from __future__ import annotations

import configparser
import hashlib
import re
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Sequence
from pathlib import Path

import pytest

from aerie.cf.lock import lock_inputs, lock_path
from aerie.cf.stage import (
    StageError,
    copy_ini,
    manylinux_platforms,
    module_level_imports,
    stage_all,
    stage_monitor,
    stage_service,
    stageable_apps,
    stageable_services,
)

REPO = Path(__file__).resolve().parents[2]


SHARED_WHEEL = "aerie_shared-0.1.0-py3-none-any.whl"


class FakeFetcher:
    """Puts the named files into vendor/, as pip download would put wheels.

    The aerie-shared wheel is a zip holding ``shared_files``, since staging looks inside it.
    """

    def __init__(
        self,
        files: Sequence[str] = (SHARED_WHEEL, "falcon-4.4.0.whl"),
        shared_files: Sequence[str] = ("aerie/__init__.py", "aerie/app.py"),
    ) -> None:
        self.files = files
        self.shared_files = shared_files
        self.calls: list[tuple[Path, Path, str]] = []

    def fill_wheelhouse(self, requirements: Sequence[Path], wheelhouse: Path, python: str) -> None:
        raise AssertionError("stage_service must not fill the wheelhouse")

    def vendor(self, requirements: Path, wheelhouse: Path, vendor: Path, python: str) -> None:
        self.calls.append((requirements, vendor, python))
        for name in self.files:
            if name.startswith("aerie_shared-"):
                with zipfile.ZipFile(vendor / name, "w") as wheel:
                    for member in self.shared_files:
                        wheel.writestr(member, "")
            else:
                (vendor / name).write_bytes(b"")


@pytest.fixture
def wheelhouse(tmp_path: Path) -> Path:
    """A wheelhouse as build_shared_wheel leaves it: the two aerie wheels (contents made up)."""
    house = tmp_path / "wh"
    house.mkdir()
    (house / SHARED_WHEEL).write_bytes(b"shared wheel bytes")
    (house / "aerie_client-0.1.0-py3-none-any.whl").write_bytes(b"client wheel bytes")
    return house


def test_every_service_folder_is_stageable():
    assert stageable_services(REPO)[:2] == ["tenants", "projects"]


@pytest.mark.parametrize("service", ["tenants", "projects"])
def test_staged_service_is_a_self_contained_push_folder(service, tmp_path, wheelhouse):
    fetcher = FakeFetcher()
    dest = stage_service(REPO, service, tmp_path, wheelhouse=wheelhouse, fetcher=fetcher, python="3.12")
    assert dest == tmp_path / service
    assert (dest / "runtime.txt").read_text() == "python-3.12.x\n"
    assert (dest / "manifest.yml").read_text() == (REPO / "services" / service / "manifest.yml").read_text()
    assert "tests/" in (dest / ".cfignore").read_text()
    assert fetcher.calls == [(dest / "requirements.txt", dest / "vendor", "3.12")]
    # The package, without its tests or bytecode.
    assert (dest / service / "wsgi.py").is_file()
    staged = {p.relative_to(dest / service) for p in (dest / service).rglob("*")}
    assert not [p for p in staged if "__pycache__" in p.parts or p.parts[0] == "tests"]
    assert not (dest / "tests").exists()
    # uwsgi.ini includes only files inside the folder, and they say the same as the repo's.
    assert "../" not in (dest / "uwsgi.ini").read_text()
    ini = configparser.ConfigParser(strict=False, interpolation=None)
    ini.read(dest / "base.ini")
    repo_ini = configparser.ConfigParser(strict=False, interpolation=None)
    repo_ini.read(REPO / "shared" / "uwsgi" / "base.ini")
    assert dict(ini["uwsgi"]) == dict(repo_ini["uwsgi"])
    assert "ini = %dbase.ini" in (dest / "uwsgi.ini").read_text().splitlines()


@pytest.mark.parametrize("service", ["tenants", "console"])
def test_staged_requirements_are_the_lock_and_the_built_wheels_every_line_hashed(service, tmp_path, wheelhouse):
    dest = stage_service(REPO, service, tmp_path / "out", wheelhouse=wheelhouse, fetcher=FakeFetcher())
    staged = (dest / "requirements.txt").read_text()
    lock = lock_path(REPO, service).read_text()
    assert staged.startswith(lock.rstrip("\n") + "\n")
    sha = {
        name: hashlib.sha256((wheelhouse / name).read_bytes()).hexdigest()
        for name in ("aerie_shared-0.1.0-py3-none-any.whl", "aerie_client-0.1.0-py3-none-any.whl")
    }
    lines = staged.splitlines()
    assert f"aerie-shared==0.1.0 --hash=sha256:{sha[SHARED_WHEEL]}" in lines
    assert f"aerie-client==0.1.0 --hash=sha256:{sha['aerie_client-0.1.0-py3-none-any.whl']}" in lines
    # pip's hash-checking mode (the buildpack's install of it) refuses a single unhashed requirement.
    for requirement in re.sub(r"\s*\\\n\s*", " ", staged).splitlines():
        if requirement.strip() and not requirement.startswith("#"):
            assert re.fullmatch(r"\S+==\S+( --hash=sha256:[0-9a-f]{64})+", requirement), requirement


def _stale_repo(tmp_path: Path, service: str) -> Path:
    repo = tmp_path / "repo"
    for path in [*lock_inputs(REPO, service), lock_path(REPO, service)]:
        target = repo / path.relative_to(REPO)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, target)
    requirements = repo / "services" / service / "requirements.txt"
    requirements.write_text(requirements.read_text().replace("pyuwsgi>=2.0.29", "pyuwsgi>=2.0.30"))
    return repo


def test_stage_refuses_a_stale_lock(tmp_path, wheelhouse):
    repo = _stale_repo(tmp_path, "tenants")
    with pytest.raises(StageError, match=r"services/tenants/requirements\.lock is stale.*`make lock`"):
        stage_service(repo, "tenants", tmp_path / "out", wheelhouse=wheelhouse, fetcher=FakeFetcher())
    assert not (tmp_path / "out").exists()


def test_stage_all_refuses_a_stale_lock_before_building_or_downloading(tmp_path, monkeypatch):
    repo = _stale_repo(tmp_path, "flags")
    for name in ("manifest.yml", "uwsgi.ini", "pyproject.toml"):
        shutil.copy(REPO / "services" / "flags" / name, repo / "services" / "flags" / name)
    monkeypatch.setattr("aerie.cf.stage.build_shared_wheel", lambda *a: pytest.fail("built a wheel"))
    with pytest.raises(StageError, match="stale"):
        stage_all(repo, tmp_path / "out", services=["flags"], fetcher=FakeFetcher())


def test_restaging_replaces_the_old_folder(tmp_path, wheelhouse):
    stage_service(REPO, "tenants", tmp_path, wheelhouse=wheelhouse, fetcher=FakeFetcher())
    (tmp_path / "tenants" / "leftover.py").write_text("")
    stage_service(REPO, "tenants", tmp_path, wheelhouse=wheelhouse, fetcher=FakeFetcher())
    assert not (tmp_path / "tenants" / "leftover.py").exists()


def test_a_vendor_without_the_shared_wheel_fails(tmp_path, wheelhouse):
    with pytest.raises(StageError, match="lacks the aerie-shared wheel"):
        stage_service(REPO, "tenants", tmp_path, wheelhouse=wheelhouse, fetcher=FakeFetcher(["falcon-4.4.0.whl"]))


def test_a_shared_wheel_with_development_tooling_fails(tmp_path, wheelhouse):
    fetcher = FakeFetcher(shared_files=["aerie/__init__.py", "aerie/local/stack.py"])
    with pytest.raises(StageError, match=r"holds development tooling: aerie/local/stack\.py"):
        stage_service(REPO, "tenants", tmp_path, wheelhouse=wheelhouse, fetcher=fetcher)


def test_an_sdist_in_vendor_fails(tmp_path, wheelhouse):
    files = ["aerie_shared-0.1.0-py3-none-any.whl", "cerberus-1.3.5.tar.gz"]
    with pytest.raises(StageError, match=r"non-wheels the buildpack would build: cerberus-1\.3\.5\.tar\.gz"):
        stage_service(REPO, "tenants", tmp_path, wheelhouse=wheelhouse, fetcher=FakeFetcher(files))


def test_nested_includes_are_pulled_in(tmp_path):
    (tmp_path / "lib" / "deeper").mkdir(parents=True)
    (tmp_path / "lib" / "deeper" / "last.ini").write_text("[uwsgi]\nharakiri = 5\n")
    (tmp_path / "lib" / "base.ini").write_text("[uwsgi]\nini = %ddeeper/last.ini\nmaster = true\n")
    (tmp_path / "svc").mkdir()
    (tmp_path / "svc" / "uwsgi.ini").write_text("[uwsgi]\nmodule = x\nini = %d../lib/base.ini\n")
    out = tmp_path / "out"
    out.mkdir()
    copy_ini(tmp_path / "svc" / "uwsgi.ini", out / "uwsgi.ini")
    assert (out / "uwsgi.ini").read_text() == "[uwsgi]\nmodule = x\nini = %dbase.ini\n"
    assert (out / "base.ini").read_text() == "[uwsgi]\nini = %dlast.ini\nmaster = true\n"
    assert (out / "last.ini").read_text() == "[uwsgi]\nharakiri = 5\n"


def test_a_missing_include_fails(tmp_path):
    (tmp_path / "uwsgi.ini").write_text("[uwsgi]\nini = %d../nowhere.ini\n")
    with pytest.raises(StageError, match=r"nowhere\.ini does not exist"):
        copy_ini(tmp_path / "uwsgi.ini", tmp_path / "out.ini")


def test_platforms_cover_manylinux2014_up_to_cflinuxfs4s_glibc():
    tags = manylinux_platforms()
    assert tags[0] == "manylinux_2_35_x86_64" and "manylinux_2_17_x86_64" in tags
    assert tags[-1] == "manylinux2014_x86_64"


# -- the synthetic monitor: the smoke journeys, staged like a service ---------------------------


def _collected(cwd: Path) -> list[str]:
    """The smoke journeys pytest collects in ``cwd`` (``e2e``, its pytest config), by node id."""
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "e2e", "-m", "smoke", "--collect-only", "-q", "-p", "no:cacheprovider"],
        cwd=cwd,
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    return [line for line in result.stdout.splitlines() if "::" in line]


def test_the_monitor_is_staged_last_and_the_services_alone_need_a_uwsgi_ini():
    assert stageable_apps(REPO) == [*stageable_services(REPO), "monitor"]


def test_the_staged_monitor_holds_the_smoke_journeys_their_conftest_and_pytest_config(tmp_path, wheelhouse):
    files = (SHARED_WHEEL, "pytest-9.2.0-py3-none-any.whl", "requests-2.34.2-py3-none-any.whl")
    fetcher = FakeFetcher(files)
    dest = stage_monitor(REPO, tmp_path, wheelhouse=wheelhouse, fetcher=fetcher, python="3.12")
    assert dest == tmp_path / "monitor"
    assert fetcher.calls == [(dest / "requirements.txt", dest / "vendor", "3.12")]
    assert (dest / "manifest.yml").read_text() == (REPO / "manifests" / "monitor.yml").read_text()
    assert (dest / "runtime.txt").read_text() == "python-3.12.x\n"
    assert (dest / "requirements.txt").read_text().startswith(lock_path(REPO, "monitor").read_text())
    shipped = sorted(p.name for p in (dest / "e2e").iterdir())
    assert "conftest.py" in shipped and "test_tenants_journeys.py" in shipped
    # Not the journeys without a smoke test: the README's needs the repository, people's aerie.local.
    assert "test_readme.py" not in shipped and "test_people_journeys.py" not in shipped
    for name in shipped:
        assert (dest / "e2e" / name).read_text() == (REPO / "e2e" / name).read_text()
    ini = configparser.ConfigParser(interpolation=None)
    ini.read(dest / "pytest.ini")
    tox = configparser.ConfigParser(interpolation=None)
    tox.read(REPO / "tox.ini")
    assert {k: v.split() for k, v in ini["pytest"].items()} == {k: v.split() for k, v in tox["pytest"].items()}
    # Collected from the staged folder, the same smoke journeys as from the repository.
    here = _collected(dest)
    assert here and here == _collected(REPO)


def test_a_smoke_journey_importing_development_tooling_stops_the_monitors_stage(tmp_path, wheelhouse):
    repo = tmp_path / "repo"
    shutil.copytree(REPO / "e2e", repo / "e2e")
    for path in lock_inputs(REPO, "monitor")[1:]:
        (repo / path.relative_to(REPO)).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, repo / path.relative_to(REPO))
    journey = repo / "e2e" / "test_tenants_journeys.py"
    text = journey.read_text()
    journey.write_text(text.replace("import pytest\n", "import pytest\n\nimport aerie.testing.http\n", 1))
    with pytest.raises(StageError, match=r"test_tenants_journeys\.py imports aerie\.testing\.http"):
        stage_monitor(repo, tmp_path / "out", wheelhouse=wheelhouse, fetcher=FakeFetcher())
    assert not (tmp_path / "out").exists()


def test_only_imports_made_at_import_time_count():
    imported = module_level_imports(REPO / "e2e" / "conftest.py")
    assert "pytest" in imported and "requests" in imported
    # conftest.py starts a local stack (aerie.local) only when no AERIE_* variable names one.
    assert not [m for m in imported if m.startswith("aerie")]


def test_pytest_in_vendor_is_the_monitors_alone(tmp_path, wheelhouse):
    files = (SHARED_WHEEL, "pytest-9.2.0-py3-none-any.whl")
    with pytest.raises(StageError, match=r"development tooling a pushed app never runs: pytest-9\.2\.0"):
        stage_service(REPO, "tenants", tmp_path, wheelhouse=wheelhouse, fetcher=FakeFetcher(files))
    files = (SHARED_WHEEL, "pytest-9.2.0-py3-none-any.whl", "flask-3.0.0-py3-none-any.whl")
    with pytest.raises(StageError, match=r"never runs: flask-3\.0\.0"):
        stage_monitor(REPO, tmp_path, wheelhouse=wheelhouse, fetcher=FakeFetcher(files))


def test_stage_all_stages_the_monitor_after_the_services(tmp_path, monkeypatch):
    def fake_wheels(repo_root: Path, out: Path) -> Path:
        out.mkdir(parents=True, exist_ok=True)
        (out / "aerie_client-0.1.0-py3-none-any.whl").write_bytes(b"client")
        (out / SHARED_WHEEL).write_bytes(b"shared")
        return out / SHARED_WHEEL

    class Fetcher(FakeFetcher):
        def fill_wheelhouse(self, requirements: Sequence[Path], wheelhouse: Path, python: str) -> None:
            self.locks = list(requirements)

    monkeypatch.setattr("aerie.cf.stage.build_shared_wheel", fake_wheels)
    fetcher = Fetcher()
    staged = stage_all(REPO, tmp_path / "out", services=["monitor", "tenants"], fetcher=fetcher)
    assert [p.name for p in staged] == ["tenants", "monitor"]
    assert fetcher.locks == [lock_path(REPO, "tenants"), lock_path(REPO, "monitor")]
