"""The suite version from git tags, as every manifest's VERSION and /info report it."""

from __future__ import annotations

import subprocess
import tomllib
from pathlib import Path

import pytest

from aerie.cf.version import describe, parse_describe


@pytest.mark.parametrize(
    ("described", "expected"),
    [
        ("v1.2.0-0-gabc1234", "1.2.0"),
        ("v1.2.0-3-gabc1234", "1.2.0.post3+gabc12345"),
        ("v1.2.0-0-gabc1234-dirty", "1.2.0+gabc12345.dirty"),
        ("1.2-5-gabc1234-dirty", "1.2.post5+gabc12345.dirty"),
        ("abc1234", "0.0.0+gabc12345"),
        ("abc1234-dirty", "0.0.0+gabc12345.dirty"),
        ("7837214", "0.0.0+gabc12345"),  # an all-digit abbreviated sha is no tag
        ("1234567-dirty", "0.0.0+gabc12345.dirty"),
    ],
)
def test_parse_describe(described, expected):
    assert parse_describe(described, "abc12345") == expected


def test_unreadable_describe_is_an_error():
    with pytest.raises(ValueError, match="cannot read a version"):
        parse_describe("release-candidate", "abc12345")


def _git(repo: Path, *args: str) -> str:
    env = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@x", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@x"}
    return subprocess.run(
        ["git", "-c", "commit.gpgsign=false", *args],
        cwd=repo,
        env={"PATH": "/usr/bin:/bin", **env},
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()


def test_describe_follows_tags_commits_and_edits(tmp_path):
    _git(tmp_path, "init", "-q")
    (tmp_path / "f").write_text("1")
    _git(tmp_path, "add", "f")
    _git(tmp_path, "commit", "-qm", "one")
    assert describe(tmp_path).version.startswith("0.0.0+g")
    _git(tmp_path, "tag", "v0.3.0")
    first = describe(tmp_path)
    assert first.version == "0.3.0" and len(first.commit) == 8
    (tmp_path / "f").write_text("2")
    assert describe(tmp_path).version == f"0.3.0+g{first.commit}.dirty"
    _git(tmp_path, "commit", "-qam", "two")
    second = describe(tmp_path)
    assert second.version == f"0.3.0.post1+g{second.commit}"


def test_every_package_and_pin_is_at_the_suite_version():
    """bump-my-version keeps these in step; staging resolves the services' pin to the shared wheel."""
    repo = Path(__file__).resolve().parents[2]
    current = tomllib.loads((repo / ".bumpversion.toml").read_text())["tool"]["bumpversion"]["current_version"]
    for pyproject in [repo / "shared" / "pyproject.toml", *sorted((repo / "services").glob("*/pyproject.toml"))]:
        assert tomllib.loads(pyproject.read_text())["project"]["version"] == current, pyproject
    for requirements in sorted((repo / "services").glob("*/requirements.txt")):
        assert f"aerie-shared=={current}" in requirements.read_text().splitlines(), requirements
