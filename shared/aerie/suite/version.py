"""The suite's one version, from git tags, the way setuptools-scm derives it.

Releases are tagged ``vX.Y.Z`` (``bump-my-version bump minor`` writes the tag and the
package versions, see ``.bumpversion.toml``). A checkout at a tag is ``X.Y.Z``; N commits
after it is ``X.Y.Z.postN+g<sha>``; uncommitted changes add ``.dirty`` to the local part;
no tag at all yet is ``0.0.0+g<sha>``. Deploys pass it to every manifest as ``((version))``
(the apps' ``VERSION``, which ``/info`` reports), so all four apps of one deploy say the same.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

__all__ = ["GitVersion", "describe", "parse_describe"]

# ``--long`` always writes the distance and sha after a tag; without them the text is a bare
# abbreviated sha, which may be all digits ("7837214") and must not read as a tag.
_DESCRIBE = re.compile(r"^v?(?P<tag>\d+(?:\.\d+)*)-(?P<distance>\d+)-g(?P<sha>[0-9a-f]+)(?P<dirty>-dirty)?$")
_BARE_SHA = re.compile(r"^(?P<sha>[0-9a-f]{4,40})(?P<dirty>-dirty)?$")


@dataclass(frozen=True)
class GitVersion:
    version: str
    commit: str


def parse_describe(described: str, commit: str) -> str:
    """A PEP 440 version from ``git describe --tags --long --dirty --always`` output."""
    text = described.strip()
    match = _DESCRIBE.match(text)
    if match:
        tag, distance, dirty = match["tag"], int(match["distance"]), bool(match["dirty"])
        local = [f"g{commit}"] if distance or dirty else []
        if dirty:
            local.append("dirty")
        base = f"{tag}.post{distance}" if distance else tag
        return f"{base}+{'.'.join(local)}" if local else base
    bare = _BARE_SHA.match(text)
    if bare:
        return f"0.0.0+g{commit}" + (".dirty" if bare["dirty"] else "")
    raise ValueError(f"cannot read a version from git describe output {described!r}")


def describe(repo_root: Path) -> GitVersion:
    """The version and short commit of the checkout at ``repo_root``."""

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=repo_root, capture_output=True, text=True, check=True, timeout=10
        ).stdout.strip()

    commit = git("rev-parse", "--short=8", "HEAD")
    described = git("describe", "--tags", "--long", "--dirty", "--always", "--match", "v[0-9]*")
    return GitVersion(parse_describe(described, commit), commit)
