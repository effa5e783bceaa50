"""The console's own routes: a tenant's person cannot reach another tenant's pages by URL."""

from __future__ import annotations

import pytest
from console.api import ServiceProblem
from consoletest import TEN_A, TEN_B, signed_in, token

FORM = {"Content-Type": "application/x-www-form-urlencoded"}
ADMIN_OF_A = {
    "tenant_id": TEN_A,
    "scope": "members:read members:write audit:read tenants:read tenants:write projects:read projects:write "
    "flags:read flags:write",
    "role": "admin",
}


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", f"/tenants/{TEN_B}/members", ""),
        ("POST", f"/tenants/{TEN_B}/members", "email=x@example.com&role=owner"),
        ("POST", f"/tenants/{TEN_B}/members/usr_b1", "role=viewer"),
        ("POST", f"/tenants/{TEN_B}/members/usr_b1", "action=remove"),
        ("GET", f"/tenants/{TEN_B}", ""),
        ("GET", f"/tenants/{TEN_B}/clients", ""),
        ("POST", f"/tenants/{TEN_B}/clients", "name=x&scope:tenants:read=on"),
        ("POST", f"/tenants/{TEN_B}/clients/cli_b1/revoke", "name=x"),
        ("POST", f"/tenants/{TEN_B}/clients/cli_b1/revoke", "confirm=yes"),
    ],
)
def test_another_tenants_pages_are_404_before_any_service_is_asked(client, fake_http, fake_api, method, path, body):
    csrf = signed_in(client, fake_http, token(**ADMIN_OF_A))
    fake_api.calls.clear()
    r = client.simulate_request(method, path, body=f"{body}&csrf={csrf}" if method == "POST" else None, headers=FORM)
    assert r.status_code == 404, r.text
    assert fake_api.calls == []


def test_the_own_tenants_members_are_shown(client, fake_http, fake_api):
    signed_in(client, fake_http, token(**ADMIN_OF_A))
    fake_api.answers[("GET", "tenants", f"/v1/tenants/{TEN_A}/members")] = {
        "items": [{"id": "usr_a1", "email": "a1@example.com", "role": "owner", "status": "active"}]
    }
    r = client.simulate_get(f"/tenants/{TEN_A}/members")
    assert r.status_code == 200 and "a1@example.com" in r.text and 'id="invite"' in r.text


@pytest.mark.parametrize("path", ["/flags", "/flags/f1"])
def test_a_tenant_person_gets_no_flag_definitions(client, fake_http, fake_api, path):
    signed_in(client, fake_http, token(**ADMIN_OF_A))
    fake_api.calls.clear()
    assert client.simulate_get(path).status_code == 403 and fake_api.calls == []


@pytest.mark.parametrize("path", ["/audit", "/audit/evt_1", "/audit/export"])
def test_another_tenants_audit_trail_is_404_before_any_service_is_asked(client, fake_http, fake_api, path):
    signed_in(client, fake_http, token(**ADMIN_OF_A))
    fake_api.calls.clear()
    r = client.simulate_get(path, params={"tenant_id": TEN_B})
    assert r.status_code == 404 and fake_api.calls == []


def test_the_audit_services_refusal_is_shown_with_its_request_id(client, fake_http, fake_api):
    signed_in(client, fake_http, token(**ADMIN_OF_A))
    fake_api.answers[("GET", "audit", "/v1/audit/events")] = ServiceProblem(
        403, "Forbidden", "A tenant token acts on its own tenant only.", "req-123", "forbidden"
    )
    r = client.simulate_get("/audit", params={"tenant_id": TEN_A})
    assert r.status_code == 403
    assert "A tenant token acts on its own tenant only." in r.text and "req-123" in r.text
    assert "Traceback" not in r.text
    # The tenant's own trail is asked for by the token alone, never by a tenant id.
    assert fake_api.calls[-1][3] == {"limit": 50}


def test_a_viewer_sees_flags_without_any_control(client, fake_http, fake_api):
    signed_in(client, fake_http, token(scope="platform:read", role="platform-viewer"))
    fake_api.answers[("GET", "flags", "/v1/flags/f1")] = {"key": "f1", "enabled": True, "default": False, "version": 1}
    page = client.simulate_get("/flags/f1").text
    assert 'id="kill-switch"' not in page and 'id="save-rollout"' not in page and 'id="evaluate"' in page
    assert 'id="create-flag"' not in client.simulate_get("/flags").text


def test_each_role_lands_on_the_page_it_may_read(client, fake_http):
    signed_in(client, fake_http, token(**ADMIN_OF_A))
    assert client.simulate_get("/").headers["Location"] == f"/tenants/{TEN_A}/members"
    signed_in(client, fake_http, token(TEN_A, scope="audit:read flags:read", role="developer"))
    home = client.simulate_get("/")
    assert home.headers["Location"] == "/audit"
    assert "Members" not in client.simulate_get("/audit").text
    signed_in(client, fake_http, token(TEN_A, scope="flags:read", role="viewer"))
    assert 'id="nothing-here"' in client.simulate_get("/").text


@pytest.mark.parametrize(
    ("method", "path", "body", "asked"),
    [
        ("GET", "/projects/prj_b1", "", ("GET", "projects", "/v1/projects/prj_b1")),
        ("POST", "/projects/prj_b1", "name=Mine&version=1", ("PATCH", "projects", "/v1/projects/prj_b1")),
        ("POST", "/projects/prj_b1/delete", "confirm=yes", ("DELETE", "projects", "/v1/projects/prj_b1")),
    ],
)
def test_another_tenants_project_is_the_services_404_asked_only_with_the_persons_token(
    client, fake_http, fake_api, method, path, body, asked
):
    """Projects take the tenant from the token: the console names none, so the id alone reaches the
    service, which answers another tenant's project exactly as one that does not exist."""
    csrf = signed_in(client, fake_http, token(**ADMIN_OF_A))
    fake_api.answers[asked] = ServiceProblem(404, "Not found", "There is no project prj_b1.", "req-404", "not_found")
    fake_api.calls.clear()
    r = client.simulate_request(method, path, body=f"{body}&csrf={csrf}" if method == "POST" else None, headers=FORM)
    assert r.status_code == 404 and "There is no project prj_b1." in r.text and "req-404" in r.text
    assert [c[:3] for c in fake_api.calls] == [asked]
    assert not [c for c in fake_api.calls if TEN_B in str(c)]


def test_an_override_form_naming_another_tenant_still_acts_on_the_persons_own(client, fake_http, fake_api):
    csrf = signed_in(client, fake_http, token(**ADMIN_OF_A))
    fake_api.calls.clear()
    body = f"scope=tenant&value=true&action=set&tenant_id={TEN_B}&csrf={csrf}"
    assert client.simulate_post("/overrides/f1", body=body, headers=FORM).status_code == 303
    assert fake_api.calls == [("PUT", "flags", "/v1/flags/f1/overrides/tenant", None, {"value": True})]


def test_the_own_tenant_and_its_clients_are_shown(client, fake_http, fake_api):
    signed_in(client, fake_http, token(**ADMIN_OF_A))
    fake_api.answers[("GET", "tenants", f"/v1/tenants/{TEN_A}")] = {"id": TEN_A, "name": "Acme", "slug": "acme"}
    assert client.simulate_get(f"/tenants/{TEN_A}").status_code == 200
    assert client.simulate_get(f"/tenants/{TEN_A}/clients").status_code == 200
