"""The apps' ``requirements.lock`` (the services' and the monitor's): current with their inputs, complete, and hashed.

This is how CI fails on a stale lock: a changed requirement in a service's
``requirements.txt`` or in the shared pyprojects without ``make lock`` fails here.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from aerie.cf.lock import (
    LOCAL_DISTRIBUTIONS,
    LockError,
    check_lock,
    inputs_digest,
    lock_inputs,
    lock_path,
    third_party_requirements,
)
from aerie.cf.stage import stageable_apps

REPO = Path(__file__).resolve().parents[2]
SERVICES = stageable_apps(REPO)


def _entries(lock: Path) -> dict[str, list[str]]:
    """``{name==version: [hashes]}`` of a lock in pip's requirements format."""
    text = re.sub(r"\\\n\s*", " ", lock.read_text(encoding="utf-8"))
    entries: dict[str, list[str]] = {}
    for line in text.splitlines():
        if line.strip() and not line.startswith("#"):
            pin, *options = line.split()
            entries[pin] = [o.removeprefix("--hash=sha256:") for o in options if o.startswith("--hash=sha256:")]
    return entries


def _name(requirement: str) -> str:
    return re.sub(r"[-_.]+", "-", re.match(r"[A-Za-z0-9._-]+", requirement).group(0)).lower()  # type: ignore[union-attr]


@pytest.mark.parametrize("service", SERVICES)
def test_every_lock_matches_its_inputs(service):
    try:
        check_lock(REPO, service)
    except LockError as exc:
        pytest.fail(str(exc))


@pytest.mark.parametrize("service", SERVICES)
def test_every_lock_pins_each_requirement_exactly_with_hashes(service):
    entries = _entries(lock_path(REPO, service))
    assert entries, "an empty lock"
    for pin, hashes in entries.items():
        assert re.fullmatch(r"[a-z0-9._-]+==[^=\s]+", pin), pin
        assert hashes and all(re.fullmatch(r"[0-9a-f]{64}", h) for h in hashes), pin
    locked = {_name(pin) for pin in entries}
    assert not locked & LOCAL_DISTRIBUTIONS, "built by make stage, not fetched"
    assert {_name(r) for r in third_party_requirements(REPO, service)} <= locked


def test_the_inputs_are_the_services_and_the_shared_requirements_less_the_local_ones():
    inputs = [p.relative_to(REPO).as_posix() for p in lock_inputs(REPO, "console")]
    assert inputs == ["services/console/requirements.txt", "shared/pyproject.toml", "shared/client/pyproject.toml"]
    names = {_name(r) for r in third_party_requirements(REPO, "console")}
    assert {"pyuwsgi", "jinja2", "falcon", "urllib3", "sseclient-py"} <= names
    assert not names & LOCAL_DISTRIBUTIONS


def test_the_monitors_lock_is_in_e2e_and_pins_what_the_journeys_run_on():
    assert SERVICES[-1] == "monitor", "locked like the services"
    inputs = [p.relative_to(REPO).as_posix() for p in lock_inputs(REPO, "monitor")]
    assert inputs == ["e2e/requirements.txt", "shared/pyproject.toml", "shared/client/pyproject.toml"]
    assert lock_path(REPO, "monitor") == REPO / "e2e" / "requirements.lock"
    locked = {_name(pin) for pin in _entries(lock_path(REPO, "monitor"))}
    assert {"pytest", "requests", "prometheus-client"} <= locked
    assert "pyuwsgi" not in locked, "the monitor is no uWSGI app"


def test_a_stale_monitor_lock_names_its_folder(tmp_path):
    repo = _copy_repo(tmp_path, "monitor")
    requirements = repo / "e2e" / "requirements.txt"
    requirements.write_text(requirements.read_text().replace("pytest>=8", "pytest>=8.1"))
    with pytest.raises(LockError, match=r"e2e/requirements\.lock is stale: e2e/requirements\.txt"):
        check_lock(repo, "monitor")


def test_an_extra_of_the_shared_library_asked_by_a_service_is_locked_too(tmp_path):
    repo = _copy_repo(tmp_path, "flags")
    assert "opentelemetry-sdk" not in {_name(r) for r in third_party_requirements(repo, "flags")}
    requirements = repo / "services" / "flags" / "requirements.txt"
    requirements.write_text(requirements.read_text().replace("aerie-shared==", "aerie-shared[tracing]=="))
    names = {_name(r) for r in third_party_requirements(repo, "flags")}
    assert {"opentelemetry-sdk", "opentelemetry-instrumentation-falcon"} <= names
    assert not names & LOCAL_DISTRIBUTIONS
    with pytest.raises(LockError, match="stale"):
        check_lock(repo, "flags")


def _copy_repo(tmp_path: Path, service: str) -> Path:
    repo = tmp_path / "repo"
    for path in [*lock_inputs(REPO, service), lock_path(REPO, service)]:
        target = repo / path.relative_to(REPO)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, target)
    return repo


def test_a_changed_requirement_makes_the_lock_stale(tmp_path):
    repo = _copy_repo(tmp_path, "flags")
    requirements = repo / "services" / "flags" / "requirements.txt"
    requirements.write_text(requirements.read_text() + "attrs>=23\n")
    with pytest.raises(LockError, match=r"services/flags/requirements\.lock is stale.*run `make lock`"):
        check_lock(repo, "flags")


def test_a_changed_shared_bound_makes_the_lock_stale_and_a_comment_does_not(tmp_path):
    repo = _copy_repo(tmp_path, "audit")
    pyproject = repo / "shared" / "pyproject.toml"
    before = inputs_digest(repo, "audit")
    pyproject.write_text(pyproject.read_text().replace('description = "', 'description = "Still ', 1))
    assert inputs_digest(repo, "audit") == before
    check_lock(repo, "audit")
    pyproject.write_text(pyproject.read_text().replace('"orjson>=3.10"', '"orjson>=3.11"', 1))
    assert inputs_digest(repo, "audit") != before
    with pytest.raises(LockError, match="stale"):
        check_lock(repo, "audit")


def test_a_missing_or_headerless_lock_says_to_run_make_lock(tmp_path):
    repo = _copy_repo(tmp_path, "tenants")
    lock = lock_path(repo, "tenants")
    lock.write_text("falcon==4.4.0\n")
    with pytest.raises(LockError, match="no inputs-sha256 line: run `make lock`"):
        check_lock(repo, "tenants")
    lock.unlink()
    with pytest.raises(LockError, match="missing: run `make lock`"):
        check_lock(repo, "tenants")
