"""The platform's tenant lifecycle: list, create, suspend, reactivate, delete by typing the slug."""

from __future__ import annotations

import pytest
from console.api import ServiceProblem
from consoletest import TEN_A, TEN_B, signed_in, token

FORM = {"Content-Type": "application/x-www-form-urlencoded"}
VIEWER = {"scope": "platform:read", "role": "platform-viewer"}
ADMIN_OF_A = {
    "tenant_id": TEN_A,
    "scope": "members:read members:write audit:read tenants:read tenants:write projects:read projects:write",
    "role": "owner",
}
TENANT_B = {"id": TEN_B, "slug": "beta", "name": "Beta", "status": "active", "plan": "team", "version": 3}


def _post(client, path: str, body: str):
    return client.simulate_post(path, body=body, headers=FORM)


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/tenants", ""),
        ("GET", "/tenants?status=suspended", ""),
        ("POST", "/tenants", "slug=evil&name=Evil"),
        ("POST", f"/tenants/{TEN_B}/suspend", ""),
        ("POST", f"/tenants/{TEN_B}/reactivate", ""),
        ("POST", f"/tenants/{TEN_B}/delete", ""),
        ("POST", f"/tenants/{TEN_B}/delete", "confirm=yes&slug=beta&confirm_slug=beta"),
        # Their own tenant too: its lifecycle is the platform's, never its own people's.
        ("POST", f"/tenants/{TEN_A}/suspend", ""),
        ("POST", f"/tenants/{TEN_A}/delete", "confirm=yes&slug=acme&confirm_slug=acme"),
        ("GET", f"/tenants/{TEN_B}", ""),
    ],
)
def test_a_tenant_person_reaches_no_platform_page_and_no_service_is_asked(
    client, fake_http, fake_api, method, path, body
):
    csrf = signed_in(client, fake_http, token(**ADMIN_OF_A))
    fake_api.calls.clear()
    r = client.simulate_request(method, path, body=f"{body}&csrf={csrf}" if method == "POST" else None, headers=FORM)
    assert r.status_code in (403, 404), r.text
    assert fake_api.calls == []
    assert 'id="create-tenant"' not in r.text and 'id="suspend-tenant"' not in r.text


def test_a_platform_admin_pages_the_tenants_by_status(client, fake_http, fake_api):
    signed_in(client, fake_http, token())
    fake_api.answers[("GET", "tenants", "/v1/tenants")] = {"items": [TENANT_B], "next_cursor": "c2"}
    r = client.simulate_get("/tenants", params={"status": "active", "cursor": "c1"})
    assert r.status_code == 200
    assert fake_api.calls[-1][3] == {"limit": 50, "status": "active", "cursor": "c1"}
    assert 'id="tenant-beta"' in r.text and 'href="/tenants/ten_B"' in r.text
    assert 'id="next-page"' in r.text and "cursor=c2" in r.text and "status=active" in r.text
    assert 'id="first-page"' in r.text and 'id="create-tenant"' in r.text
    # A status the service does not know is not sent on.
    client.simulate_get("/tenants", params={"status": "bogus"})
    assert fake_api.calls[-1][3] == {"limit": 50}


def test_creating_a_tenant_posts_it_then_shows_it(client, fake_http, fake_api):
    csrf = signed_in(client, fake_http, token())
    fake_api.answers[("POST", "tenants", "/v1/tenants")] = {**TENANT_B, "id": "ten_new", "name": "Gamma"}
    r = _post(client, "/tenants", f"name=Gamma&slug=gamma&plan=team&language=de&csrf={csrf}")
    assert r.status_code == 303 and r.headers["Location"].startswith("/tenants/ten_new?notice=Tenant+Gamma+created")
    assert fake_api.calls[-1] == (
        "POST",
        "tenants",
        "/v1/tenants",
        None,
        {"slug": "gamma", "name": "Gamma", "plan": "team", "language": "de"},
    )


