"""The flag editor, schedules and the live list's relay: what each form asks of the flags
service, what it refuses before asking, and who may reach them."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import pytest
from console.api import ServiceProblem
from console.app import build
from console.flag_editor import (
    MAX_FIELDS,
    apply_action,
    definition_from_editor,
    editor_from_flag,
    editor_from_form,
    schedule_from_form,
)
from consoletest import TEN_A, FakeApi, signed_in, token

FORM = {"Content-Type": "application/x-www-form-urlencoded"}
FLAG: dict[str, Any] = {
    "key": "f1",
    "description": "Checkout",
    "enabled": False,
    "default": False,
    "variants": [],
    "rules": [{"conditions": [{"attribute": "tenant.plan", "op": "in", "values": ["team"]}], "serve": True}],
    "rollout": {"percentage": 30, "stickiness": "user_id"},
    "allow_overrides": "none",
    "version": 4,
}
PATH = "/v1/flags/f1"


def _editor_form(csrf: str, **extra: str) -> str:
    fields = {
        "csrf": csrf,
        "version": "4",
        "description": "Checkout v2",
        "default": "false",
        "off": "",
        "allow_overrides": "tenant",
        "rule-0-serve": "true",
        "rule-0-cond-0-attribute": "tenant.plan",
        "rule-0-cond-0-op": "in",
        "rule-0-cond-0-values": "team, enterprise",
        **extra,
    }
    return urlencode(fields)


@pytest.fixture
def admin(client, fake_http, fake_api) -> str:
    fake_api.answers[("GET", "flags", PATH)] = FLAG
    return signed_in(client, fake_http, token())


def _writes(fake_api) -> list[tuple[str, str, str, Any, Any]]:
    return [c for c in fake_api.calls if c[0] in ("PUT", "POST", "DELETE", "PATCH")]


# The form, without HTTP ---------------------------------------------------------------------


def test_the_form_reads_back_the_definition_it_shows():
    editor = editor_from_flag(
        {**FLAG, "rules": [{"conditions": [{"attribute": "a", "op": "in", "values": ["x,y", 3]}], "serve": True}]}
    )
    assert editor.rules[0].conditions[0].values == '["x,y", 3]', "a value with a comma stays one value"
    doc, errors = definition_from_editor(editor)
    assert errors == {} and doc["rules"][0]["conditions"][0]["values"] == ["x,y", 3]


def test_rows_are_read_in_their_numbers_order_and_blank_variant_rows_are_dropped():
    editor = editor_from_form(
        {
            "version": "2",
            "rule-1-serve": "b",
            "rule-0-serve": "a",
            "rule-0-cond-3-attribute": "y",
            "rule-0-cond-1-attribute": "x",
            "variant-0-name": "a",
            "variant-0-weight": "50",
            "variant-1-name": "b",
            "variant-1-weight": "50",
            "variant-2-name": "",
            "variant-2-weight": "",
        }
    )
    assert [r.serve for r in editor.rules] == ["a", "b"]
    assert [c.attribute for c in editor.rules[0].conditions] == ["x", "y"]
    doc, _ = definition_from_editor(editor)
    assert doc["variants"] == [{"name": "a", "weight": 50}, {"name": "b", "weight": 50}]


def test_row_buttons_add_remove_and_reorder():
    editor = editor_from_flag(FLAG)
    apply_action(editor, "add-rule")
    apply_action(editor, "add-condition:1")
    assert len(editor.rules) == 2 and len(editor.rules[1].conditions) == 2
    editor.rules[1].serve = "false"
    apply_action(editor, "up:1")
    assert [r.serve for r in editor.rules] == ["false", "true"]
    apply_action(editor, "remove-condition:0:0")
    apply_action(editor, "remove-rule:1")
    assert [len(r.conditions) for r in editor.rules] == [1]
    apply_action(editor, "up:0")  # the first rule cannot go higher
    apply_action(editor, "remove-rule:9")  # no such rule: nothing happens
    assert len(editor.rules) == 1


@pytest.mark.parametrize(
    ("fields", "where"),
    [
        (
            {"variant-0-name": "a", "variant-0-weight": "60", "variant-1-name": "b", "variant-1-weight": "30"},
            "variants",
        ),
        ({"variant-0-name": "a b", "variant-0-weight": "100"}, "variants.0.name"),
        ({"variant-0-name": "a", "variant-0-weight": "101"}, "variants.0.weight"),
        ({"rule-0-cond-0-attribute": "no spaces please"}, "rules.0.conditions.0.attribute"),
        ({"rule-0-cond-0-op": "like"}, "rules.0.conditions.0.op"),
        ({"rule-0-cond-0-op": "eq", "rule-0-cond-0-values": "a, b"}, "rules.0.conditions.0.values"),
        ({"rule-0-cond-0-op": "gt", "rule-0-cond-0-values": "ten"}, "rules.0.conditions.0.values"),
        ({"rule-0-cond-0-values": "[not json"}, "rules.0.conditions.0.values"),
        ({"rule-0-serve": " "}, "rules.0.serve"),
    ],
)
def test_what_the_service_would_refuse_is_refused_at_the_field_it_concerns(fields, where):
    base = {"version": "1", "default": "false", "rule-0-serve": "true", "rule-0-cond-0-attribute": "plan"}
    base.update({"rule-0-cond-0-op": "in", "rule-0-cond-0-values": "team"})
    _, errors = definition_from_editor(editor_from_form({**base, **fields}))
    assert list(errors) == [where]


def test_a_schedule_is_a_utc_time_in_the_future_and_one_change():
    now = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
    body, errors = schedule_from_form({"at": "2026-06-02T09:30", "change": "rollout", "percentage": "50"}, now)
    assert errors == {} and body == {
        "at": "2026-06-02T09:30:00Z",
        "changes": {"rollout": {"percentage": 50, "stickiness": "user_id"}},
    }
    body, errors = schedule_from_form({"at": "2026-06-02T09:30:00+02:00", "change": "disable"}, now)
    assert body == {"at": "2026-06-02T07:30:00Z", "changes": {"enabled": False}} and errors == {}
    assert list(schedule_from_form({"at": "2026-06-01T11:59", "change": "enable"}, now)[1]) == ["at"]
    assert list(schedule_from_form({"at": "2027-06-03T12:00", "change": "enable"}, now)[1]) == ["at"]
    assert list(schedule_from_form({"at": "tomorrow", "change": "enable"}, now)[1]) == ["at"]
    assert list(schedule_from_form({"at": "2026-06-02T09:30", "change": "rollout", "percentage": "x"}, now)[1]) == [
        "changes.rollout.percentage"
    ]
    assert list(schedule_from_form({"at": "2026-06-02T09:30", "change": "delete"}, now)[1]) == ["changes"]


# The editor's routes -------------------------------------------------------------------------


def test_add_condition_shows_the_form_again_with_one_more_row_and_changes_nothing(client, admin, fake_api):
    fake_api.calls.clear()
    r = client.simulate_post("/flags/f1/definition", body=_editor_form(admin, action="add-condition:0"), headers=FORM)
    assert r.status_code == 200
    assert 'id="rule-0-cond-1-attribute"' in r.text and 'id="rule-0-cond-2-attribute"' not in r.text
    assert 'value="Checkout v2"' in r.text and 'value="team, enterprise"' in r.text, "what was typed stays"
    assert _writes(fake_api) == []


def test_the_page_shows_the_editor_with_the_flags_rules_and_the_ops_the_contract_allows(client, admin):
    page = client.simulate_get("/flags/f1").text
    assert 'id="definition-form"' in page and 'name="version" value="4"' in page
    assert 'value="tenant.plan"' in page and 'value="team"' in page
    for op in ("in", "not_in", "starts_with", "gte", "before", "exists"):
        assert f'<option value="{op}"' in page


def test_save_puts_the_definition_at_the_version_shown_keeping_the_kill_switch_and_rollout(client, admin, fake_api):
    r = client.simulate_post("/flags/f1/definition", body=_editor_form(admin, action="save"), headers=FORM)
    assert r.status_code == 303 and r.headers["Location"].startswith("/flags/f1?notice=")
    ((method, _, path, _, body),) = _writes(fake_api)
    assert (method, path) == ("PUT", PATH)
    assert fake_api.if_match[fake_api.calls.index((method, "flags", path, None, body))] == 4
    assert body == {
        "key": "f1",
        "enabled": False,
        "rollout": {"percentage": 30, "stickiness": "user_id"},
        "description": "Checkout v2",
        "default": False,
        "allow_overrides": "tenant",
        "variants": [],
        "rules": [
            {"conditions": [{"attribute": "tenant.plan", "op": "in", "values": ["team", "enterprise"]}], "serve": True}
        ],
    }
    assert "version" not in body, "If-Match says which version; the body does not contradict it"


def test_a_change_made_meanwhile_is_a_412_said_plainly_with_the_edits_kept(client, admin, fake_api):
    fake_api.answers[("PUT", "flags", PATH)] = ServiceProblem(
        412, "Precondition failed", "stale", "r9", "precondition_failed"
    )
    fake_api.answers[("GET", "flags", PATH)] = {**FLAG, "version": 5}
    r = client.simulate_post("/flags/f1/definition", body=_editor_form(admin), headers=FORM)
    assert r.status_code == 412
    assert "Someone changed this flag after you opened it (it is at version 5 now)" in r.text
    assert 'value="Checkout v2"' in r.text and 'name="version" value="4"' in r.text


def test_the_services_422_is_shown_next_to_each_field_it_names(client, admin, fake_api):
    fake_api.answers[("PUT", "flags", PATH)] = ServiceProblem(
        422,
        "Validation failed",
        "The flag definition has invalid fields.",
        "r2",
        "validation_error",
        [{"field": "rules.0.serve", "message": "must be a boolean, like the flag's default"}],
    )
    r = client.simulate_post("/flags/f1/definition", body=_editor_form(admin, **{"rule-0-serve": '"x"'}), headers=FORM)
    assert r.status_code == 422
    assert 'id="error-rules-0-serve">must be a boolean, like the flag&#39;s default</span>' in r.text


def test_a_form_the_console_refuses_never_reaches_the_service(client, admin, fake_api):
    fake_api.calls.clear()
    body = _editor_form(admin, **{"variant-0-name": "a", "variant-0-weight": "70"})
    r = client.simulate_post("/flags/f1/definition", body=body, headers=FORM)
    assert r.status_code == 422 and 'id="error-variants"' in r.text and "not 70" in r.text
    assert _writes(fake_api) == []


def test_the_editor_takes_many_rows_but_not_an_endless_form(client, admin, fake_api):
    rows = {f"rule-{i}-cond-0-attribute": "plan" for i in range(40)} | {f"rule-{i}-serve": "true" for i in range(40)}
    r = client.simulate_post("/flags/f1/definition", body=_editor_form(admin, action="add-rule", **rows), headers=FORM)
    assert r.status_code == 200 and 'id="rule-40-serve"' in r.text
    flood = {f"x{i}": "1" for i in range(MAX_FIELDS + 1)}
    assert (
        client.simulate_post("/flags/f1/definition", body=_editor_form(admin, **flood), headers=FORM).status_code == 400
    )


def test_creating_a_key_that_exists_does_not_replace_it(client, admin, fake_api):
    body = urlencode({"csrf": admin, "key": "f1", "default": "false", "allow_overrides": "none"})
    r = client.simulate_post("/flags", body=body, headers=FORM)
    assert r.status_code == 409 and "There is already a flag f1" in r.text
    assert _writes(fake_api) == []


@pytest.mark.parametrize(
    "path",
    ["/flags/f1/definition", "/flags/f1/schedules", "/flags/f1/schedules/sch_1/cancel"],
)
def test_every_new_form_needs_the_sessions_csrf_token(client, admin, fake_api, path):
    fake_api.calls.clear()
    r = client.simulate_post(path, body=_editor_form("forged"), headers=FORM)
    assert r.status_code == 403 and "did not come from the console" in r.text
    assert fake_api.calls == []


# Schedules ---------------------------------------------------------------------------------


def test_the_page_lists_schedules_and_a_pending_one_can_be_cancelled(client, admin, fake_api):
    fake_api.answers[("GET", "flags", f"{PATH}/schedule")] = {
        "items": [
            {"id": "sch_1", "at": "2030-01-01T00:00:00.000Z", "changes": {"enabled": True}, "status": "pending"},
            {
                "id": "sch_0",
                "at": "2025-01-01T00:00:00.000Z",
                "changes": {"enabled": False},
                "status": "applied",
                "version": 3,
            },
        ]
    }
    page = client.simulate_get("/flags/f1").text
    assert 'id="cancel-sch_1"' in page and 'id="cancel-sch_0"' not in page and "version 3" in page
    r = client.simulate_post("/flags/f1/schedules/sch_1/cancel", body=f"csrf={admin}", headers=FORM)
    assert r.status_code == 303 and "cancelled" in r.headers["Location"]
    assert r.headers["Location"].startswith("/flags/f1?notice=") and r.headers["Location"].endswith("#schedules")
    assert _writes(fake_api) == [("DELETE", "flags", f"{PATH}/schedule/sch_1", None, None)]


def test_cancelling_a_change_already_applied_says_so(client, admin, fake_api):
    fake_api.answers[("DELETE", "flags", f"{PATH}/schedule/sch_1")] = ServiceProblem(409, "Conflict", "done", "r3")
    r = client.simulate_post("/flags/f1/schedules/sch_1/cancel", body=f"csrf={admin}", headers=FORM)
    assert r.status_code == 303 and "already+applied" in r.headers["Location"]


def test_scheduling_posts_the_change_at_a_utc_time(client, admin, fake_api):
    at = (datetime.now(UTC) + timedelta(days=2)).strftime("%Y-%m-%dT%H:%M")
    body = urlencode({"csrf": admin, "at": at, "change": "rollout", "percentage": "75", "stickiness": "tenant_id"})
    r = client.simulate_post("/flags/f1/schedules", body=body, headers=FORM)
    assert r.status_code == 303, r.text
    assert _writes(fake_api) == [
        (
            "POST",
            "flags",
            f"{PATH}/schedule",
            None,
            {"at": f"{at}:00Z", "changes": {"rollout": {"percentage": 75, "stickiness": "tenant_id"}}},
        )
    ]


def test_a_schedule_in_the_past_is_refused_at_its_field_and_the_services_422_too(client, admin, fake_api):
    r = client.simulate_post(
        "/flags/f1/schedules",
        body=urlencode({"csrf": admin, "at": "2001-01-01T00:00", "change": "enable"}),
        headers=FORM,
    )
    assert r.status_code == 422 and 'id="error-at"' in r.text and _writes(fake_api) == []
    fake_api.answers[("POST", "flags", f"{PATH}/schedule")] = ServiceProblem(
        422,
        "Validation failed",
        "bad",
        "r4",
        "validation_error",
        [{"field": "changes.rollout", "message": "no rollout here"}],
    )
    at = (datetime.now(UTC) + timedelta(days=1)).strftime("%Y-%m-%dT%H:%M")
    r = client.simulate_post(
        "/flags/f1/schedules", body=urlencode({"csrf": admin, "at": at, "change": "enable"}), headers=FORM
    )
    assert r.status_code == 422 and "no rollout here" in r.text


# Who may -----------------------------------------------------------------------------------


def test_a_viewer_reads_the_definition_and_cannot_change_it(client, fake_http, fake_api):
    fake_api.answers[("GET", "flags", PATH)] = FLAG
    csrf = signed_in(client, fake_http, token(scope="platform:read", role="platform-viewer"))
    page = client.simulate_get("/flags/f1").text
    assert 'id="definition-form"' not in page and 'id="rules-view"' in page and "tenant.plan in" in page
    assert 'id="schedules"' not in page, "schedules are platform:admin's to read"
    assert "flags-live.js" not in client.simulate_get("/flags").text
    fake_api.calls.clear()
    for path in ("/flags/f1/definition", "/flags/f1/schedules", "/flags/f1/schedules/sch_1/cancel"):
        r = client.simulate_post(path, body=_editor_form(csrf), headers=FORM)
        assert r.status_code == 403 and "platform-admin" in r.text
    assert _writes(fake_api) == []


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/flags/stream"),
        ("POST", "/flags/f1/definition"),
        ("POST", "/flags/f1/schedules"),
        ("POST", "/flags/f1/schedules/sch_1/cancel"),
    ],
)
def test_tenant_people_cannot_reach_flag_definitions_by_url(client, fake_http, fake_api, method, path):
    csrf = signed_in(client, fake_http, token(TEN_A, scope="flags:read flags:write", role="admin"))
    fake_api.calls.clear()
    r = client.simulate_request(method, path, body=_editor_form(csrf), headers=FORM)
    assert r.status_code == 403 and "platform people" in r.text
    assert [c for c in fake_api.calls if c[1] == "flags"] == []


# The live list's relay ---------------------------------------------------------------------


class _Raw:
    def __init__(self, chunks: list[bytes]) -> None:
        self._chunks = list(chunks)

    def read1(self, n: int) -> bytes:
        return self._chunks.pop(0) if self._chunks else b""


class _Upstream:
    def __init__(self, chunks: list[bytes]) -> None:
        self.raw = _Raw(chunks)
        self.closed = threading.Event()

    def close(self) -> None:
        self.closed.set()


def test_the_relay_passes_the_stream_on_with_the_persons_token_and_gives_its_slot_back(client, admin, fake_api):
    opened: list[tuple[str, str, str]] = []
    upstreams: list[_Upstream] = []

    def stream(token: str, service: str, path: str, *, read_timeout: float) -> _Upstream:
        opened.append((token, service, path))
        upstreams.append(_Upstream([b"id: e1\nevent: flag.updated\ndata: {}\n\n"]))
        return upstreams[-1]

    fake_api.event_stream = stream  # type: ignore[method-assign]
    for _ in range(2):  # the second works only if the first gave its slot back
        r = client.simulate_get("/flags/stream")
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        assert r.text == "retry: 1000\n\nid: e1\nevent: flag.updated\ndata: {}\n\n"
    assert [o[1:] for o in opened] == [("flags", "/v1/flags/stream")] * 2
    assert opened[0][0].count(".") == 2, "the person's own token, server-side"
    assert all(u.closed.is_set() for u in upstreams)
    page = client.simulate_get("/flags")
    assert '<script src="/static/flags-live.js" defer></script>' in page.text and 'id="flag-rows"' in page.text
    assert opened[0][0] not in page.text, "the token is never in the page"
    js = client.simulate_get("/static/flags-live.js")
    assert js.status_code == 200 and js.headers["content-type"].startswith("text/javascript")


def test_a_second_relay_in_one_process_is_told_to_come_back_later(client, admin, fake_api, service):
    relay = next(r for p, r in _routes(service) if p == "/flags/stream")
    assert relay._slots.acquire(blocking=False)  # one relay already open in this process
    try:
        r = client.simulate_get("/flags/stream")
        assert r.status_code == 503 and r.headers["Retry-After"] == "3"
    finally:
        relay._slots.release()


def test_the_stream_mule_holds_many_long_relays_and_a_worker_one_short_one(settings) -> None:
    """Under uWSGI the mule serves ``/flags/stream`` (``uwsgi.ini`` routes it there): threads
    of its own and no harakiri, so relays last and many are open at once."""
    from console.app import STREAM_THREADS
    from console.resources.flags import MULE_RELAY_SECONDS, RELAY_SECONDS

    from aerie.service import Process

    def relay(process: Process) -> Any:
        service = build(settings, process=process, api=FakeApi())
        try:
            return next(r for p, r in _routes(service) if p == "/flags/stream")
        finally:
            service.close()

    mule = relay(Process.stream_mule(STREAM_THREADS))
    assert mule._relay_seconds == MULE_RELAY_SECONDS
    held = [mule._slots.acquire(blocking=False) for _ in range(STREAM_THREADS)]
    assert held.count(True) == STREAM_THREADS * 3 // 4, "a quarter of the threads stay for exports"
    worker = relay(Process(threads=2, harakiri=30))
    assert worker._relay_seconds == RELAY_SECONDS
    assert [worker._slots.acquire(blocking=False) for _ in range(2)] == [True, False]


def test_the_services_refusal_of_the_stream_is_the_relays_and_frees_the_slot(client, admin, fake_api):
    def refused(token: str, service: str, path: str, *, read_timeout: float) -> Any:
        raise ServiceProblem(403, "Forbidden", "tenant_required", "r5", "tenant_required")

    fake_api.event_stream = refused  # type: ignore[method-assign]
    assert client.simulate_get("/flags/stream").status_code == 403
    assert client.simulate_get("/flags/stream").status_code == 403, "not 503: the slot was given back"


def _routes(service: Any) -> list[tuple[str, Any]]:
    found = []
    for node in service.app._router._roots:
        stack = [node]
        while stack:
            n = stack.pop()
            if n.resource is not None:
                found.append((n.uri_template, n.resource))
            stack.extend(n.children)
    return found
