"""``make stage`` layout, with a fetcher that writes wheel names instead of downloading.

The real download and the buildpack's offline install are service_tests/test_buildpack.py.
"""

from __future__ import annotations

import configparser
import zipfile
from collections.abc import Sequence
from pathlib import Path

import pytest

from aerie.cf.stage import StageError, copy_ini, manylinux_platforms, stage_service, stageable_services

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


def test_every_service_folder_is_stageable():
    assert stageable_services(REPO)[:2] == ["tenants", "projects"]


@pytest.mark.parametrize("service", ["tenants", "projects"])
def test_staged_service_is_a_self_contained_push_folder(service, tmp_path):
    fetcher = FakeFetcher()
    dest = stage_service(REPO, service, tmp_path, wheelhouse=tmp_path / "wh", fetcher=fetcher, python="3.12")
    assert dest == tmp_path / service
    assert (dest / "runtime.txt").read_text() == "python-3.12.x\n"
    assert (dest / "requirements.txt").read_text() == (REPO / "services" / service / "requirements.txt").read_text()
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


def test_restaging_replaces_the_old_folder(tmp_path):
    stage_service(REPO, "tenants", tmp_path, wheelhouse=tmp_path, fetcher=FakeFetcher())
    (tmp_path / "tenants" / "leftover.py").write_text("")
    stage_service(REPO, "tenants", tmp_path, wheelhouse=tmp_path, fetcher=FakeFetcher())
    assert not (tmp_path / "tenants" / "leftover.py").exists()


def test_a_vendor_without_the_shared_wheel_fails(tmp_path):
    with pytest.raises(StageError, match="lacks the aerie-shared wheel"):
        stage_service(REPO, "tenants", tmp_path, wheelhouse=tmp_path, fetcher=FakeFetcher(["falcon-4.4.0.whl"]))


def test_a_shared_wheel_with_development_tooling_fails(tmp_path):
    fetcher = FakeFetcher(shared_files=["aerie/__init__.py", "aerie/local/stack.py"])
    with pytest.raises(StageError, match=r"holds development tooling: aerie/local/stack\.py"):
        stage_service(REPO, "tenants", tmp_path, wheelhouse=tmp_path, fetcher=fetcher)


def test_an_sdist_in_vendor_fails(tmp_path):
    files = ["aerie_shared-0.1.0-py3-none-any.whl", "cerberus-1.3.5.tar.gz"]
    with pytest.raises(StageError, match=r"non-wheels the buildpack would build: cerberus-1\.3\.5\.tar\.gz"):
        stage_service(REPO, "tenants", tmp_path, wheelhouse=tmp_path, fetcher=FakeFetcher(files))


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