@pytest.mark.parametrize(
    ("body", "said"),
    [("name=G&slug=No+Slug", "Slug:"), ("name=&slug=gamma", "Name:"), ("name=G&slug=gamma&plan=gold", "Plan:")],
)
def test_a_bad_tenant_form_is_refused_on_the_page_without_creating(client, fake_http, fake_api, body, said):
    csrf = signed_in(client, fake_http, token())
    fake_api.calls.clear()
    r = _post(client, "/tenants", f"{body}&csrf={csrf}")
    assert r.status_code == 422 and said in r.text and 'role="alert"' in r.text
    assert [c[0] for c in fake_api.calls] == ["GET"]


def test_a_viewer_reads_tenants_without_any_control(client, fake_http, fake_api):
    signed_in(client, fake_http, token(**VIEWER))
    fake_api.answers[("GET", "tenants", "/v1/tenants")] = {"items": [TENANT_B], "next_cursor": None}
    fake_api.answers[("GET", "tenants", f"/v1/tenants/{TEN_B}")] = TENANT_B
    listed = client.simulate_get("/tenants")
    assert listed.status_code == 200 and 'id="tenant-beta"' in listed.text
    assert 'id="create-tenant"' not in listed.text and 'id="next-page"' not in listed.text
    page = client.simulate_get(f"/tenants/{TEN_B}")
    assert page.status_code == 200 and 'id="tenant-slug"' in page.text
    for control in ("suspend-tenant", "reactivate-tenant", "delete-tenant"):
        assert f'id="{control}"' not in page.text
    assert 'href="/audit' not in page.text  # a viewer's token reads no trail


def test_a_viewers_form_that_reaches_the_service_shows_its_403(client, fake_http, fake_api):
    csrf = signed_in(client, fake_http, token(**VIEWER))
    fake_api.answers[("POST", "tenants", f"/v1/tenants/{TEN_B}/suspend")] = ServiceProblem(
        403, "Forbidden", "This needs the scope platform:admin.", "req-403", "insufficient_scope"
    )
    r = _post(client, f"/tenants/{TEN_B}/suspend", f"csrf={csrf}")
    assert r.status_code == 403 and "platform:admin" in r.text and "req-403" in r.text
    assert "Traceback" not in r.text


@pytest.mark.parametrize(("action", "said"), [("suspend", "suspended"), ("reactivate", "reactivated")])
def test_suspending_and_reactivating_ask_the_service_then_show_the_tenant(client, fake_http, fake_api, action, said):
    csrf = signed_in(client, fake_http, token())
    fake_api.answers[("POST", "tenants", f"/v1/tenants/{TEN_B}/{action}")] = TENANT_B
    r = _post(client, f"/tenants/{TEN_B}/{action}", f"csrf={csrf}")
    assert r.status_code == 303 and r.headers["Location"].startswith(f"/tenants/{TEN_B}?notice=Tenant+Beta+{said}")
    assert fake_api.calls[-1][:3] == ("POST", "tenants", f"/v1/tenants/{TEN_B}/{action}")


@pytest.mark.parametrize(
    ("status", "shown", "hidden"),
    [("active", "suspend-tenant", "reactivate-tenant"), ("suspended", "reactivate-tenant", "suspend-tenant")],
)
def test_the_tenant_page_offers_the_admin_what_its_status_allows(client, fake_http, fake_api, status, shown, hidden):
    csrf = signed_in(client, fake_http, token())
    fake_api.answers[("GET", "tenants", f"/v1/tenants/{TEN_B}")] = {**TENANT_B, "status": status}
    page = client.simulate_get(f"/tenants/{TEN_B}").text
    assert f'id="{shown}"' in page and f'id="{hidden}"' not in page and 'id="delete-tenant"' in page
    posts = page.count('method="post"')
    assert posts == 3 and page.count(f'name="csrf" value="{csrf}"') == posts


def test_deleting_asks_for_the_slug_typed(client, fake_http, fake_api):
    csrf = signed_in(client, fake_http, token())
    fake_api.answers[("GET", "tenants", f"/v1/tenants/{TEN_B}")] = TENANT_B
    r = _post(client, f"/tenants/{TEN_B}/delete", f"csrf={csrf}")
    assert r.status_code == 200 and 'id="confirm-slug"' in r.text and 'for="confirm-slug"' in r.text
    assert '<input type="hidden" name="slug" value="beta">' in r.text
    assert r.text.count(f'name="csrf" value="{csrf}"') == r.text.count('method="post"')
    assert not [c for c in fake_api.calls if c[0] == "DELETE"]


