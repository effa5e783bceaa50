"""OFREP v1 over the app: the same answers as ``POST /v1/evaluate``, in OFREP's shapes and errors."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from flagtest import ISSUER, TEN_A, TEN_B

from aerie.testing.http import assert_problem
from aerie.testing.keys import make_claims
from aerie_client.flags.evaluation import CompiledFlag, error_evaluation
from aerie_client.flags.vectors import load
from flags.schemas import MAX_CONTEXT_BYTES, MAX_CONTEXT_KEYS

VECTORS = load()
ONE = "/ofrep/v1/evaluate/flags/{}"
BULK = "/ofrep/v1/evaluate/flags"
ALICE = "usr_01JALICE0000000000000000000"


def ofrep_context(context: dict[str, Any]) -> dict[str, Any]:
    """A vector's context as an OpenFeature SDK sends it: a string ``user_id`` is the targetingKey."""
    if isinstance(context.get("user_id"), str):
        rest = {k: v for k, v in context.items() if k != "user_id"}
        return {"targetingKey": context["user_id"], **rest}
    return context


def one(api, key: str, body: Any = None, headers: dict[str, str] | None = None, **kwargs: Any) -> Any:
    if body is None and "body" not in kwargs:
        body = {"context": {}}
    if isinstance(body, bytes):
        kwargs["body"] = body
    elif body is not None:
        kwargs["json"] = body
    return api.c.simulate_post(ONE.format(key), headers=headers or api.headers(), **kwargs)


def bulk(api, body: Any = None, headers: dict[str, str] | None = None, **kwargs: Any) -> Any:
    kwargs.setdefault("json", {"context": {}} if body is None else body)
    return api.c.simulate_post(BULK, headers=headers or api.headers(), **kwargs)


def person(api, member_id: str = ALICE) -> dict[str, str]:
    claims = make_claims(
        ISSUER,
        sub=member_id,
        client_id="cli_app",
        act={"sub": "cli_app"},
        tenant_id=TEN_A,
        scope="flags:read",
        role="viewer",
        email="alice@example.com",
        member_version=1,
    )
    return {"Authorization": f"Bearer {api.key.sign(claims)}"}


def assert_ofrep_error(resp: Any, status: int, code: str, key: str | None = None) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    assert resp.headers["Content-Type"].startswith("application/json")
    body = resp.json
    assert body["errorCode"] == code
    assert isinstance(body["errorDetails"], str) and body["errorDetails"]
    if key is None:
        assert "key" not in body
    else:
        assert body["key"] == key
    return body


@pytest.mark.parametrize("vector", VECTORS, ids=[v["name"] for v in VECTORS])
def test_every_vector_through_ofrep_single(api, tenants, vector):
    """Set up as the /v1/evaluate vector test does; OFREP answers the vector's value, variant, reason."""
    tenant_id = vector["tenant_id"]
    tenants.set(tenant_id, **vector["tenant"])
    flag = vector["flag"]
    key = flag["key"]
    given = vector.get("overrides") or {}
    headers = api.headers(tenant_id)
    if given:
        api.put_flag(key, 201, **{**flag, "allow_overrides": "user", "enabled": True})
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
    expected = vector["expected"]
    r = one(api, key, {"context": ofrep_context(vector["context"])}, headers)
    assert r.status_code == 200, r.text
    answer = {
        "key": key,
        "reason": expected["reason"],
        "variant": expected["variant"],
        "metadata": {"revision": version},
    }
    if expected["value"] is not None:
        answer["value"] = expected["value"]
    assert r.json == answer
    # The same context through /v1/evaluate, sent as it is: the two APIs agree.
    same = api.c.simulate_post("/v1/evaluate", json={"context": vector["context"], "keys": [key]}, headers=headers)
    assert same.json["flags"][key]["reason"] == r.json["reason"]


def test_targeting_key_is_the_user_id_and_wins_over_a_user_id_attribute(api):
    api.put_flag("beta", 201, default=False, allow_overrides="user")
    r = api.c.simulate_put("/v1/flags/beta/overrides/users/u-7", json={"value": True}, headers=api.headers())
    assert r.status_code == 200, r.text
    assert one(api, "beta", {"context": {"targetingKey": "u-7"}}).json["value"] is True
    assert one(api, "beta", {"context": {"targetingKey": "u-8", "user_id": "u-7"}}).json["value"] is False
    # A user_id attribute without a targetingKey counts as it does for /v1/evaluate.
    assert one(api, "beta", {"context": {"user_id": "u-7"}}).json["value"] is True


