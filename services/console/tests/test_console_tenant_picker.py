"""A person in several tenants: the picker after the provider, and switching tenant later."""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import parse_qs, urlsplit

import jwt
import pytest
from console.oidc import _choices
from console.session import PICK_COOKIE, PICK_PATH, SESSION_COOKIE, Session
from consoletest import IDP, TEN_A, TEN_B, FakeHttp, FakeResponse, token
from itsdangerous import URLSafeTimedSerializer

FORM = {"Content-Type": "application/x-www-form-urlencoded"}
GERMAN = {"Accept-Language": "de-DE,de;q=0.9"}
OWNER = "tenants:read members:read members:write"


class TenantsExchange(FakeHttp):
    """The tenants service's exchange for a person in ``memberships``: several means a choice."""

    def __init__(self, memberships: dict[str, tuple[str, str]]) -> None:
        super().__init__()
        self.memberships = memberships

    def post(self, url: str, data: dict[str, str], auth: Any = None, **kw: Any) -> FakeResponse:
        if url.startswith(IDP):
            return super().post(url, data, auth, **kw)
        self.posts.append((url, data, auth))
        asked = data.get("tenant_id")
        if asked is None and len(self.memberships) > 1:
            listed = [
                {"id": t, "name": name, "role": role, "status": "active"}
                for t, (name, role) in sorted(self.memberships.items())
            ]
            return FakeResponse(
                400,
                {
                    "error": "invalid_request",
                    "error_description": "The person belongs to several tenants: tenant_id is required.",
                    "tenants": listed,
                },
            )
        asked = asked or next(iter(self.memberships), None)
        if asked not in self.memberships:
            return FakeResponse(
                400, {"error": "invalid_grant", "error_description": "The person is not a member there."}
            )
        role = self.memberships[asked][1]
        return FakeResponse(200, {"access_token": token(asked, OWNER, role), "expires_in": 900})

    def exchanged_for(self) -> list[str | None]:
        return [data.get("tenant_id") for url, data, _ in self.posts if not url.startswith(IDP)]


@pytest.fixture
def fake_http() -> TenantsExchange:
    return TenantsExchange({TEN_A: ("Acme <Ltd>", "owner"), TEN_B: ("Beta", "viewer")})


def provider_round_trip(client, fake_http, path: str = "/sign-in", **params: str):
    start = client.simulate_get(path, params=params)
    assert start.status_code == 303, start.text
    query = {k: v[0] for k, v in parse_qs(urlsplit(start.headers["Location"]).query).items()}
    fake_http.id_claims["nonce"] = query["nonce"]
    fake_http.id_claims["exp"] = int(time.time()) + 3600
    return client.simulate_get("/auth/callback", params={"code": "c", "state": query["state"]})


def csrf_of(page: str) -> str:
    """The picker form's CSRF token (not the sign-out form's, when a session is under way)."""
    form = page.split(f'action="{PICK_PATH}"', 1)[1]
    return form.split('name="csrf" value="', 1)[1].split('"', 1)[0]


def session_of(client, service) -> Session:
    data = URLSafeTimedSerializer(service.config.session_key, salt="aerie-console-session").loads(
        client.jar[SESSION_COOKIE]
    )
    return Session(data["t"], data["e"], data["c"], data.get("m") is True)


def test_a_person_in_several_tenants_picks_one_and_is_signed_in_to_it(client, fake_http, service):
    back = provider_round_trip(client, fake_http, next="/tenants/ten_B/members?x=1")
    assert back.status_code == 303 and back.headers["Location"] == PICK_PATH
    assert SESSION_COOKIE not in client.jar, "no session before the choice"
    morsel = back.cookies[PICK_COOKIE]
    assert morsel.http_only and morsel.same_site == "Lax" and morsel.path == PICK_PATH
    assert 0 < int(morsel.max_age) <= 300
    page = client.simulate_get(PICK_PATH)
    assert page.status_code == 200 and page.headers["Cache-Control"] == "no-store"
    assert "Acme &lt;Ltd&gt;" in page.text and "Beta" in page.text
    assert f'name="tenant_id" value="{TEN_B}"' in page.text and f"<code>{TEN_A}</code>" in page.text
    assert 'aria-labelledby="pick-title"' in page.text
    chosen = client.simulate_post(
        PICK_PATH, body=f"csrf={csrf_of(page.text)}&tenant_id={TEN_B}", headers={**FORM, "Referer": PICK_PATH}
    )
    assert chosen.status_code == 303 and chosen.headers["Location"] == "/tenants/ten_B/members?x=1"
    assert PICK_COOKIE not in client.jar, "the ID token is dropped once used"
    session = session_of(client, service)
    assert session.tenant_id == TEN_B and session.chose_tenant
    assert fake_http.exchanged_for() == [None, None, TEN_B]
    members = client.simulate_get("/tenants/ten_B/members")
    assert 'id="switch-tenant"' in members.text and 'href="/sign-in"' in members.text


