"""Definitions: strict validation (422 naming the field), versions, If-Match; platform people
read them and only platform admins write."""

from __future__ import annotations

from typing import Any

import pytest

from aerie.testing.http import assert_problem

VALID: dict[str, Any] = {
    "description": "New dashboard",
    "enabled": True,
    "default": "control",
    "variants": [{"name": "control", "weight": 50}, {"name": "treatment", "weight": 50}],
    "rules": [
        {
            "conditions": [
                {"attribute": "tenant.plan", "op": "in", "values": ["enterprise"]},
                {"attribute": "tenant.created_at", "op": "after", "values": ["2017-01-01T00:00:00Z"]},
            ],
            "serve": "treatment",
        }
    ],
    "rollout": {"percentage": 25, "stickiness": "user_id"},
    "allow_overrides": "tenant",
}


def test_create_get_replace_and_list(api):
    r = api.put_flag("new-dashboard", 201, **VALID)
    flag = r.json
    assert r.headers["Location"] == "/v1/flags/new-dashboard" and r.headers["ETag"] == '"1"'
    assert flag["key"] == "new-dashboard" and flag["version"] == 1 and flag["created_at"] == flag["updated_at"]
    assert {k: flag[k] for k in VALID} == VALID
    got = api.c.simulate_get("/v1/flags/new-dashboard", headers=api.admin())
    assert got.status_code == 200 and got.json == flag and got.headers["ETag"] == '"1"'
    # GET, change, PUT back: read-only fields are accepted and the service keeps its own.
    r = api.put_flag("new-dashboard", 200, **{**flag, "description": "v2"})
    assert r.json["version"] == 2 and r.json["created_at"] == flag["created_at"] and r.json["description"] == "v2"
    api.put_flag("another", 201, default=True)
    page = api.c.simulate_get("/v1/flags", params={"limit": 1}, headers=api.admin()).json
    assert [f["key"] for f in page["items"]] == ["another"] and page["next_cursor"]
    page = api.c.simulate_get("/v1/flags", params={"cursor": page["next_cursor"]}, headers=api.admin()).json
    assert [f["key"] for f in page["items"]] == ["new-dashboard"] and page["next_cursor"] is None


def test_defaults_of_a_minimal_flag(api):
    flag = api.put_flag("minimal", 201, default=False).json
    assert flag["enabled"] is True and flag["rules"] == [] and flag["variants"] == []
    assert flag["rollout"] is None and flag["allow_overrides"] == "none" and flag["description"] == ""


def _invalid(**changes: Any) -> dict[str, Any]:
    doc = {**VALID, **changes}
    return {k: v for k, v in doc.items() if v is not ...}


def _rule(op: str, values: Any, attribute: str = "country", serve: Any = "treatment") -> list[dict[str, Any]]:
    return [{"conditions": [{"attribute": attribute, "op": op, "values": values}], "serve": serve}]


