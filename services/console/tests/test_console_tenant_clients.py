"""The tenant page and its API clients: what each form asks of tenants, who sees the controls,
and a new client's secret shown on its page once and nowhere else."""

from __future__ import annotations

import logging

import pytest
from console.api import ServiceProblem
from consoletest import TEN_A, signed_in, token

FORM = {"Content-Type": "application/x-www-form-urlencoded"}
ADMIN = {"tenant_id": TEN_A, "scope": "tenants:read tenants:write projects:read flags:read", "role": "admin"}
DEVELOPER = {"tenant_id": TEN_A, "scope": "tenants:read projects:read projects:write", "role": "developer"}
CLIENTS = f"/v1/tenants/{TEN_A}/clients"
SECRET = "sec_0123456789abcdefSECRET"
CLIENT = {
    "client_id": "cli_1",
    "tenant_id": TEN_A,
    "name": "ci",
    "scopes": ["tenants:read"],
    "status": "active",
    "created_at": "2026-01-02T03:04:05Z",
}


def test_the_tenant_page_shows_the_persons_tenant_from_one_call(client, fake_http, fake_api):
    signed_in(client, fake_http, token(**DEVELOPER))
    fake_api.answers[("GET", "tenants", f"/v1/tenants/{TEN_A}")] = {
        "id": TEN_A,
        "slug": "acme",
        "name": "Acme Ltd",
        "plan": "team",
        "status": "active",
        "created_at": "2026-01-02T03:04:05Z",
    }
    fake_api.calls.clear()
    r = client.simulate_get(f"/tenants/{TEN_A}")
    assert r.status_code == 200
    assert fake_api.calls == [("GET", "tenants", f"/v1/tenants/{TEN_A}", None, None)]
    for shown in (
        'id="tenant-name">Acme Ltd<',
        "<code>acme</code>",
        'id="tenant-status">active<',
        "2026-01-02T03:04:05Z",
    ):
        assert shown in r.text


def test_a_role_without_tenants_read_is_told_so_before_any_call(client, fake_http, fake_api):
    signed_in(client, fake_http, token(TEN_A, scope="flags:read", role="viewer"))
    fake_api.calls.clear()
    for path in (f"/tenants/{TEN_A}", f"/tenants/{TEN_A}/clients"):
        r = client.simulate_get(path)
        assert r.status_code == 403 and "does not show the tenant" in r.text
    assert fake_api.calls == []


def test_an_admin_sees_the_clients_with_revoke_and_create_offering_only_the_scopes_they_hold(
    client, fake_http, fake_api
):
    signed_in(client, fake_http, token(**ADMIN))
    fake_api.answers[("GET", "tenants", CLIENTS)] = {"items": [CLIENT]}
    fake_api.calls.clear()
    page = client.simulate_get(f"/tenants/{TEN_A}/clients").text
    assert [c[:4] for c in fake_api.calls] == [("GET", "tenants", CLIENTS, {"limit": 100})]
    assert "cli_1" in page and 'id="revoke-cli_1"' in page and 'id="create-client"' in page
    assert 'name="scope:tenants:write"' in page and 'name="scope:flags:read"' in page
    assert 'name="scope:members:write"' not in page and 'name="scope:flags:write"' not in page


def test_a_developer_sees_the_clients_without_any_control(client, fake_http, fake_api):
    signed_in(client, fake_http, token(**DEVELOPER))
    fake_api.answers[("GET", "tenants", CLIENTS)] = {"items": [CLIENT]}
    page = client.simulate_get(f"/tenants/{TEN_A}/clients").text
    assert "cli_1" in page and "revoke" not in page.lower() and 'id="create-client"' not in page


def test_creating_a_client_shows_its_secret_once_and_puts_it_in_no_url_or_log(client, fake_http, fake_api, caplog):
    csrf = signed_in(client, fake_http, token(**ADMIN))
    fake_api.answers[("POST", "tenants", CLIENTS)] = {**CLIENT, "client_secret": SECRET}
    caplog.set_level(logging.DEBUG)
    body = f"name=ci&scope:tenants:read=on&scope:projects:read=on&scope:bogus=on&csrf={csrf}"
    r = client.simulate_post(f"/tenants/{TEN_A}/clients", body=body, headers=FORM)
    assert r.status_code == 201 and "Location" not in r.headers
    assert f'<code id="client-secret">{SECRET}</code>' in r.text and "shown this once" in r.text
    assert r.headers["Cache-Control"] == "no-store"
    (post,) = [c for c in fake_api.calls if c[0] == "POST"]
    assert post[4] == {"name": "ci", "scopes": ["tenants:read", "projects:read"]}
    assert SECRET not in caplog.text
    assert SECRET not in str(client.jar)
    # The list it leads back to never has it: the console kept nothing.
    fake_api.answers[("GET", "tenants", CLIENTS)] = {"items": [CLIENT]}
    assert SECRET not in client.simulate_get(f"/tenants/{TEN_A}/clients").text


@pytest.mark.parametrize(
    ("body", "problem"), [("name=ci", "at least one scope"), ("name=+&scope:tenants:read=on", "Name")]
)
def test_a_client_form_missing_a_name_or_scopes_is_shown_again_before_tenants_is_asked_to_create(
    client, fake_http, fake_api, body, problem
):
    csrf = signed_in(client, fake_http, token(**ADMIN))
    fake_api.calls.clear()
    r = client.simulate_post(f"/tenants/{TEN_A}/clients", body=f"{body}&csrf={csrf}", headers=FORM)
    assert r.status_code == 422 and 'role="alert"' in r.text and problem in r.text
    assert [c[0] for c in fake_api.calls] == ["GET"]


def test_the_services_refusal_of_a_client_is_its_problem_shown_plainly(client, fake_http, fake_api):
    csrf = signed_in(client, fake_http, token(**DEVELOPER))
    fake_api.answers[("POST", "tenants", CLIENTS)] = ServiceProblem(
        403, "Insufficient scope", "This needs the tenants:write scope.", "req-77", "insufficient_scope"
    )
    r = client.simulate_post(
        f"/tenants/{TEN_A}/clients", body=f"name=ci&scope:tenants:read=on&csrf={csrf}", headers=FORM
    )
    assert r.status_code == 403
    assert all(s in r.text for s in ("Insufficient scope", "This needs the tenants:write scope.", "req-77"))


def test_revoking_asks_first_then_deletes_and_says_so(client, fake_http, fake_api):
    csrf = signed_in(client, fake_http, token(**ADMIN))
    fake_api.calls.clear()
    path = f"/tenants/{TEN_A}/clients/cli_1/revoke"
    ask = client.simulate_post(path, body=f"name=ci&csrf={csrf}", headers=FORM)
    assert ask.status_code == 200 and "Revoke ci?" in ask.text and 'name="confirm" value="yes"' in ask.text
    assert fake_api.calls == [], "asking changes nothing"
    done = client.simulate_post(path, body=f"confirm=yes&csrf={csrf}", headers=FORM)
    assert done.status_code == 303 and done.headers["Location"].startswith(f"/tenants/{TEN_A}/clients?notice=")
    assert fake_api.calls == [("DELETE", "tenants", f"{CLIENTS}/cli_1", None, None)]