def test_the_pick_cookie_holds_the_id_token_no_longer_than_it_lives(client, fake_http):
    start = client.simulate_get("/sign-in")
    query = {k: v[0] for k, v in parse_qs(urlsplit(start.headers["Location"]).query).items()}
    fake_http.id_claims.update(nonce=query["nonce"], exp=int(time.time()) + 40)
    back = client.simulate_get("/auth/callback", params={"code": "c", "state": query["state"]})
    assert 30 <= int(back.cookies[PICK_COOKIE].max_age) <= 40


def test_a_choice_without_the_pick_or_its_csrf_token_is_refused(client, fake_http, service):
    provider_round_trip(client, fake_http)
    csrf = csrf_of(client.simulate_get(PICK_PATH).text)
    r = client.simulate_post(PICK_PATH, body=f"csrf=forged&tenant_id={TEN_A}", headers=FORM)
    assert r.status_code == 403 and SESSION_COOKIE not in client.jar
    r = client.simulate_post(PICK_PATH, body=f"csrf={csrf}&tenant_id=../../x", headers=FORM)
    assert r.status_code == 400 and 'id="problem-title"' in r.text and "Traceback" not in r.text
    forged = URLSafeTimedSerializer(b"another key", salt="aerie-console-pick").dumps({"i": "x", "x": "/", "c": csrf})
    r = client.simulate_post(
        PICK_PATH, body=f"csrf={csrf}&tenant_id={TEN_A}", headers=FORM, cookies={PICK_COOKIE: forged}
    )
    assert r.status_code == 400 and 'id="problem-detail"' in r.text and SESSION_COOKIE not in client.jar
    assert client.simulate_get(PICK_PATH, cookies={PICK_COOKIE: forged}).status_code == 400
    assert fake_http.exchanged_for() == [None, None], "nothing exchanged for a refused choice"


def test_a_tenant_the_person_does_not_belong_to_is_a_sign_in_failure_with_a_reason(client, fake_http):
    provider_round_trip(client, fake_http)
    csrf = csrf_of(client.simulate_get(PICK_PATH).text)
    r = client.simulate_post(PICK_PATH, body=f"csrf={csrf}&tenant_id=ten_C", headers=FORM)
    assert r.status_code == 400 and "not a member there" in r.text and 'href="/sign-in"' in r.text
    assert SESSION_COOKIE not in client.jar and PICK_COOKIE not in client.jar


def test_next_stays_on_the_console_through_the_picker(client, fake_http):
    provider_round_trip(client, fake_http, next="//evil.example/x")
    csrf = csrf_of(client.simulate_get(PICK_PATH).text)
    r = client.simulate_post(PICK_PATH, body=f"csrf={csrf}&tenant_id={TEN_A}", headers=FORM)
    assert r.status_code == 303 and r.headers["Location"] == "/"


def test_a_person_in_one_tenant_goes_straight_in_with_nothing_to_switch(client, fake_http, service):
    fake_http.memberships = {TEN_A: ("Acme", "owner")}
    back = provider_round_trip(client, fake_http, next="/audit")
    assert back.status_code == 303 and back.headers["Location"] == "/audit"
    assert PICK_COOKIE not in client.jar and not session_of(client, service).chose_tenant
    assert 'id="switch-tenant"' not in client.simulate_get(f"/tenants/{TEN_A}/members").text


def test_switching_tenant_signs_in_again_and_picks_the_other(client, fake_http, service):
    provider_round_trip(client, fake_http)
    page = client.simulate_get(PICK_PATH)
    client.simulate_post(PICK_PATH, body=f"csrf={csrf_of(page.text)}&tenant_id={TEN_A}", headers=FORM)
    assert session_of(client, service).tenant_id == TEN_A
    back = provider_round_trip(client, fake_http)  # the "Switch tenant" link is /sign-in
    assert back.headers["Location"] == PICK_PATH
    page = client.simulate_get(PICK_PATH)
    current = page.text.split(f"<code>{TEN_A}</code>", 1)[1].split("</span>", 1)[0]
    assert "current" in current and "current" not in page.text.split(f"<code>{TEN_B}</code>", 1)[1].split("</span>")[0]
    r = client.simulate_post(PICK_PATH, body=f"csrf={csrf_of(page.text)}&tenant_id={TEN_B}", headers=FORM)
    assert r.status_code == 303
    session = session_of(client, service)
    assert session.tenant_id == TEN_B and session.chose_tenant