@pytest.mark.parametrize("typed", ["", "bet", "Beta", "beta2", "ten_B"])
def test_a_slug_typed_wrong_deletes_nothing_and_asks_no_service(client, fake_http, fake_api, typed):
    csrf = signed_in(client, fake_http, token())
    fake_api.calls.clear()
    r = _post(client, f"/tenants/{TEN_B}/delete", f"confirm=yes&slug=beta&name=Beta&confirm_slug={typed}&csrf={csrf}")
    assert r.status_code == 422 and "nothing was deleted" in r.text and 'id="confirm-slug"' in r.text
    assert fake_api.calls == []


def test_the_slug_typed_deletes_the_tenant(client, fake_http, fake_api):
    csrf = signed_in(client, fake_http, token())
    fake_api.answers[("GET", "tenants", f"/v1/tenants/{TEN_B}")] = TENANT_B
    fake_api.calls.clear()
    r = _post(client, f"/tenants/{TEN_B}/delete", f"confirm=yes&slug=beta&confirm_slug=+beta+&csrf={csrf}")
    assert r.status_code == 303 and r.headers["Location"].startswith("/tenants?notice=Tenant+beta+deleted")
    assert [c[:3] for c in fake_api.calls] == [
        ("GET", "tenants", f"/v1/tenants/{TEN_B}"),
        ("DELETE", "tenants", f"/v1/tenants/{TEN_B}"),
    ]


def test_a_confirmation_naming_another_tenants_slug_deletes_nothing(client, fake_http, fake_api):
    """An edited hidden slug (or a stale page) matches what was typed, but not the tenant's own slug."""
    csrf = signed_in(client, fake_http, token())
    fake_api.answers[("GET", "tenants", f"/v1/tenants/{TEN_B}")] = TENANT_B
    r = _post(client, f"/tenants/{TEN_B}/delete", f"confirm=yes&slug=gamma&confirm_slug=gamma&csrf={csrf}")
    assert r.status_code == 409 and "nothing was deleted" in r.text
    assert not [c for c in fake_api.calls if c[0] == "DELETE"]


PLATFORM_POSTS = [
    ("/tenants", "name=Gamma&slug=gamma"),
    (f"/tenants/{TEN_B}/suspend", ""),
    (f"/tenants/{TEN_B}/reactivate", ""),
    (f"/tenants/{TEN_B}/delete", ""),
    (f"/tenants/{TEN_B}/delete", "confirm=yes&slug=beta&confirm_slug=beta"),
]


@pytest.mark.parametrize(("path", "body"), PLATFORM_POSTS)
@pytest.mark.parametrize("csrf", [None, "", "wrong-token"])
def test_a_tenant_form_without_the_sessions_csrf_token_is_403_and_asks_nothing(
    client, fake_http, fake_api, path, body, csrf
):
    signed_in(client, fake_http, token())
    fake_api.calls.clear()
    r = _post(client, path, body if csrf is None else f"{body}&csrf={csrf}")
    assert r.status_code == 403 and "did not come from the console" in r.text
    assert fake_api.calls == []


def test_every_form_on_the_tenants_list_carries_the_token(client, fake_http, fake_api):
    csrf = signed_in(client, fake_http, token())
    page = client.simulate_get("/tenants").text
    posts = page.count('method="post"')
    assert posts == 2 and page.count(f'name="csrf" value="{csrf}"') == posts  # create, and sign out


def test_platform_people_find_the_tenants_in_the_nav(client, fake_http, fake_api):
    signed_in(client, fake_http, token(**VIEWER))
    assert '<a href="/tenants">' in client.simulate_get("/tenants").text
    signed_in(client, fake_http, token(**ADMIN_OF_A))
    assert '<a href="/tenants">' not in client.simulate_get(f"/tenants/{TEN_A}/members").text
