"""Overrides: allow_overrides (403), unknown flags (404), value types (422), tenant isolation."""

from __future__ import annotations

import pytest
from flagtest import TEN_A, TEN_B

from aerie.testing.http import assert_problem


def put_override(api, key, value, user=None, tenant_id=TEN_A):
    path = f"/v1/flags/{key}/overrides/" + (f"users/{user}" if user else "tenant")
    return api.c.simulate_put(path, json={"value": value}, headers=api.headers(tenant_id))


def delete_override(api, key, user=None, tenant_id=TEN_A):
    path = f"/v1/flags/{key}/overrides/" + (f"users/{user}" if user else "tenant")
    return api.c.simulate_delete(path, headers=api.headers(tenant_id))


@pytest.mark.parametrize(
    ("allow", "tenant_ok", "user_ok"), [("none", False, False), ("tenant", True, False), ("user", True, True)]
)
def test_allow_overrides_decides_what_may_be_set(api, allow, tenant_ok, user_ok):
    api.put_flag("f", 201, default=False, allow_overrides=allow)
    r = put_override(api, "f", True)
    if tenant_ok:
        assert r.status_code == 200 and r.json == {"key": "f", "scope": "tenant", "value": True}
    else:
        assert_problem(r, 403, "forbidden")
    r = put_override(api, "f", True, user="u1")
    if user_ok:
        assert r.status_code == 200 and r.json == {"key": "f", "scope": "user", "user_id": "u1", "value": True}
    else:
        assert_problem(r, 403, "forbidden")


def test_overrides_on_unknown_flags_are_404(api):
    assert_problem(put_override(api, "ghost", True), 404, "not_found")
    assert_problem(put_override(api, "ghost", True, user="u1"), 404, "not_found")
    assert_problem(delete_override(api, "ghost"), 404, "not_found")
    assert_problem(delete_override(api, "ghost", user="u1"), 404, "not_found")


def test_override_values_must_be_servable(api):
    api.put_flag("typed", 201, default=False, allow_overrides="user")
    body = assert_problem(put_override(api, "typed", "yes"), 422, "validation_error")
    assert body["errors"] == [{"field": "value", "message": "must be a boolean, like the flag's default"}]
    variants = [{"name": "a", "weight": 50}, {"name": "b", "weight": 50}]
    api.put_flag("split", 201, default="a", variants=variants, allow_overrides="tenant")
    assert_problem(put_override(api, "split", "c"), 422, "validation_error")
    assert put_override(api, "split", "b").status_code == 200
    assert api.value("split", {"user_id": "u1"}) == {
        "value": "b",
        "variant": "b",
        "reason": "TARGETING_MATCH",
        "rule": "override:tenant",
        "revision": 1,
    }
    body = assert_problem(
        api.c.simulate_put("/v1/flags/typed/overrides/tenant", json={}, headers=api.headers()), 422, "validation_error"
    )
    assert body["errors"][0]["field"] == "value"


def test_precedence_and_removal(api):
    api.put_flag("p", 201, default="off", allow_overrides="user")
    assert put_override(api, "p", "tenant-wide").status_code == 200
    assert put_override(api, "p", "just-u1", user="u1").status_code == 200
    assert api.value("p", {"user_id": "u1"})["value"] == "just-u1"
    assert api.value("p", {"user_id": "u2"})["value"] == "tenant-wide"
    assert delete_override(api, "p", user="u1").status_code == 204
    assert delete_override(api, "p", user="u1").status_code == 204  # idempotent
    assert api.value("p", {"user_id": "u1"})["rule"] == "override:tenant"
    assert delete_override(api, "p").status_code == 204
    assert api.value("p", {"user_id": "u1"}) == {
        "value": "off",
        "variant": None,
        "reason": "DEFAULT",
        "rule": None,
        "revision": 1,
    }


def test_tenant_b_never_sees_or_changes_tenant_a_overrides(api):
    api.put_flag("iso", 201, default=False, allow_overrides="user")
    assert put_override(api, "iso", True, tenant_id=TEN_A).status_code == 200
    assert put_override(api, "iso", True, user="shared-user", tenant_id=TEN_A).status_code == 200
    for ctx in ({}, {"user_id": "shared-user"}):
        assert api.value("iso", ctx, tenant_id=TEN_B)["value"] is False
    # B removing "its" overrides leaves A's alone.
    assert delete_override(api, "iso", tenant_id=TEN_B).status_code == 204
    assert delete_override(api, "iso", user="shared-user", tenant_id=TEN_B).status_code == 204
    assert api.value("iso", {"user_id": "other"}, tenant_id=TEN_A)["rule"] == "override:tenant"
    assert api.value("iso", {"user_id": "shared-user"}, tenant_id=TEN_A)["rule"] == "override:user"
    snap_b = api.c.simulate_get("/v1/flags/snapshot", headers=api.headers(TEN_B)).json
    assert snap_b["overrides"] == {"tenant": {}, "users": {}} and snap_b["tenant_id"] == TEN_B
    snap_a = api.c.simulate_get("/v1/flags/snapshot", headers=api.headers(TEN_A)).json
    assert snap_a["overrides"] == {"tenant": {"iso": True}, "users": {"iso": {"shared-user": True}}}
    assert set(snap_a["flags"]) == {"iso"} and snap_a["tenant"]["plan"] == "free"


def test_deleting_a_flag_removes_every_tenants_overrides(api):
    api.put_flag("gone", 201, default=False, allow_overrides="user")
    assert put_override(api, "gone", True, tenant_id=TEN_A).status_code == 200
    assert put_override(api, "gone", True, user="u", tenant_id=TEN_B).status_code == 200
    assert api.c.simulate_delete("/v1/flags/gone", headers=api.admin()).status_code == 204
    api.put_flag("gone", 201, default=False, allow_overrides="user")
    assert api.value("gone", {"user_id": "u"}, tenant_id=TEN_B)["reason"] == "DEFAULT"
    assert api.value("gone", {}, tenant_id=TEN_A)["reason"] == "DEFAULT"


def test_a_suspended_tenant_cannot_write_overrides_but_evaluates(api, tenants):
    api.put_flag("s", 201, default=False, allow_overrides="tenant")
    tenants.set(TEN_A, status="suspended")
    assert_problem(put_override(api, "s", True), 403, "tenant_suspended")
    assert api.value("s", {})["reason"] == "DEFAULT"


def test_bad_user_ids(api):
    api.put_flag("u", 201, default=False, allow_overrides="user")
    body = assert_problem(put_override(api, "u", True, user="a%20b"), 422, "validation_error")
    assert body["errors"][0]["field"] == "user_id"
    assert_problem(put_override(api, "u", True, user="x" * 257), 422, "validation_error")
    body = assert_problem(delete_override(api, "u", user="a%09b"), 422, "validation_error")
    assert body["errors"][0]["field"] == "user_id"
    assert put_override(api, "u", True, user="caf%C3%A9-42").status_code == 200  # any printable text
