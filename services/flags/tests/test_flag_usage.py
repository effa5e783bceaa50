"""Stale flags: ``last_evaluated_at`` from every evaluation route, written in batches, and
``GET /v1/flags?unused_since=`` listing the flags nobody evaluated since."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
import redis

from aerie.testing.http import assert_problem
from flags.storage import LAST_EVALUATED
from flags.usage import Usage, UsageFlusher


def _flush(service: Any) -> int:
    service.infra.background.ensure_started()
    flusher = service.infra.background.worker("usage")
    assert isinstance(flusher, UsageFlusher)
    return flusher.flush()


def _last(api: Any, key: str) -> str | None:
    r = api.c.simulate_get(f"/v1/flags/{key}", headers=api.admin())
    assert r.status_code == 200, r.text
    return r.json["last_evaluated_at"]


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def test_every_evaluation_route_marks_the_flags_it_evaluated(api, service):
    for key in ("by-evaluate", "by-one", "by-ofrep", "by-bulk", "never"):
        api.put_flag(key, 201, default=False)
    started = _iso(datetime.now(UTC) - timedelta(seconds=1))
    assert api.evaluate({"user_id": "u1"}, ["by-evaluate", "made-up"]).status_code == 200
    assert api.c.simulate_get("/v1/flags/by-one/evaluation", headers=api.headers()).status_code == 200
    ofrep = api.c.simulate_post("/ofrep/v1/evaluate/flags/by-ofrep", json={"context": {}}, headers=api.headers())
    assert ofrep.status_code == 200, ofrep.text
    _flush(service)
    for key in ("by-evaluate", "by-one", "by-ofrep"):
        assert (_last(api, key) or "") >= started, key
    assert _last(api, "never") is None and _last(api, "by-bulk") is None
    assert not service.infra.redis.client.hexists(LAST_EVALUATED, "made-up")
    bulk = api.c.simulate_post("/ofrep/v1/evaluate/flags", json={"context": {}}, headers=api.headers())
    assert bulk.status_code == 200, bulk.text
    _flush(service)
    assert _last(api, "by-bulk") is not None and _last(api, "never") is not None  # bulk evaluates every flag


def test_unused_since_lists_the_flags_nobody_evaluated_since(api, service):
    keys = [f"stale-{i:02d}" for i in range(12)]
    for key in keys:
        api.put_flag(key, 201, default=False)
    used = keys[::3]  # 00, 03, 06, 09
    since = _iso(datetime.now(UTC) - timedelta(seconds=1))
    assert api.evaluate({}, used).status_code == 200
    _flush(service)
    unused: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"unused_since": since, "limit": 3}
        if cursor:
            params["cursor"] = cursor
        page = api.c.simulate_get("/v1/flags", params=params, headers=api.admin()).json
        assert len(page["items"]) <= 3
        unused += [item["key"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert unused == [k for k in keys if k not in used]
    # Since a time before the evaluations, every flag is "used"; offsets are understood.
    before = (datetime.now(UTC) - timedelta(hours=1)).astimezone(timezone(timedelta(hours=2))).isoformat()
    page = api.c.simulate_get("/v1/flags", params={"unused_since": before}, headers=api.admin()).json
    assert [item["key"] for item in page["items"]] == [k for k in keys if k not in used]  # never evaluated only
    everything = api.c.simulate_get("/v1/flags", params={"limit": 100}, headers=api.admin()).json["items"]
    assert {item["key"]: item["last_evaluated_at"] is not None for item in everything} == {k: k in used for k in keys}


@pytest.mark.parametrize("value", ["yesterday", "2026-01-01T00:00:00", "2026-01-01T00:00+00:00", ""])
def test_unused_since_must_be_a_time_with_a_zone(api, value):
    r = api.c.simulate_get("/v1/flags", params={"unused_since": value}, headers=api.admin())
    assert_problem(r, 422, "validation_error")
    assert r.json["errors"][0]["field"] == "unused_since"


def test_usage_is_read_only_and_goes_with_the_flag(api, service):
    api.put_flag("gone", 201, default=False)
    api.evaluate({}, ["gone"])
    _flush(service)
    flag = api.c.simulate_get("/v1/flags/gone", headers=api.admin()).json
    assert flag["last_evaluated_at"] is not None
    # GET, change, PUT back: last_evaluated_at is accepted and ignored, and not stored in the definition.
    r = api.put_flag("gone", 200, **{**flag, "last_evaluated_at": "2000-01-01T00:00:00Z", "default": True})
    assert r.json["last_evaluated_at"] == flag["last_evaluated_at"]
    assert "last_evaluated_at" not in service.infra.redis.client.hget("flags:definitions", "gone")
    assert api.c.simulate_delete("/v1/flags/gone", headers=api.admin()).status_code == 204
    assert not service.infra.redis.client.hexists(LAST_EVALUATED, "gone")
    assert api.put_flag("gone", 201, default=False).json["last_evaluated_at"] is None


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_busy_flag_costs_one_write_per_rewrite_interval():
    usage, clock = Usage(), _Clock()
    writes: list[dict[str, str]] = []
    flusher = UsageFlusher(usage, writes.append, lambda: {"a", "b"}, rewrite_after_s=30, clock=clock)
    usage.saw_all(["a", "b", "not-a-flag"])
    assert flusher.flush() == 2 and set(writes[-1]) == {"a", "b"}
    for _ in range(5):  # evaluated all along, flushed every 5 s
        clock.now += 5
        usage.saw("a")
        assert flusher.flush() == 0
    clock.now += 5
    usage.saw("a")
    assert flusher.flush() == 1 and set(writes[-1]) == {"a"}
    assert flusher.flush() == 0  # nothing marked since


def test_marks_survive_a_failed_write():
    usage, clock = Usage(), _Clock()
    failing = [True]

    def write(marks: dict[str, str]) -> None:
        if failing[0]:
            raise redis.ConnectionError("down")
        written.update(marks)

    written: dict[str, str] = {}
    flusher = UsageFlusher(usage, write, lambda: {"a"}, clock=clock)
    usage.saw("a")
    with pytest.raises(redis.ConnectionError):
        flusher.flush()
    failing[0] = False
    assert flusher.flush() == 1 and set(written) == {"a"}
