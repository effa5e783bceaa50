"""Evaluation over HTTP: every shared vector, the kill switch, server-side context, bad contexts."""

from __future__ import annotations

import json

import pytest
from flagtest import TEN_A, TEN_B

from aerie.events import STREAM_KEY
from aerie.testing.http import assert_problem
from aerie_client.flags.vectors import load

VECTORS = load()


@pytest.mark.parametrize("vector", VECTORS, ids=[v["name"] for v in VECTORS])
def test_every_vector_through_http(api, tenants, vector):
    """PUT the flag, set the overrides (while the flag admits them), evaluate: exactly as expected."""
    tenant_id = vector["tenant_id"]
    tenants.set(tenant_id, **vector["tenant"])
    flag = vector["flag"]
    key = flag["key"]
    given = vector.get("overrides") or {}
    headers = api.headers(tenant_id)
    if given:
        admitting = {**flag, "allow_overrides": "user", "enabled": True}
        api.put_flag(key, 201, **admitting)
        if "tenant" in given:
            r = api.c.simulate_put(
                f"/v1/flags/{key}/overrides/tenant", json={"value": given["tenant"]}, headers=headers
            )
            assert r.status_code == 200, r.text
        if "user" in given:
            user = vector["context"]["user_id"]
            r = api.c.simulate_put(
                f"/v1/flags/{key}/overrides/users/{user}", json={"value": given["user"]}, headers=headers
            )
            assert r.status_code == 200, r.text
    r = api.put_flag(key, None, **flag)
    assert r.status_code in (200, 201), r.text
    version = r.json["version"]
    r = api.c.simulate_post("/v1/evaluate", json={"context": vector["context"], "keys": [key]}, headers=headers)
    assert r.status_code == 200, r.text
    expected = {**{k: vector["expected"][k] for k in ("value", "variant", "reason", "rule")}, "revision": version}
    assert r.json == {"flags": {key: expected}}
    if "user_id" in vector["context"] and set(vector["context"]) <= {"user_id", "session_id", "ip"}:
        one = api.c.simulate_get(f"/v1/flags/{key}/evaluation", params=vector["context"], headers=headers)
        assert one.status_code == 200 and one.json == expected


def test_kill_switch_beats_overrides_rules_and_rollout(api):
    rules = [{"conditions": [{"attribute": "country", "op": "eq", "values": ["DE"]}], "serve": True}]
    flag = {"default": False, "rules": rules, "rollout": {"percentage": 100}, "allow_overrides": "tenant"}
    api.put_flag("checkout-v2", 201, **flag)
    assert (
        api.c.simulate_put(
            "/v1/flags/checkout-v2/overrides/tenant", json={"value": True}, headers=api.headers()
        ).status_code
        == 200
    )
    assert api.value("checkout-v2", {"user_id": "u1", "country": "DE"})["rule"] == "override:tenant"
    killed = api.put_flag("checkout-v2", 200, **{**flag, "enabled": False}).json["version"]
    for ctx in ({"user_id": "u1", "country": "DE"}, {"user_id": "u2"}, {}):
        assert api.value("checkout-v2", ctx) == {
            "value": False,
            "variant": None,
            "reason": "DISABLED",
            "rule": None,
            "revision": killed,
        }
    api.put_flag("checkout-v2", 200, **flag)
    assert api.value("checkout-v2", {"user_id": "u1"})["value"] is True


@pytest.mark.parametrize(
    ("flag", "served"),
    [
        ({"default": True}, False),
        ({"default": True, "off": True}, True),
        ({"default": "new", "off": "old"}, "old"),
        ({"default": 10}, 10),
        ({"default": {"limit": 10}, "off": {"limit": 0}}, {"limit": 0}),
    ],
)
def test_the_kill_switch_serves_off(api, flag, served):
    """Killing a flag whose default is true turns the feature off; ``off`` says what else to serve."""
    api.put_flag("killable", 201, **flag, enabled=False)
    assert api.value("killable", {"user_id": "u1"})["value"] == served
    assert api.c.simulate_get("/v1/flags/killable", headers=api.admin()).json.get("off") == flag.get("off")


def nested(depth: int) -> list:
    value: list = [1]
    for _ in range(depth):
        value = [value]
    return value


@pytest.mark.parametrize(
    ("flag", "field"),
    [
        ({"default": True, "off": "no"}, "off"),
        ({"default": "a", "variants": [{"name": "a", "weight": 100}], "off": "b"}, "off"),
        ({"default": [1], "off": nested(25)}, "off"),
    ],
)
def test_an_off_value_the_flag_cannot_serve_is_a_422(api, flag, field):
    body = assert_problem(api.put_flag("bad-off", None, **flag), 422, "validation_error")
    assert [e["field"] for e in body["errors"]] == [field]