def test_a_person_evaluates_as_themself_unless_a_targeting_key_names_someone(api):
    api.put_flag("beta", 201, default=False, allow_overrides="user")
    r = api.c.simulate_put(f"/v1/flags/beta/overrides/users/{ALICE}", json={"value": True}, headers=api.headers())
    assert r.status_code == 200, r.text
    assert one(api, "beta", {"context": {}}, person(api)).json["value"] is True
    assert one(api, "beta", {"context": {"targetingKey": "someone"}}, person(api)).json["value"] is False
    mine = bulk(api, {"context": {}}, person(api)).json["flags"]
    assert mine == [{"key": "beta", "value": True, "reason": "TARGETING_MATCH", "metadata": {"revision": 1}}]
    # A client's token names nobody.
    assert one(api, "beta").json["value"] is False


def test_a_rollout_without_targeting_key_serves_the_default_not_targeting_key_missing(api):
    api.put_flag("ramp", 201, default=False, rollout={"percentage": 100})
    r = one(api, "ramp", {"context": {}})
    assert r.status_code == 200, r.text
    assert r.json == {"key": "ramp", "value": False, "reason": "DEFAULT", "variant": None, "metadata": {"revision": 1}}
    assert one(api, "ramp", {"context": {"targetingKey": "u1"}}).json["reason"] == "SPLIT"


def test_no_body_or_no_context_is_an_empty_context(api):
    api.put_flag("f", 201, default="on")
    for kwargs in ({"json": {}}, {"body": b""}, {"body": b"  \n"}):
        r = api.c.simulate_post(ONE.format("f"), headers=api.headers(), **kwargs)
        assert r.status_code == 200, (kwargs, r.text)
        assert r.json["value"] == "on"
        r = api.c.simulate_post(BULK, headers=api.headers(), **kwargs)
        assert r.status_code == 200, (kwargs, r.text)


def test_the_body_is_json_whatever_its_content_type(api):
    api.put_flag("f", 201, default=True)
    headers = {**api.headers(), "Content-Type": "application/x-www-form-urlencoded"}
    r = api.c.simulate_post(ONE.format("f"), body=b'{"context": {"targetingKey": "u1"}}', headers=headers)
    assert r.status_code == 200, r.text
    assert r.json["value"] is True


def test_a_value_of_null_is_the_code_default_answer_without_value(api):
    api.put_flag("limit", 201, default=10, allow_overrides="tenant")
    r = api.c.simulate_put("/v1/flags/limit/overrides/tenant", json={"value": None}, headers=api.headers())
    assert r.status_code == 200, r.text
    r = one(api, "limit")
    assert r.status_code == 200
    assert "value" not in r.json
    assert r.json["reason"] == "TARGETING_MATCH"
    assert "value" not in bulk(api).json["flags"][0]


def test_an_unknown_flag_is_flag_not_found(api):
    assert_ofrep_error(one(api, "nope"), 404, "FLAG_NOT_FOUND", key="nope")
    api.put_flag("gone", 201, default=True)
    assert api.c.simulate_delete("/v1/flags/gone", headers=api.admin()).status_code == 204
    assert_ofrep_error(one(api, "gone"), 404, "FLAG_NOT_FOUND", key="gone")
    assert bulk(api).json["flags"] == []


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        (b"{not json", "PARSE_ERROR"),
        (b"[]", "PARSE_ERROR"),
        (b"null", "PARSE_ERROR"),
        (b'"context"', "PARSE_ERROR"),
        (b"42", "PARSE_ERROR"),
        (b'{"context": {}, "keys": ["a"]}', "PARSE_ERROR"),
        (b"\xff\xfe{}", "PARSE_ERROR"),
        (b"\xef\xbb\xbf{}", "PARSE_ERROR"),
        (b'{"context": {"n": NaN}}', "PARSE_ERROR"),
        (b'{"context": "u1"}', "INVALID_CONTEXT"),
        (b'{"context": null}', "INVALID_CONTEXT"),
        (b'{"context": []}', "INVALID_CONTEXT"),
        (b'{"context": {"targetingKey": 7}}', "INVALID_CONTEXT"),
        (b'{"context": {"targetingKey": null}}', "INVALID_CONTEXT"),
        (b'{"context": {"targetingKey": ["u1"]}}', "INVALID_CONTEXT"),
        (b'{"context": {"n": 123456789012345678901234567890}}', "INVALID_CONTEXT"),
        (b'{"context": {"s": "\\ud800"}}', "INVALID_CONTEXT"),
    ],
)
def test_bad_bodies_are_ofrep_errors_for_one_flag_and_for_bulk(api, raw: bytes, code: str):
    api.put_flag("f", 201, default=True)
    headers = {**api.headers(), "Content-Type": "application/json"}
    assert_ofrep_error(one(api, "f", raw, headers), 400, code)
    assert_ofrep_error(api.c.simulate_post(BULK, body=raw, headers=headers), 400, code)


