"""Every README.md snippet runs as written, in order, against a running stack.

A reader follows the README top to bottom in one terminal, with ``make run`` going in
another. This test does the same: it extracts every fenced code block from README.md and
runs them in order in one bash session (``set -euo pipefail``, so variables carry over from
one block to the next and the first failing command stops the run), in a working directory
of its own that holds what ``make run`` would leave there: ``.aerie/local.env`` for the stack
the e2e conftest started, and ``.venv`` (the venv this test runs in, whose uWSGI runs the
stack). A ``python`` block is run as the README tells a reader to run it,
``.venv/bin/python <file>`` in that same shell, so it sees exactly the variables the shell
blocks exported.

Every block runs unless the line before it is ``<!-- not run: <why> -->``: skipping must be
visible in the README and say why (it starts the stack, it pushes to Cloud Foundry, it is a
figure). A block in another language without such a marker fails the test: it must say how
it runs, or why not.

One harness choice is stricter than a reader: ``curl`` is called with ``--fail-with-body``,
so a snippet whose call gets an HTTP error fails here, where a reader would only see a
problem document go by and carry on into a confusing later step.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from conftest import Aerie

pytestmark = [pytest.mark.tenants, pytest.mark.flags]

README = Path(__file__).resolve().parents[1] / "README.md"
#: Languages this test knows how to run.
RUNNABLE = {"sh", "python"}
NOT_RUN = re.compile(r"^<!--\s*not run:\s*(?P<why>\S.*?)\s*-->$")
FENCE = re.compile(r"^(?P<fence>`{3,})(?P<lang>[\w+-]*)\s*$")
#: Far more than a first session takes (a few seconds); a hung snippet must not hang the tier.
TIMEOUT_S = 120


@dataclass(frozen=True)
class Block:
    """One fenced block of README.md: where it starts, its language, its text, why it is not run."""

    line: int
    lang: str
    text: str
    not_run: str | None

    @property
    def where(self) -> str:
        return f"README.md:{self.line} ({self.lang or 'no language'})"


def readme_blocks(text: str) -> list[Block]:
    """Every fenced block, in order, with the ``not run`` marker of the line before it, if any."""
    blocks: list[Block] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        opening = FENCE.match(lines[i])
        if opening is None:
            i += 1
            continue
        previous = next((lines[j].strip() for j in range(i - 1, -1, -1) if lines[j].strip()), "")
        marker = NOT_RUN.match(previous)
        end = next(
            (j for j in range(i + 1, len(lines)) if lines[j].strip() == opening["fence"]),
            None,
        )
        assert end is not None, f"README.md:{i + 1}: a fence that is never closed"
        body = "\n".join(lines[i + 1 : end]) + "\n"
        blocks.append(Block(i + 1, opening["lang"], body, marker["why"] if marker else None))
        i = end + 1
    return blocks


def session_script(blocks: list[Block], workdir: Path) -> str:
    """One bash script that runs the blocks to run, in order, announcing each on stderr.

    Blocks marked ``not run``, and blocks in a language this test does not run (which
    :func:`test_every_readme_block_runs_or_says_why_not` refuses unless marked), are left out.
    """
    parts = [
        "set -euo pipefail",
        # See the module docstring: an HTTP error in a snippet is the snippet failing (where
        # curl knows the option: 7.76 and later).
        "if command curl --fail-with-body --version >/dev/null 2>&1; then",
        '  curl() { command curl --fail-with-body "$@"; }',
        "fi",
    ]
    for block in blocks:
        if block.not_run is not None or block.lang not in RUNNABLE:
            continue
        parts.append(f"printf '%s\\n' '+++ {block.where}' >&2")
        if block.lang == "sh":
            parts.append(block.text)
        else:
            script = workdir / f"readme_{block.line}.py"
            script.write_text(block.text)
            parts.append(f".venv/bin/python {script.name}")
    parts.append("printf '%s\\n' '+++ done' >&2")
    return "\n".join(parts) + "\n"


def _ids(aerie: Aerie, service: str, path: str, field: str) -> set[str]:
    """Every ``field`` of a paged list, read with the platform token."""
    found: set[str] = set()
    params: dict[str, str] = {"limit": "200"}
    while True:
        r = aerie.call("GET", service, path, token=aerie.admin_token, params=params)
        assert r.status_code == 200, r.text[:300]
        page = r.json()
        found.update(item[field] for item in page["items"])
        if not page.get("next_cursor"):
            return found
        params["cursor"] = page["next_cursor"]


@pytest.fixture
def workdir(tmp_path: Path, own_stack: dict[str, str]) -> Path:
    """A directory laid out as the repository after ``make run``, without touching the real ``.aerie/``."""
    state = tmp_path / ".aerie"
    state.mkdir(mode=0o700)
    env_file = state / "local.env"
    env_file.write_text("".join(f"{k}={v}\n" for k, v in own_stack.items()))
    env_file.chmod(0o600)
    (tmp_path / ".venv").symlink_to(Path(sys.prefix), target_is_directory=True)
    return tmp_path


@pytest.fixture
def undo_readme(aerie: Aerie) -> Iterator[None]:
    """Delete the tenants and flags the snippets made (they are the README's, not the run's:
    a fixed slug and a platform-wide flag), so the rest of the session sees the stack as before."""
    tenants_before = _ids(aerie, "tenants", "/v1/tenants", "id")
    flags_before = _ids(aerie, "flags", "/v1/flags", "key")
    yield
    for tenant_id in _ids(aerie, "tenants", "/v1/tenants", "id") - tenants_before:
        aerie.on_cleanup(
            f"README tenant {tenant_id}",
            lambda t=tenant_id: aerie.call("DELETE", "tenants", f"/v1/tenants/{t}", token=aerie.admin_token),
        )
    for key in _ids(aerie, "flags", "/v1/flags", "key") - flags_before:
        aerie.on_cleanup(
            f"README flag {key}",
            lambda k=key: aerie.call("DELETE", "flags", f"/v1/flags/{k}", token=aerie.admin_token),
        )


def test_every_readme_block_runs_or_says_why_not() -> None:
    blocks = readme_blocks(README.read_text())
    assert blocks, "README.md has no fenced blocks: the extraction is broken"
    unexplained = [b.where for b in blocks if b.lang not in RUNNABLE and b.not_run is None]
    assert not unexplained, f"blocks this test cannot run and no '<!-- not run: why -->' line explains: {unexplained}"
    assert any(b.not_run is None for b in blocks), "every README block is marked 'not run'"


def test_the_readme_snippets_run_as_written_in_order(workdir: Path, undo_readme: None) -> None:
    script = session_script(readme_blocks(README.read_text()), workdir)
    # The reader's shell knows only what the snippets source and export: a developer's own
    # AERIE_* (pointing at their `make run`, or staging) must not leak in.
    env = {k: v for k, v in os.environ.items() if not k.startswith("AERIE_")}
    started = time.monotonic()
    # A session of its own, so a timeout stops the snippets' children too (a flags client).
    session = subprocess.Popen(
        ["bash", "-c", script],
        cwd=workdir,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    timed_out = False
    try:
        stdout, stderr = session.communicate(timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        timed_out = True
        with contextlib.suppress(ProcessLookupError):
            os.killpg(session.pid, signal.SIGKILL)
        stdout, stderr = session.communicate()
    elapsed = time.monotonic() - started
    print(stdout)  # what a reader would see (pytest -s, or -rP, shows it)
    announced = [line[4:] for line in stderr.splitlines() if line.startswith("+++ ")]
    at = announced[-1] if announced else "(before the first block)"
    if session.returncode != 0 or at != "done":
        how = f"did not finish within {TIMEOUT_S}s" if timed_out else f"stopped with status {session.returncode}"
        pytest.fail(
            f"the README snippets {how} in {at} after {elapsed:.1f}s\n"
            f"--- stdout (tail) ---\n{stdout[-3000:]}\n--- stderr (tail) ---\n{stderr[-3000:]}"
        )
