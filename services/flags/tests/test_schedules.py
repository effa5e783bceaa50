"""Scheduled changes: applied once at their time as a new version by the scheduler, cancellable,
refused (422) when past, malformed or invalid for the flag, gone with their flag."""

from __future__ import annotations

import json
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from aerie.events import STREAM_KEY, EventPublisher
from aerie.testing.http import assert_problem
from flags.schedules import Schedules
from flags.storage import SCHEDULES, SCHEDULES_DUE

VARIANTS = [{"name": "a", "weight": 50}, {"name": "b", "weight": 50}]


def _at(seconds: float) -> str:
    moment = datetime.now(UTC) + timedelta(seconds=seconds)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _schedule(api: Any, key: str, changes: dict[str, Any], at: str | None = None, expect: int = 201) -> Any:
    r = api.c.simulate_post(
        f"/v1/flags/{key}/schedule", json={"at": at or _at(60), "changes": changes}, headers=api.admin()
    )
    assert r.status_code == expect, r.text
    return r


def _later(service: Any, seconds: float) -> Schedules:
    """The service's schedules seen from a clock ``seconds`` ahead: what a runner then applies."""
    clock = datetime.now(UTC) + timedelta(seconds=seconds)
    return Schedules(service.infra.redis, EventPublisher(), clock=lambda: clock)


def _events(service: Any, kind: str) -> list[dict[str, Any]]:
    raw = service.infra.redis.client.xrange(STREAM_KEY)
    return [e for e in (json.loads(fields["event"]) for _, fields in raw) if e["type"] == kind]


def _flag(api: Any, key: str) -> dict[str, Any]:
    r = api.c.simulate_get(f"/v1/flags/{key}", headers=api.admin())
    assert r.status_code == 200, r.text
    return r.json


def test_a_schedule_is_listed_and_applied_at_its_time_as_the_schedulers_change(api, service):
    api.put_flag("launch", 201, default=False, rules=[])
    r = _schedule(api, "launch", {"rollout": {"percentage": 50}, "enabled": False}, at=_at(30))
    schedule = r.json
    assert r.headers["Location"] == f"/v1/flags/launch/schedule/{schedule['id']}"
    assert schedule["status"] == "pending" and schedule["changes"]["rollout"] == {
        "percentage": 50,
        "stickiness": "user_id",
    }
    assert schedule["created_by"]["type"] == "platform" and "context" not in schedule
    listed = api.c.simulate_get("/v1/flags/launch/schedule", headers=api.admin()).json["items"]
    assert listed == [schedule]
    assert _flag(api, "launch")["version"] == 1

    assert _later(service, 10).due() == []  # not yet
    event = _later(service, 31).apply(schedule["id"])
    assert event is not None and event["type"] == "flag.updated"
    assert event["actor"] == schedule["created_by"] and event["data"]["schedule_id"] == schedule["id"]
    assert event["data"]["flag"]["version"] == 2 and event["data"]["flag"]["enabled"] is False
    assert _later(service, 32).apply(schedule["id"]) is None  # once
    done = api.c.simulate_get("/v1/flags/launch/schedule", headers=api.admin()).json["items"][0]
    assert done["status"] == "applied" and done["version"] == 2
    created = _events(service, "flag.schedule.created")
    assert created and created[-1]["data"]["schedule"]["id"] == schedule["id"]


def test_the_running_service_applies_a_due_change_by_itself(api, service):
    api.put_flag("soon", 201, default=False)
    assert api.value("soon", {"user_id": "u1"})["value"] is False
    _schedule(api, "soon", {"default": True}, at=_at(0.3))
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and api.value("soon", {"user_id": "u1"})["value"] is not True:
        time.sleep(0.05)
    answer = api.value("soon", {"user_id": "u1"})
    assert answer["value"] is True and answer["revision"] == 2


def test_two_runners_racing_apply_a_change_once(api, service):
    api.put_flag("raced", 201, default=False)
    schedule_id = _schedule(api, "raced", {"default": True}, at=_at(5)).json["id"]
    runners = [_later(service, 6) for _ in range(8)]
    written: list[Any] = []
    threads = [threading.Thread(target=lambda s=s: written.append(s.apply(schedule_id))) for s in runners]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len([e for e in written if e is not None]) == 1
    assert _flag(api, "raced")["version"] == 2


def test_a_step_rollout_is_several_scheduled_rollouts(api, service):
    api.put_flag("steps", 201, default=False)
    for seconds, percentage in ((10, 10), (20, 50), (30, 100)):
        _schedule(api, "steps", {"rollout": {"percentage": percentage, "stickiness": "user_id"}}, at=_at(seconds))
    for seconds, version, percentage in ((15, 2, 10), (25, 3, 50), (35, 4, 100)):
        later = _later(service, seconds)
        for schedule_id in later.due():
            later.apply(schedule_id)
        flag = _flag(api, "steps")
        assert (flag["version"], flag["rollout"]["percentage"]) == (version, percentage)