def test_a_context_past_the_evaluate_limits_is_invalid_context(api):
    api.put_flag("f", 201, default=True)
    too_many = {f"k{i}": i for i in range(MAX_CONTEXT_KEYS + 1)}
    too_big = {"blob": "x" * MAX_CONTEXT_BYTES}
    deep: Any = "leaf"
    for _ in range(300):
        deep = {"d": deep}
    for context in (too_many, too_big, {"deep": deep}):
        body = {"context": context}
        details = assert_ofrep_error(one(api, "f", body), 400, "INVALID_CONTEXT")["errorDetails"]
        assert "context" in details
        assert_ofrep_error(bulk(api, body), 400, "INVALID_CONTEXT")
    at_limit = {f"k{i}": i for i in range(MAX_CONTEXT_KEYS)}
    assert one(api, "f", {"context": at_limit}).status_code == 200


def test_a_body_past_the_service_limit_is_413_from_the_middleware(api):
    body = b'{"context": {"x": "' + b"x" * (1024 * 1024) + b'"}}'
    assert_problem(one(api, "f", body), 413, "payload_too_large")


def test_tokens_and_scopes_are_the_middleware_s_problem_documents(api):
    for path in (ONE.format("f"), BULK):
        assert_problem(api.c.simulate_post(path, json={"context": {}}), 401, "unauthorized")
        no_scope = api.headers(scope="flags:write")
        assert_problem(api.c.simulate_post(path, json={"context": {}}, headers=no_scope), 403, "insufficient_scope")
        platform = api.headers(tenant_id=None, scope="flags:read")
        assert_problem(api.c.simulate_post(path, json={"context": {}}, headers=platform), 403, "tenant_required")


def broken(api, service, key: str = "broken") -> None:
    """A flag the engine cannot evaluate (``ERROR``), put straight into the snapshot."""
    api.put_flag(key, 201, default=True)
    state = service.snapshot.current()

    class Broken(CompiledFlag):
        def evaluate(self, context: Any, **_: Any) -> Any:
            return error_evaluation(True, 1)

    service.snapshot.state = replace(state, flags={**state.flags, key: Broken(state.docs[key])})


def test_a_flag_that_cannot_be_evaluated_is_general(api, service):
    broken(api, service)
    body = assert_ofrep_error(one(api, "broken"), 400, "GENERAL", key="broken")
    assert body["metadata"] == {"revision": 1}
    api.put_flag("fine", 201, default="x")
    items = bulk(api).json["flags"]
    assert [item["key"] for item in items] == ["broken", "fine"]
    assert items[0]["errorCode"] == "GENERAL" and "value" not in items[0]
    assert items[1] == {"key": "fine", "value": "x", "reason": "DEFAULT", "metadata": {"revision": 1}}


def test_snapshot_not_loaded_is_503_in_ofrep_s_general_shape(api, service, monkeypatch):
    from aerie import errors

    def not_yet() -> Any:
        raise errors.unavailable("The flag definitions are not loaded yet; try again shortly.")

    monkeypatch.setattr(service.snapshot, "current", not_yet)
    for r in (one(api, "f"), bulk(api)):
        assert r.status_code == 503
        assert r.headers["Retry-After"] == "1"
        assert r.json == {"errorDetails": "The flag definitions are not loaded yet; try again shortly."}