@pytest.mark.parametrize(
    ("doc", "field"),
    [
        (_invalid(rollout={"percentage": 101}), "rollout.percentage"),
        (_invalid(rollout={"percentage": -1}), "rollout.percentage"),
        (_invalid(rollout={"percentage": "50"}), "rollout.percentage"),
        (_invalid(rollout={"stickiness": "user_id"}), "rollout.percentage"),
        (_invalid(rollout={"percentage": 5, "stickiness": "email"}), "rollout.stickiness"),
        (_invalid(rules=_rule("like", ["x"])), "rules.0.conditions.0.op"),
        (_invalid(variants=[{"name": "control", "weight": 50}, {"name": "treatment", "weight": 40}]), "variants"),
        (
            _invalid(variants=[{"name": "control", "weight": -10}, {"name": "treatment", "weight": 110}]),
            "variants.0.weight",
        ),
        (
            _invalid(variants=[{"name": "control", "weight": 50.5}, {"name": "treatment", "weight": 49.5}]),
            "variants.0.weight",
        ),
        (
            _invalid(variants=[{"name": "control", "weight": True}, {"name": "treatment", "weight": 99}]),
            "variants.0.weight",
        ),
        (_invalid(variants=[{"name": "control", "weight": 50}, {"name": "control", "weight": 50}]), "variants.1.name"),
        (_invalid(rules=_rule("eq", ["DE"], serve="purple")), "rules.0.serve"),
        (_invalid(default="purple"), "default"),
        (_invalid(variants=..., rollout=..., default=False, rules=_rule("eq", ["DE"], serve="yes")), "rules.0.serve"),
        (_invalid(variants=..., rollout=..., default=1, rules=_rule("eq", ["DE"], serve=True)), "rules.0.serve"),
        (_invalid(variants=..., default="blue"), "rollout"),
        (_invalid(rules=_rule("gt", ["10"])), "rules.0.conditions.0.values"),
        (_invalid(rules=_rule("gt", [True])), "rules.0.conditions.0.values"),
        (_invalid(rules=_rule("lte", [1, 2])), "rules.0.conditions.0.values"),
        (_invalid(rules=_rule("after", ["2017-01-01"])), "rules.0.conditions.0.values"),
        (_invalid(rules=_rule("before", ["yesterday"])), "rules.0.conditions.0.values"),
        (_invalid(rules=_rule("contains", [1])), "rules.0.conditions.0.values"),
        (_invalid(rules=_rule("in", [])), "rules.0.conditions.0.values"),
        (_invalid(rules=_rule("in", [{"a": 1}])), "rules.0.conditions.0.values.0"),
        (_invalid(rules=_rule("exists", ["yes"])), "rules.0.conditions.0.values"),
        (_invalid(rules=_rule("eq", ["x"], attribute="bad attr")), "rules.0.conditions.0.attribute"),
        (_invalid(rules=[{"serve": "treatment"}]), "rules.0.conditions"),
        (_invalid(rules=[{"conditions": []}]), "rules.0.serve"),
        (_invalid(default=...), "default"),
        (_invalid(default=None), "default"),
        (_invalid(enabled="yes"), "enabled"),
        (_invalid(allow_overrides="everyone"), "allow_overrides"),
        (_invalid(colour="red"), "colour"),
        (_invalid(key="other-key"), "key"),
    ],
)
def test_every_invalid_definition_is_a_422_naming_the_field(api, doc, field):
    r = api.c.simulate_put("/v1/flags/checked", json=doc, headers=api.admin())
    body = assert_problem(r, 422, "validation_error")
    assert field in [e["field"] for e in body["errors"]], body["errors"]
    assert api.c.simulate_get("/v1/flags/checked", headers=api.admin()).status_code == 404


@pytest.mark.parametrize("key", ["Upper", "-dash", "has:colon", "a" * 101, "snapshot", "stream", "sp%20ace"])
def test_a_key_breaking_the_pattern_is_a_422(api, key):
    r = api.c.simulate_put(f"/v1/flags/{key}", json={"default": False}, headers=api.admin())
    if r.status_code == 405:  # /v1/flags/snapshot and /stream are other routes: not a flag either way
        return
    body = assert_problem(r, 422, "validation_error")
    assert [e["field"] for e in body["errors"]] == ["key"]


def test_bad_bodies_are_clear_problems(api):
    h = api.admin()
    assert_problem(
        api.c.simulate_put("/v1/flags/x1", body="{nope", headers={**h, "Content-Type": "application/json"}),
        400,
        "bad_request",
    )
    assert_problem(api.c.simulate_put("/v1/flags/x1", json=[1, 2], headers=h), 422, "validation_error")
    assert_problem(
        api.c.simulate_put("/v1/flags/x1", body="a=b", headers={**h, "Content-Type": "text/plain"}),
        415,
        "unsupported_media_type",
    )


