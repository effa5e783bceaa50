"""Flags for people: a person's token evaluates as that person and sets only their own override."""

from __future__ import annotations

from typing import Any

import pytest
from flagtest import ISSUER, TEN_A

from aerie.testing.http import assert_problem
from aerie.testing.keys import make_claims

ALICE = "usr_01JALICE0000000000000000000"
BOB = "usr_01JBOB000000000000000000000"


def person(api, member_id: str = ALICE, scope: str = "flags:read", tenant_id: str = TEN_A) -> dict[str, str]:
    claims = make_claims(
        ISSUER,
        sub=member_id,
        client_id="cli_app",
        act={"sub": "cli_app"},
        tenant_id=tenant_id,
        scope=scope,
        role="viewer",
        email="alice@example.com",
        member_version=1,
    )
    return {"Authorization": f"Bearer {api.key.sign(claims)}"}


def user_override(api, key: str, user_id: str, headers: dict[str, str], value: Any = True) -> Any:
    return api.c.simulate_put(f"/v1/flags/{key}/overrides/users/{user_id}", json={"value": value}, headers=headers)


@pytest.fixture
def beta(api) -> str:
    api.put_flag("beta", 201, default=False, allow_overrides="user")
    return "beta"


def test_a_person_evaluates_as_themself_unless_the_context_names_someone(api, beta: str) -> None:
    assert user_override(api, beta, ALICE, api.headers()).status_code == 200
    mine = api.c.simulate_post("/v1/evaluate", json={"context": {}, "keys": [beta]}, headers=person(api))
    assert mine.json["flags"][beta]["value"] is True
    assert mine.json["flags"][beta]["rule"] == "override:user"
    named = {"context": {"user_id": "someone-else"}, "keys": [beta]}
    other = api.c.simulate_post("/v1/evaluate", json=named, headers=person(api))
    assert other.json["flags"][beta]["value"] is False
    one = api.c.simulate_get(f"/v1/flags/{beta}/evaluation", headers=person(api))
    assert one.json["value"] is True
    # A client's token names nobody: the override of Alice does not apply.
    assert api.value(beta, {})["value"] is False


def test_a_person_sets_and_removes_their_own_override_with_flags_read(api, beta: str) -> None:
    r = user_override(api, beta, ALICE, person(api))
    assert r.status_code == 200, r.text
    assert r.json == {"key": beta, "scope": "user", "user_id": ALICE, "value": True}
    assert api.value(beta, {"user_id": ALICE})["value"] is True
    headers = person(api)
    assert api.c.simulate_delete(f"/v1/flags/{beta}/overrides/users/{ALICE}", headers=headers).status_code == 204
    assert api.value(beta, {"user_id": ALICE})["value"] is False


def test_a_person_without_flags_write_cannot_touch_someone_elses_override(api, beta: str) -> None:
    assert_problem(user_override(api, beta, BOB, person(api)), 403, "insufficient_scope")
    r = api.c.simulate_delete(f"/v1/flags/{beta}/overrides/users/{BOB}", headers=person(api))
    assert_problem(r, 403, "insufficient_scope")
    # ... nor the tenant's, nor their own where the flag allows only tenant overrides.
    r = api.c.simulate_put(f"/v1/flags/{beta}/overrides/tenant", json={"value": True}, headers=person(api))
    assert_problem(r, 403, "insufficient_scope")
    api.put_flag("tenant-only", 201, default=False, allow_overrides="tenant")
    assert_problem(user_override(api, "tenant-only", ALICE, person(api)), 403, "forbidden")


def test_a_client_with_flags_read_sets_no_user_override(api, beta: str) -> None:
    assert_problem(user_override(api, beta, ALICE, api.headers(scope="flags:read")), 403, "insufficient_scope")


def test_a_person_with_flags_write_sets_anyones(api, beta: str) -> None:
    r = user_override(api, beta, BOB, person(api, scope="flags:read flags:write"))
    assert r.status_code == 200