def test_every_evaluation_names_the_revision_that_produced_it(api, service):
    first = api.put_flag("rev", 201, default=False).json["version"]
    assert api.value("rev", {"user_id": "u"})["revision"] == first
    second = api.put_flag("rev", 200, default=True).json["version"]
    assert second == first + 1
    got = api.value("rev", {"user_id": "u"})
    assert got["revision"] == second and got["value"] is True
    one = api.c.simulate_get("/v1/flags/rev/evaluation", params={"user_id": "u"}, headers=api.headers())
    assert one.json["revision"] == second
    # The change's event (and so its audit entry) names the same version.
    events = [json.loads(fields["event"]) for _, fields in service.infra.redis.client.xrange(STREAM_KEY)]
    changes = [e["data"]["version"] for e in events if e["type"] in ("flag.created", "flag.updated")]
    assert changes[-2:] == [first, second]


def test_tenant_attributes_come_from_the_tenants_service_and_cannot_be_spoofed(api, tenants):
    rule = {
        "conditions": [{"attribute": "tenant.created_at", "op": "after", "values": ["2017-01-01T00:00:00Z"]}],
        "serve": True,
    }
    api.put_flag("new-dashboard", 201, default=False, rules=[rule])
    tenants.set(TEN_A, created_at="2016-05-01T00:00:00Z", plan="free")
    tenants.set(TEN_B, created_at="2020-05-01T00:00:00Z", plan="team")
    spoof = {"tenant": {"created_at": "2030-01-01T00:00:00Z"}, "tenant_id": TEN_B}
    assert api.value("new-dashboard", spoof, tenant_id=TEN_A)["value"] is False
    got = api.value("new-dashboard", {}, tenant_id=TEN_B)
    assert got == {"value": True, "variant": None, "reason": "TARGETING_MATCH", "rule": "rules[0]", "revision": 1}


def test_a_tenant_change_reaches_the_next_evaluation(api, tenants):
    rule = {"conditions": [{"attribute": "tenant.plan", "op": "eq", "values": ["team"]}], "serve": True}
    api.put_flag("team-only", 201, default=False, rules=[rule])
    tenants.set(TEN_A, plan="free")
    assert [api.value("team-only", {}, tenant_id=TEN_A)["value"] for _ in range(3)] == [False] * 3
    tenants.set(TEN_A, plan="team")  # the directory hands out a new document
    assert api.value("team-only", {}, tenant_id=TEN_A)["value"] is True
    tenants.missing.add(TEN_A)  # gone: no attributes, not the last ones seen
    assert api.value("team-only", {}, tenant_id=TEN_A)["value"] is False


def test_all_flags_without_keys_and_unknown_keys(api):
    api.put_flag("one", 201, default=True)
    api.put_flag("two", 201, default="x")
    r = api.evaluate({"user_id": "u"})
    assert r.status_code == 200 and set(r.json["flags"]) == {"one", "two"}
    r = api.evaluate({"user_id": "u"}, ["one", "nope"])
    unknown = {"value": None, "variant": None, "reason": "ERROR", "rule": None, "revision": None}
    assert r.json["flags"]["nope"] == unknown
    assert_problem(api.c.simulate_get("/v1/flags/nope/evaluation", headers=api.headers()), 404, "not_found")


@pytest.mark.parametrize("context", [[1, 2], "user", 7, None, True])
def test_a_context_that_is_not_an_object_is_a_422(api, context):
    body = assert_problem(
        api.c.simulate_post("/v1/evaluate", json={"context": context}, headers=api.headers()), 422, "validation_error"
    )
    assert [e["field"] for e in body["errors"]] == ["context"]


def test_a_context_too_large_is_a_422(api):
    body = assert_problem(api.evaluate({"blob": "x" * 9000}), 422, "validation_error")
    assert body["errors"][0]["field"] == "context" and "bytes" in body["errors"][0]["message"]
    body = assert_problem(api.evaluate({f"k{i}": i for i in range(101)}), 422, "validation_error")
    assert body["errors"][0]["field"] == "context"
    body = assert_problem(api.evaluate({}, keys=["k"] * 201), 422, "validation_error")
    assert body["errors"][0]["field"] == "keys"