def test_if_match_and_body_version(api):
    api.put_flag("versioned", 201, default=False)
    h = api.admin()
    r = api.c.simulate_put("/v1/flags/versioned", json={"default": True}, headers={**h, "If-Match": '"7"'})
    assert_problem(r, 412, "precondition_failed")
    r = api.c.simulate_put("/v1/flags/versioned", json={"default": True}, headers={**h, "If-Match": '"1"'})
    assert r.status_code == 200 and r.json["version"] == 2 and r.headers["ETag"] == '"2"'
    r = api.c.simulate_put("/v1/flags/versioned", json={"default": False, "version": 1}, headers=h)
    assert_problem(r, 412, "precondition_failed")
    r = api.c.simulate_put("/v1/flags/brand-new", json={"default": False}, headers={**h, "If-Match": '"1"'})
    assert_problem(r, 412, "precondition_failed")
    assert_problem(
        api.c.simulate_delete("/v1/flags/versioned", headers={**h, "If-Match": '"1"'}), 412, "precondition_failed"
    )
    assert api.c.simulate_delete("/v1/flags/versioned", headers={**h, "If-Match": '"2"'}).status_code == 204
    assert_problem(api.c.simulate_get("/v1/flags/versioned", headers=h), 404, "not_found")
    assert_problem(api.c.simulate_delete("/v1/flags/versioned", headers=h), 404, "not_found")


def test_definitions_are_for_platform_people_only(api):
    tenant = api.headers()
    assert_problem(
        api.c.simulate_put("/v1/flags/f", json={"default": False}, headers=tenant), 403, "insufficient_scope"
    )
    assert_problem(api.c.simulate_get("/v1/flags", headers=tenant), 403, "insufficient_scope")
    assert_problem(api.c.simulate_get("/v1/flags"), 401, "unauthorized")


def test_a_platform_viewer_reads_definitions_and_changes_none(api):
    api.put_flag("f", 201, default=False)
    reader = api.headers(tenant_id=None, scope="platform:read")
    one = api.c.simulate_get("/v1/flags/f", headers=reader)
    assert one.status_code == 200 and one.json["key"] == "f" and one.headers["ETag"] == '"1"'
    page = api.c.simulate_get("/v1/flags", params={"limit": 10}, headers=reader)
    assert page.status_code == 200 and [f["key"] for f in page.json["items"]] == ["f"]
    assert api.c.simulate_get("/v1/flags/f/schedule", headers=reader).json == {"items": []}
    put = api.c.simulate_put("/v1/flags/f", json={"default": True}, headers=reader)
    assert_problem(put, 403, "insufficient_scope")
    assert_problem(api.c.simulate_put("/v1/flags/g", json={"default": True}, headers=reader), 403, "insufficient_scope")
    assert_problem(api.c.simulate_delete("/v1/flags/f", headers=reader), 403, "insufficient_scope")
    later = {"at": "2099-01-01T00:00:00Z", "changes": {"enabled": False}}
    assert_problem(api.c.simulate_post("/v1/flags/f/schedule", json=later, headers=reader), 403, "insufficient_scope")
    assert api.c.simulate_get("/v1/flags/f", headers=api.admin()).json["version"] == 1


def test_values_nesting_too_deeply_are_refused(api):
    deep: dict = {}
    node = deep
    for _ in range(300):
        node["a"] = {}
        node = node["a"]
    body = assert_problem(api.put_flag("deep", None, default=deep), 422, "validation_error")
    assert [e["field"] for e in body["errors"]] == ["default"]
    rule = {"conditions": [], "serve": deep}
    body = assert_problem(api.put_flag("deep", None, default={}, rules=[rule]), 422, "validation_error")
    assert [e["field"] for e in body["errors"]] == ["rules.0.serve"]
    api.put_flag("deep", 201, default={}, allow_overrides="tenant")
    r = api.c.simulate_put("/v1/flags/deep/overrides/tenant", json={"value": deep}, headers=api.headers())
    assert assert_problem(r, 422, "validation_error")["errors"][0]["field"] == "value"