def test_a_chosen_tenants_lapsed_session_signs_in_to_that_tenant_again(client, fake_http, service):
    lapsed = URLSafeTimedSerializer(service.config.session_key, salt="aerie-console-session").dumps(
        {"t": token(TEN_B, OWNER, "viewer"), "e": time.time() - 1, "c": "x", "m": True}
    )
    r = client.simulate_get("/audit", cookies={SESSION_COOKIE: lapsed})
    assert r.status_code == 303 and r.headers["Location"] == f"/sign-in?next=%2Faudit&tenant={TEN_B}"
    back = provider_round_trip(client, fake_http, next="/audit", tenant=TEN_B)
    assert back.status_code == 303 and back.headers["Location"] == "/audit"
    assert fake_http.exchanged_for() == [TEN_B]
    assert session_of(client, service).chose_tenant
    # One who never chose (a single tenant) is not sent to a tenant.
    lapsed = URLSafeTimedSerializer(service.config.session_key, salt="aerie-console-session").dumps(
        {"t": token(TEN_B, OWNER, "viewer"), "e": time.time() - 1, "c": "x"}
    )
    r = client.simulate_get("/audit", cookies={SESSION_COOKIE: lapsed})
    assert r.headers["Location"] == "/sign-in?next=%2Faudit"


def test_a_remembered_tenant_no_longer_theirs_falls_back_to_the_choice(client, fake_http):
    back = provider_round_trip(client, fake_http, tenant="ten_Gone")
    assert back.headers["Location"] == PICK_PATH
    assert fake_http.exchanged_for() == ["ten_Gone", None]
    # A tenant parameter that is no tenant id is not passed on at all.
    fake_http.posts.clear()
    provider_round_trip(client, fake_http, tenant="ten_A&scope=platform:admin")
    assert fake_http.exchanged_for() == [None]


def test_sign_out_drops_a_pick_under_way(client, fake_http):
    provider_round_trip(client, fake_http)
    r = client.simulate_post("/sign-out", body="", headers=FORM)
    assert r.status_code == 303 and r.cookies[PICK_COOKIE].value == "" and r.cookies[PICK_COOKIE].path == PICK_PATH


def test_the_picker_is_german_for_a_german_browser(client, fake_http):
    provider_round_trip(client, fake_http)
    page = client.simulate_get(PICK_PATH, headers=GERMAN)
    assert page.headers["Content-Language"] == "de" and 'lang="de"' in page.text
    assert "Tenant wählen" in page.text and "Choose a tenant" not in page.text


def test_only_well_formed_choices_are_shown():
    listed = [
        {"id": TEN_A, "name": "A", "role": "owner", "status": "active"},
        {"id": TEN_B, "name": "", "role": "owner", "status": "active"},
        {"id": 3, "name": "C", "role": "owner", "status": "active"},
        "ten_D",
        {"id": "ten_E", "name": "E" * 201, "role": "owner", "status": "active"},
    ]
    assert [c.id for c in _choices(listed)] == [TEN_A]
    assert _choices({"id": TEN_A}) == [] and _choices(None) == []


def test_an_exchange_refused_for_several_tenants_without_a_list_still_says_why(client, fake_http):
    fake_http.post = lambda url, data, auth=None, **kw: (  # type: ignore[method-assign]
        TenantsExchange.post(fake_http, url, data, auth, **kw)
        if url.startswith(IDP)
        else FakeResponse(400, {"error": "invalid_request", "error_description": "tenant_id is required."})
    )
    back = provider_round_trip(client, fake_http)
    assert back.status_code == 400 and "tenant_id is required." in back.text and PICK_COOKIE not in client.jar


def test_the_id_token_is_exchanged_as_it_came(client, fake_http):
    provider_round_trip(client, fake_http)
    ((_, first, auth),) = [p for p in fake_http.posts if not p[0].startswith(IDP)]
    assert jwt.decode(first["subject_token"], options={"verify_signature": False})["sub"] == "p"
    assert auth == ("svc-console", "console-test-secret-0123456789abcdef0123")