def test_other_bad_evaluation_requests(api):
    h = api.headers()
    assert_problem(
        api.c.simulate_post("/v1/evaluate", body="[]", headers={**h, "Content-Type": "application/json"}),
        422,
        "validation_error",
    )
    assert_problem(
        api.c.simulate_post("/v1/evaluate", json={"context": {}, "extra": 1}, headers=h), 422, "validation_error"
    )
    assert_problem(
        api.c.simulate_get("/v1/flags/x/evaluation", params={"colour": "red"}, headers=h), 422, "validation_error"
    )


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v1/flags/x/evaluation"),
        ("GET", "/v1/flags/snapshot"),
        ("PUT", "/v1/flags/x/overrides/tenant"),
        ("DELETE", "/v1/flags/x/overrides/users/u1"),
    ],
)
def test_platform_tokens_on_tenant_routes_are_refused(api, method, path):
    headers = api.headers(tenant_id=None, scope="platform:admin")
    r = api.c.simulate_request(method, path, json={"context": {}, "value": True}, headers=headers)
    assert_problem(r, 403, "tenant_required")


def test_scopes_of_tenant_routes(api):
    reader = api.headers(scope="flags:read")
    api.put_flag("f", 201, default=False, allow_overrides="tenant")
    r = api.c.simulate_put("/v1/flags/f/overrides/tenant", json={"value": True}, headers=reader)
    assert_problem(r, 403, "insufficient_scope")
    r = api.c.simulate_post("/v1/evaluate", json={}, headers=api.headers(scope="projects:read"))
    assert_problem(r, 403, "insufficient_scope")
    assert api.c.simulate_post("/v1/evaluate", json={}, headers=reader).status_code == 200


def test_tenants_unreachable_is_a_503(api, tenants):
    api.put_flag("f", 201, default=False)
    tenants.unreachable(TEN_A)
    r = api.evaluate({})
    assert_problem(r, 503, "unavailable")
    assert r.headers["Retry-After"]


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"context": {}},
        {"context": {"user_id": "u", "n": 1, "deep": {"a": [1, 2]}}, "keys": ["a", "b"]},
        {"keys": None},
        {"context": None},
        {"context": []},
        {"context": "x"},
        {"context": {f"k{i}": i for i in range(101)}},
        {"keys": "a"},
        {"keys": [1, "a", None]},
        {"keys": ["x" * 101]},
        {"keys": ["k"] * 201},
        {"context": {}, "extra": True},
        {"context": 5, "keys": [5], "other": 1},
    ],
)
def test_the_hand_written_check_agrees_with_the_schema(body):
    """``check_evaluate`` stands in for Cerberus on the hot path: same verdicts, same fields."""
    from aerie import errors
    from aerie.validation import validate
    from flags.schemas import EVALUATE, check_evaluate

    def verdict(check):
        try:
            check(body)
        except errors.Problem as exc:
            return sorted(e["field"] for e in exc.errors)
        return "ok"

    assert verdict(check_evaluate) == verdict(lambda b: validate(EVALUATE, b))


def test_deeply_nested_bodies_are_clear_problems(api):
    h = {**api.headers(), "Content-Type": "application/json"}
    too_deep_for_json = '{"context":' + '{"a":' * 5000 + "1" + "}" * 5000 + "}"
    assert_problem(api.c.simulate_post("/v1/evaluate", body=too_deep_for_json, headers=h), 400, "bad_request")
    nested: dict = {}
    node = nested
    for _ in range(300):
        node["a"] = {}
        node = node["a"]
    body = assert_problem(api.evaluate(nested), 422, "validation_error")
    assert body["errors"] == [{"field": "context", "message": "nests deeper than 254 levels"}]


def test_a_platform_admin_previews_as_the_tenant_it_names(api):
    """The console's "evaluate for this context": the tenant's own answer, overrides included."""
    api.put_flag("preview", 201, default=False, allow_overrides="tenant")
    r = api.c.simulate_put("/v1/flags/preview/overrides/tenant", json={"value": True}, headers=api.headers())
    assert r.status_code == 200, r.text
    body = {"context": {"user_id": "u-1"}, "keys": ["preview"]}
    assert_problem(api.c.simulate_post("/v1/evaluate", json=body, headers=api.admin()), 403, "tenant_required")
    r = api.c.simulate_post("/v1/evaluate", params={"tenant_id": TEN_A}, json=body, headers=api.admin())
    assert r.status_code == 200, r.text
    assert r.json["flags"]["preview"]["value"] is True and r.json["flags"]["preview"]["reason"] == "TARGETING_MATCH"
    reader = api.headers(tenant_id=None, scope="platform:read flags:read")
    r = api.c.simulate_post("/v1/evaluate", params={"tenant_id": TEN_A}, json=body, headers=reader)
    assert_problem(r, 403, "tenant_required")
    r = api.c.simulate_post("/v1/evaluate", params={"tenant_id": "ten_other"}, json=body, headers=api.headers())
    assert_problem(r, 403, "forbidden")
