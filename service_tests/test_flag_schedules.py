"""Scheduled flag changes under uWSGI: applied by whichever worker is up, soon after their time,
and not lost while every instance of flags is down."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from conftest import Http, start_service

from aerie.local.redis_server import RedisServer
from aerie.testing.process import UwsgiService

pytestmark = pytest.mark.flags


def _at(seconds: float) -> tuple[str, float]:
    moment = datetime.now(UTC) + timedelta(seconds=seconds)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z"), moment.timestamp()


def _version_reached(http: Http, url: str, key: str, version: int, timeout: float) -> float | None:
    """The wall-clock time the flag reached ``version``, polled every 50 ms, or None."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r = http.s.get(f"{url}/v1/flags/{key}", headers=http.bearer(), timeout=5)
        if r.status_code == 200 and r.json()["version"] >= version:
            return time.time()
        time.sleep(0.05)
    return None


def test_a_change_is_applied_after_its_time_and_survives_flags_being_down(
    http: Http, redis_server: RedisServer, tenants: UwsgiService, tmp_path: Path
) -> None:
    flags = start_service("flags", redis_server, tenants.url, tmp_path)
    key = f"sched-{uuid.uuid4().hex[:8]}"
    try:
        r = http.s.put(f"{flags.url}/v1/flags/{key}", json={"default": False}, headers=http.bearer(), timeout=5)
        assert r.status_code == 201, r.text
        at, when = _at(1.0)
        body = {"at": at, "changes": {"rollout": {"percentage": 10}, "default": True}}
        r = http.s.post(f"{flags.url}/v1/flags/{key}/schedule", json=body, headers=http.bearer(), timeout=5)
        assert r.status_code == 201, r.text
        reached = _version_reached(http, flags.url, key, 2, timeout=10)
        assert reached is not None, flags.log_tail()
        print(f"\napplied {reached - when:+.2f}s after its time")
        assert reached >= when

        # Every instance down across the change's time: the first one up applies it.
        at, when = _at(1.5)
        body = {"at": at, "changes": {"rollout": {"percentage": 50}}}
        r = http.s.post(f"{flags.url}/v1/flags/{key}/schedule", json=body, headers=http.bearer(), timeout=5)
        assert r.status_code == 201, r.text
        flags.stop()
        time.sleep(max(0.0, when - time.time()) + 0.5)
        flags = start_service("flags", redis_server, tenants.url, tmp_path)
        assert _version_reached(http, flags.url, key, 3, timeout=10) is not None, flags.log_tail()
        flag = http.s.get(f"{flags.url}/v1/flags/{key}", headers=http.bearer(), timeout=5).json()
        assert flag["rollout"]["percentage"] == 50 and flag["default"] is True
        items = http.s.get(f"{flags.url}/v1/flags/{key}/schedule", headers=http.bearer(), timeout=5).json()["items"]
        assert [(s["status"], s["version"]) for s in items] == [("applied", 2), ("applied", 3)]
    finally:
        flags.stop()