def test_cancel_a_pending_change_but_not_a_done_one(api, service):
    api.put_flag("cancelled", 201, default=False)
    first = _schedule(api, "cancelled", {"default": True}).json["id"]
    second = _schedule(api, "cancelled", {"enabled": False}, at=_at(5)).json["id"]
    r = api.c.simulate_delete(f"/v1/flags/cancelled/schedule/{first}", headers=api.admin())
    assert r.status_code == 204, r.text
    assert_problem(
        api.c.simulate_delete(f"/v1/flags/cancelled/schedule/{first}", headers=api.admin()), 404, "not_found"
    )
    assert service.infra.redis.client.zscore(SCHEDULES_DUE, first) is None
    _later(service, 6).apply(second)
    assert_problem(
        api.c.simulate_delete(f"/v1/flags/cancelled/schedule/{second}", headers=api.admin()), 409, "conflict"
    )
    items = api.c.simulate_get("/v1/flags/cancelled/schedule", headers=api.admin()).json["items"]
    assert [(s["id"], s["status"]) for s in items] == [(second, "applied")]
    assert _events(service, "flag.schedule.cancelled")[-1]["data"]["schedule_id"] == first
    # Another flag's schedule id is not this flag's.
    api.put_flag("other", 201, default=False)
    third = _schedule(api, "other", {"default": True}).json["id"]
    assert_problem(
        api.c.simulate_delete(f"/v1/flags/cancelled/schedule/{third}", headers=api.admin()), 404, "not_found"
    )


def test_a_change_that_no_longer_fits_fails_and_changes_nothing(api, service):
    api.put_flag("variants", 201, default="a", variants=VARIANTS)
    schedule_id = _schedule(api, "variants", {"default": "b"}, at=_at(5)).json["id"]
    api.put_flag("variants", 200, default="a", variants=[{"name": "a", "weight": 50}, {"name": "c", "weight": 50}])
    assert _later(service, 6).apply(schedule_id)["type"] == "flag.schedule.failed"
    assert _flag(api, "variants")["version"] == 2
    failed = api.c.simulate_get("/v1/flags/variants/schedule", headers=api.admin()).json["items"][0]
    assert failed["status"] == "failed" and failed["errors"][0]["field"] == "default"


def test_deleting_a_flag_deletes_its_schedules(api, service):
    api.put_flag("doomed", 201, default=False)
    schedule_id = _schedule(api, "doomed", {"default": True}).json["id"]
    assert api.c.simulate_delete("/v1/flags/doomed", headers=api.admin()).status_code == 204
    api.put_flag("doomed", 201, default=False)
    assert api.c.simulate_get("/v1/flags/doomed/schedule", headers=api.admin()).json["items"] == []
    redis = service.infra.redis.client
    assert redis.zscore(SCHEDULES_DUE, schedule_id) is None and not redis.hexists(SCHEDULES, schedule_id)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"at": "tomorrow", "changes": {"default": True}}, "at"),
        ({"at": "2030-01-01T00:00:00", "changes": {"default": True}}, "at"),  # no time zone
        ({"at": "2020-01-01T00:00:00Z", "changes": {"default": True}}, "at"),  # past
        ({"at": "2999-01-01T00:00:00Z", "changes": {"default": True}}, "at"),  # too far
        ({"at": None, "changes": {"default": True}}, "at"),
        ({"changes": {"default": True}}, "at"),
        ({"at": "+10:00", "changes": {"default": True}}, "at"),
        ({"at": "FUTURE", "changes": {}}, "changes"),
        ({"at": "FUTURE", "changes": {"description": "x"}}, "changes.description"),
        ({"at": "FUTURE", "changes": {"allow_overrides": "user"}}, "changes.allow_overrides"),
        ({"at": "FUTURE", "changes": {"rollout": {"percentage": 101}}}, "changes.rollout.percentage"),
        ({"at": "FUTURE", "changes": {"enabled": "yes"}}, "changes.enabled"),
        ({"at": "FUTURE", "changes": {"default": "text"}}, "rules.0.serve"),  # its rules serve booleans
        ({"at": "FUTURE", "changes": [1]}, "changes"),
        ({"at": "FUTURE", "changes": {"default": True}, "id": "sch_mine"}, "id"),
    ],
)
def test_malformed_schedules_are_422_naming_the_field(api, body, field):
    api.put_flag("target", 201, default=False, rules=[{"conditions": [], "serve": True}])
    if body.get("at") == "FUTURE":
        body = {**body, "at": _at(60)}
    r = api.c.simulate_post("/v1/flags/target/schedule", json=body, headers=api.admin())
    assert_problem(r, 422, "validation_error")
    assert field in [e["field"] for e in r.json["errors"]], r.json


def test_schedules_are_platform_admins_and_need_a_flag(api):
    api.put_flag("guarded", 201, default=False)
    body = {"at": _at(60), "changes": {"default": True}}
    assert_problem(
        api.c.simulate_post("/v1/flags/guarded/schedule", json=body, headers=api.headers()), 403, "insufficient_scope"
    )
    assert_problem(api.c.simulate_get("/v1/flags/guarded/schedule", headers=api.headers()), 403, "insufficient_scope")
    assert_problem(api.c.simulate_post("/v1/flags/missing/schedule", json=body, headers=api.admin()), 404, "not_found")
    assert_problem(api.c.simulate_get("/v1/flags/missing/schedule", headers=api.admin()), 404, "not_found")
    assert_problem(api.c.simulate_get("/v1/flags/BAD%20KEY/schedule", headers=api.admin()), 404, "not_found")
    assert_problem(
        api.c.simulate_delete("/v1/flags/guarded/schedule/sch_nothing", headers=api.admin()), 404, "not_found"
    )


def test_schedule_events_leave_the_snapshot_alone(api, service):
    api.put_flag("quiet", 201, default=False)
    before = service.snapshot.current()
    _schedule(api, "quiet", {"default": True})
    service.snapshot.apply(_events(service, "flag.schedule.created")[-1])
    assert service.snapshot.current() is before
