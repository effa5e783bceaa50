"""``/v1/flags/{key}/schedule``: changes to a flag's definition, applied at a given time."""

from __future__ import annotations

from typing import Any

import falcon

from aerie import errors
from aerie.endpoints import endpoint
from aerie.events import EventContext
from flags import schemas
from flags.domain import is_key
from flags.resources.definitions import ADMIN, READ
from flags.schedules import MAX_PENDING, Schedules

#: Kept to replay the scheduling request's context into the applied change's event; not shown.
_INTERNAL = ("context",)


def _public(schedule: dict[str, Any]) -> dict[str, Any]:
    return {name: value for name, value in schedule.items() if name not in _INTERNAL}


def _flag_key(key: str) -> str:
    if not is_key(key):
        raise errors.not_found(f"There is no flag {key!r}.")
    return key


class FlagSchedule:
    def __init__(self, schedules: Schedules) -> None:
        self._schedules = schedules

    @endpoint(
        "Schedule a change of a flag",
        scopes=ADMIN,
        body=schemas.SCHEDULE_POST,
        response=schemas.SCHEDULE,
        status=201,
        responses={404: "There is no such flag", 422: "`at` is past or too far ahead, or the change is invalid"},
        description="At `at` (within a second, once, by whichever instance is up) `changes` are merged into the "
        "definition as it is then and written as a new version: a `flag.updated` event recorded with the "
        "caller as its actor. The merged definition is checked now and again then: a change that no longer fits "
        "(the flag's variants changed meanwhile, say) is not applied and the schedule becomes `failed`, with "
        f"its `errors`. A step-by-step rollout is several scheduled `rollout` changes; at most {MAX_PENDING} "
        "may be pending per flag.",
    )
    def on_post(self, req: falcon.Request, resp: falcon.Response, key: str) -> None:
        body = req.context.body
        schedule = self._schedules.create(_flag_key(key), body["at"], body["changes"], EventContext.from_request(req))
        resp.status = 201
        resp.location = f"/v1/flags/{key}/schedule/{schedule['id']}"
        resp.media = _public(schedule)

    @endpoint(
        "List a flag's scheduled changes",
        scopes=READ,
        response=schemas.SCHEDULE_LIST,
        responses={404: "There is no such flag"},
        description="By `at`: pending ones, and the last applied or failed ones (cancelled ones are gone).",
    )
    def on_get(self, req: falcon.Request, resp: falcon.Response, key: str) -> None:
        resp.media = {"items": [_public(s) for s in self._schedules.list(_flag_key(key))]}


class FlagScheduleItem:
    def __init__(self, schedules: Schedules) -> None:
        self._schedules = schedules

    @endpoint(
        "Cancel a scheduled change",
        scopes=ADMIN,
        status=204,
        responses={404: "The flag has no scheduled change of that id", 409: "The change was already applied"},
    )
    def on_delete(self, req: falcon.Request, resp: falcon.Response, key: str, schedule_id: str) -> None:
        self._schedules.cancel(_flag_key(key), schedule_id, EventContext.from_request(req))
        resp.status = 204