def seed(api) -> None:
    variants = [{"name": "control", "weight": 50}, {"name": "treatment", "weight": 50}]
    api.put_flag("b-variant", 201, default="control", variants=variants, rollout={"percentage": 100})
    api.put_flag("a-bool", 201, default=False)
    api.put_flag("c-obj", 201, default={"limit": 10, "tier": "free"})


def test_bulk_answers_every_flag_sorted_with_revisions(api, service):
    seed(api)
    r = bulk(api, {"context": {"targetingKey": "user-1"}})
    assert r.status_code == 200, r.text
    assert r.headers["Cache-Control"] == "private, no-cache"
    flags = r.json["flags"]
    assert [f["key"] for f in flags] == ["a-bool", "b-variant", "c-obj"]
    assert flags[0] == {"key": "a-bool", "value": False, "reason": "DEFAULT", "metadata": {"revision": 1}}
    assert flags[1]["reason"] == "SPLIT" and flags[1]["variant"] == flags[1]["value"]
    assert flags[2]["value"] == {"limit": 10, "tier": "free"}
    assert r.json["metadata"] == {"revision": service.snapshot.current().revision}
    # The same evaluations as /v1/evaluate's.
    same = api.c.simulate_post("/v1/evaluate", json={"context": {"user_id": "user-1"}}, headers=api.headers())
    for item in flags:
        theirs = same.json["flags"][item["key"]]
        assert (item.get("value"), item.get("variant"), item["reason"]) == (
            theirs["value"],
            theirs["variant"],
            theirs["reason"],
        )


def test_bulk_etag_revalidates_and_changes_with_the_answer(api):
    seed(api)
    body = {"context": {"targetingKey": "user-1"}}
    first = bulk(api, body)
    tag = first.headers["ETag"]
    assert tag.startswith('"') and tag.endswith('"') and not tag.startswith("W/")
    assert bulk(api, body).headers["ETag"] == tag  # stable for the same answer
    for header in (tag, f"W/{tag}", f'"other", {tag}', "*"):
        r = bulk(api, body, headers={**api.headers(), "If-None-Match": header})
        assert r.status_code == 304, header
        assert r.content == b""
        assert r.headers["ETag"] == tag
    stale = bulk(api, body, headers={**api.headers(), "If-None-Match": '"other"'})
    assert stale.status_code == 200 and stale.json == first.json
    # Another answer (another variant), another tag; the same answer for another context, the same tag.
    others = [bulk(api, {"context": {"targetingKey": f"user-{i}"}}) for i in range(2, 12)]
    assert {r.headers["ETag"] == tag for r in others} == {True, False}
    for r in others:
        assert (r.headers["ETag"] == tag) == (r.json == first.json)
    api.put_flag("a-bool", 200, default=True)
    changed = bulk(api, body, headers={**api.headers(), "If-None-Match": tag})
    assert changed.status_code == 200
    assert changed.headers["ETag"] != tag
    assert changed.json["flags"][0]["value"] is True


def test_bulk_etag_differs_between_tenants_whose_answers_differ(api, tenants):
    team = [{"conditions": [{"attribute": "tenant.plan", "op": "eq", "values": ["team"]}], "serve": True}]
    api.put_flag("team-only", 201, default=False, rules=team)
    tenants.set(TEN_B, plan="team")
    a = bulk(api)
    b = bulk(api, headers=api.headers(TEN_B))
    assert a.json["flags"][0]["value"] is False and b.json["flags"][0]["value"] is True
    assert a.headers["ETag"] != b.headers["ETag"]


def test_both_are_documented_in_the_openapi_document(api):
    doc = api.c.simulate_get("/openapi.json").json
    single = doc["paths"]["/ofrep/v1/evaluate/flags/{key}"]["post"]
    assert set(single["responses"]) >= {"200", "400", "401", "403", "404"}
    # OFREP's own JSON errors are described, not claimed to be problem documents.
    assert "content" not in single["responses"]["404"] and "content" not in single["responses"]["400"]
    assert "application/json" in single["requestBody"]["content"]
    many = doc["paths"]["/ofrep/v1/evaluate/flags"]["post"]
    assert set(many["responses"]) >= {"200", "304", "400", "401", "403"}
