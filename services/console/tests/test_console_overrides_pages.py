"""The overrides page: the flags that allow one, from the tenant's snapshot in one call, and
what setting and clearing ask of the flags service."""

from __future__ import annotations

import pytest
from console.api import ServiceProblem
from consoletest import TEN_A, signed_in, token

FORM = {"Content-Type": "application/x-www-form-urlencoded"}
DEVELOPER = {"tenant_id": TEN_A, "scope": "flags:read flags:write", "role": "developer"}
VIEWER = {"tenant_id": TEN_A, "scope": "flags:read", "role": "viewer"}
SNAPSHOT = {
    "flags": {
        "beta": {"key": "beta", "allow_overrides": "user", "default": False, "enabled": True},
        "colour": {"key": "colour", "allow_overrides": "tenant", "default": "blue", "enabled": True},
        "locked": {"key": "locked", "allow_overrides": "none", "default": True, "enabled": True},
    },
    "overrides": {"tenant": {"colour": "red"}, "users": {"beta": {"u-7": True}}},
    "tenant_id": TEN_A,
    "revision": 9,
}


def test_the_page_is_one_snapshot_call_and_lists_only_the_flags_that_allow_overrides(client, fake_http, fake_api):
    signed_in(client, fake_http, token(**DEVELOPER))
    fake_api.answers[("GET", "flags", "/v1/flags/snapshot")] = SNAPSHOT
    fake_api.calls.clear()
    page = client.simulate_get("/overrides").text
    assert fake_api.calls == [("GET", "flags", "/v1/flags/snapshot", None, None)]
    assert 'id="override-beta"' in page and 'id="override-colour"' in page and "locked" not in page
    assert '<code>"red"</code>' in page
    assert 'id="set-tenant-colour"' in page and 'id="clear-tenant-colour"' in page
    assert 'id="set-user-beta"' in page and "u-7" in page
    assert 'id="set-user-colour"' not in page, "colour allows a tenant override only"


def test_a_viewer_may_only_set_their_own_user_override(client, fake_http, fake_api):
    signed_in(client, fake_http, token(**VIEWER))
    fake_api.answers[("GET", "flags", "/v1/flags/snapshot")] = SNAPSHOT
    page = client.simulate_get("/overrides").text
    assert 'id="set-tenant-colour"' not in page and 'id="user-id-beta"' not in page
    assert 'name="user_id" value="usr_1"' in page and "Set for yourself" in page
    assert "Clear the override of beta for u-7" not in page


@pytest.mark.parametrize(
    ("body", "call"),
    [
        ("scope=tenant&value=%22green%22&action=set", ("PUT", "/v1/flags/colour/overrides/tenant", {"value": "green"})),
        ("scope=tenant&value=&action=clear", ("DELETE", "/v1/flags/colour/overrides/tenant", None)),
        (
            "scope=user&user_id=u-7&value=true&action=set",
            ("PUT", "/v1/flags/colour/overrides/users/u-7", {"value": True}),
        ),
        ("scope=user&user_id=u%2F7&action=clear", ("DELETE", "/v1/flags/colour/overrides/users/u%2F7", None)),
        (
            "scope=user&user_id=u-7&value=text&action=set",
            ("PUT", "/v1/flags/colour/overrides/users/u-7", {"value": "text"}),
        ),
    ],
)
def test_setting_and_clearing_ask_the_flags_service_as_the_caller_tenant(client, fake_http, fake_api, body, call):
    csrf = signed_in(client, fake_http, token(**DEVELOPER))
    fake_api.calls.clear()
    r = client.simulate_post("/overrides/colour", body=f"{body}&tenant_id=ten_B&csrf={csrf}", headers=FORM)
    assert r.status_code == 303 and r.headers["Location"].startswith("/overrides?notice=Override+of+colour")
    method, path, json = call
    assert fake_api.calls == [(method, "flags", path, None, json)]


@pytest.mark.parametrize(
    ("body", "problem"),
    [("scope=tenant&value=+&action=set", "Value"), ("scope=user&user_id=a+b&value=1&action=set", "User id")],
)
def test_a_bad_override_form_is_shown_again_before_anything_changes(client, fake_http, fake_api, body, problem):
    csrf = signed_in(client, fake_http, token(**DEVELOPER))
    fake_api.answers[("GET", "flags", "/v1/flags/snapshot")] = SNAPSHOT
    fake_api.calls.clear()
    r = client.simulate_post("/overrides/colour", body=f"{body}&csrf={csrf}", headers=FORM)
    assert r.status_code == 422 and 'role="alert"' in r.text and problem in r.text
    assert [c[0] for c in fake_api.calls] == ["GET"]


def test_a_flag_that_does_not_allow_the_override_is_the_services_403_shown_plainly(client, fake_http, fake_api):
    csrf = signed_in(client, fake_http, token(**DEVELOPER))
    fake_api.answers[("PUT", "flags", "/v1/flags/locked/overrides/tenant")] = ServiceProblem(
        403, "Forbidden", "The flag locked allows no overrides.", "req-403", "forbidden"
    )
    r = client.simulate_post("/overrides/locked", body=f"scope=tenant&value=1&action=set&csrf={csrf}", headers=FORM)
    assert r.status_code == 403 and "The flag locked allows no overrides." in r.text and "req-403" in r.text


def test_a_platform_sign_in_has_no_overrides_page(client, fake_http, fake_api):
    signed_in(client, fake_http, token())
    fake_api.calls.clear()
    r = client.simulate_get("/overrides")
    assert r.status_code == 403 and "your sign-in is the platform" in r.text and fake_api.calls == []
