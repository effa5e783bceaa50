"""Every form of the console carries a CSRF token; a POST without the session's own is 403."""

from __future__ import annotations

import pytest
from consoletest import TEN_A, signed_in, token

FORM = {"Content-Type": "application/x-www-form-urlencoded"}
POSTS = [
    ("/flags", "key=new-flag&default=false"),
    ("/flags/f1/kill-switch", "killed=true"),
    ("/flags/f1/rollout", "percentage=25"),
    ("/sign-out", ""),
]


@pytest.mark.parametrize(("path", "body"), POSTS)
@pytest.mark.parametrize("csrf", [None, "", "wrong-token"])
def test_a_post_without_the_sessions_csrf_token_is_403_and_changes_nothing(
    client, fake_http, fake_api, path, body, csrf
):
    signed_in(client, fake_http, token())
    fake_api.calls.clear()
    sent = body if csrf is None else f"{body}&csrf={csrf}"
    r = client.simulate_post(path, body=sent, headers=FORM)
    assert r.status_code == 403, r.text
    assert "did not come from the console" in r.text
    assert not [c for c in fake_api.calls if c[0] != "GET"], "nothing was changed"


def test_a_member_form_of_a_tenant_admin_without_the_token_is_403(client, fake_http, fake_api):
    signed_in(client, fake_http, token(TEN_A, scope="members:read members:write", role="admin"))
    fake_api.calls.clear()
    r = client.simulate_post(f"/tenants/{TEN_A}/members", body="email=x@example.com&role=viewer", headers=FORM)
    assert r.status_code == 403 and not fake_api.calls


def test_the_same_post_with_the_token_goes_through(client, fake_http, fake_api):
    csrf = signed_in(client, fake_http, token())
    fake_api.answers[("GET", "flags", "/v1/flags/f1")] = {"key": "f1", "enabled": True, "default": False, "version": 3}
    r = client.simulate_post("/flags/f1/rollout", body=f"percentage=25&csrf={csrf}", headers=FORM)
    assert r.status_code == 303, r.text
    put = [c for c in fake_api.calls if c[0] == "PUT"]
    assert put == [
        (
            "PUT",
            "flags",
            "/v1/flags/f1",
            None,
            {
                "key": "f1",
                "enabled": True,
                "default": False,
                "version": 3,
                "rollout": {"percentage": 25, "stickiness": "user_id"},
            },
        )
    ]


def test_every_form_on_a_page_carries_the_token(client, fake_http, fake_api):
    csrf = signed_in(client, fake_http, token())
    fake_api.answers[("GET", "flags", "/v1/flags/f1")] = {"key": "f1", "enabled": True, "default": False, "version": 1}
    page = client.simulate_get("/flags/f1").text
    posts = page.count('method="post"')
    assert posts >= 3 and page.count(f'name="csrf" value="{csrf}"') == posts


ADMIN_OF_A = {
    "tenant_id": TEN_A,
    "scope": "tenants:read tenants:write projects:read projects:write flags:read flags:write",
    "role": "admin",
}
TENANT_POSTS = [
    (f"/tenants/{TEN_A}/clients", "name=ci&scope:tenants:read=on"),
    (f"/tenants/{TEN_A}/clients/cli_1/revoke", "confirm=yes"),
    ("/projects", "name=Web"),
    ("/projects/prj_1", "name=Web&version=1"),
    ("/projects/prj_1/delete", "confirm=yes"),
    ("/overrides/f1", "scope=tenant&value=true&action=set"),
    ("/overrides/f1", "scope=tenant&action=clear"),
]


@pytest.mark.parametrize(("path", "body"), TENANT_POSTS)
@pytest.mark.parametrize("csrf", [None, "wrong-token"])
def test_a_tenant_form_without_the_sessions_csrf_token_is_403_and_changes_nothing(
    client, fake_http, fake_api, path, body, csrf
):
    signed_in(client, fake_http, token(**ADMIN_OF_A))
    fake_api.calls.clear()
    sent = body if csrf is None else f"{body}&csrf={csrf}"
    r = client.simulate_post(path, body=sent, headers=FORM)
    assert r.status_code == 403 and "did not come from the console" in r.text
    assert fake_api.calls == []


def test_every_form_on_the_tenant_pages_carries_the_token(client, fake_http, fake_api):
    csrf = signed_in(client, fake_http, token(**ADMIN_OF_A))
    fake_api.answers[("GET", "tenants", f"/v1/tenants/{TEN_A}/clients")] = {
        "items": [{"client_id": "cli_1", "name": "ci", "scopes": [], "status": "active"}]
    }
    fake_api.answers[("GET", "projects", "/v1/projects/prj_1")] = {"id": "prj_1", "name": "Web", "version": 1}
    fake_api.answers[("GET", "flags", "/v1/flags/snapshot")] = {
        "flags": {"f1": {"key": "f1", "allow_overrides": "user", "default": False}},
        "overrides": {"tenant": {"f1": True}, "users": {"f1": {"u-1": True}}},
    }
    for path, at_least in (
        (f"/tenants/{TEN_A}/clients", 3),
        ("/projects", 2),
        ("/projects/prj_1", 3),
        ("/overrides", 4),
    ):
        page = client.simulate_get(path).text
        posts = page.count('method="post"')
        assert posts >= at_least and page.count(f'name="csrf" value="{csrf}"') == posts, path
