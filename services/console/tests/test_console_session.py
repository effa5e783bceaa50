"""The session cookie: signed, HttpOnly, SameSite=Lax, Secure outside localhost, minimal, ends."""

from __future__ import annotations

import time

import pytest
from console.config import ConsoleConfig
from console.session import SESSION_COOKIE, SIGN_IN_COOKIE, Session
from consoletest import TEN_A, signed_in, token
from itsdangerous import URLSafeTimedSerializer


def test_signing_in_sets_a_signed_httponly_lax_cookie_holding_only_the_token(client, fake_http, service):
    start = client.simulate_get("/sign-in")
    assert SIGN_IN_COOKIE in start.cookies and start.cookies[SIGN_IN_COOKIE].http_only
    r = _callback_response(client, fake_http)
    morsel = r.cookies[SESSION_COOKIE]
    assert morsel.http_only and morsel.same_site == "Lax"
    assert not morsel.secure, "127.0.0.1 is plain HTTP: the browser must still send it back"
    data = URLSafeTimedSerializer(service.config.session_key, salt="aerie-console-session").loads(morsel.value)
    assert set(data) == {"t", "e", "c"}, "the token, its expiry and the CSRF token: nothing else"


def _callback_response(client, fake_http):
    from urllib.parse import parse_qs, urlsplit

    start = client.simulate_get("/sign-in")
    query = {k: v[0] for k, v in parse_qs(urlsplit(start.headers["Location"]).query).items()}
    fake_http.id_claims["nonce"] = query["nonce"]
    return client.simulate_get("/auth/callback", params={"code": "c", "state": query["state"]})


def test_cookies_are_secure_outside_localhost(settings):
    config = ConsoleConfig.from_settings(settings)
    assert not config.secure_cookies
    public = ConsoleConfig(**{**config.__dict__, "public_url": "https://aerie-console.apps.example.com"})
    assert public.secure_cookies


def test_a_forged_or_tampered_session_is_no_session(client, service):
    forged = URLSafeTimedSerializer(b"another key", salt="aerie-console-session").dumps(
        {"t": token(), "e": time.time() + 900, "c": "x"}
    )
    r = client.simulate_get("/flags", cookies={SESSION_COOKIE: forged})
    assert r.status_code == 303 and r.headers["Location"].startswith("/sign-in?next=%2Fflags")
    good = URLSafeTimedSerializer(service.config.session_key, salt="aerie-console-session").dumps(
        {"t": token(), "e": time.time() + 900, "c": "x"}
    )
    assert client.simulate_get("/flags", cookies={SESSION_COOKIE: good}).status_code == 200
    assert client.simulate_get("/flags", cookies={SESSION_COOKIE: good[:-2] + "xx"}).status_code == 303


def test_an_expired_token_means_signing_in_again(client, service):
    expired = URLSafeTimedSerializer(service.config.session_key, salt="aerie-console-session").dumps(
        {"t": token(), "e": time.time() - 1, "c": "x"}
    )
    r = client.simulate_get("/audit?verify=1", cookies={SESSION_COOKIE: expired})
    assert r.status_code == 303 and r.headers["Location"] == "/sign-in?next=%2Faudit%3Fverify%3D1"


def test_sign_out_clears_the_session(client, fake_http):
    csrf = signed_in(client, fake_http, token(TEN_A, scope="members:read", role="viewer"))
    r = client.simulate_post("/sign-out", params=None, body=f"csrf={csrf}", headers=_form())
    assert r.status_code == 303 and r.headers["Location"] == "/?signed_out=1"
    assert r.cookies[SESSION_COOKIE].value == ""
    assert client.simulate_get("/audit", cookies={SESSION_COOKIE: ""}).status_code == 303


def test_a_sign_in_the_browser_did_not_start_is_refused(client, fake_http):
    r = client.simulate_get("/auth/callback", params={"code": "c", "state": "guessed"})
    assert r.status_code == 400 and "not started here" in r.text
    assert not [p for p in fake_http.posts], "no code is redeemed for a sign-in this browser did not begin"


def test_an_id_token_of_another_sign_in_is_refused(client, fake_http):
    from urllib.parse import parse_qs, urlsplit

    start = client.simulate_get("/sign-in")
    query = {k: v[0] for k, v in parse_qs(urlsplit(start.headers["Location"]).query).items()}
    assert query["code_challenge_method"] == "S256" and len(query["code_challenge"]) == 43
    fake_http.id_claims["nonce"] = "another"
    r = client.simulate_get("/auth/callback", params={"code": "c", "state": query["state"]})
    assert r.status_code == 400 and "another sign-in" in r.text
    assert SESSION_COOKIE not in r.cookies or not r.cookies[SESSION_COOKIE].value


def test_the_code_is_redeemed_with_the_verifier_then_exchanged_by_the_console_client(client, fake_http):
    import base64
    import hashlib
    from urllib.parse import parse_qs, urlsplit

    start = client.simulate_get("/sign-in", params={"next": "/flags"})
    query = {k: v[0] for k, v in parse_qs(urlsplit(start.headers["Location"]).query).items()}
    fake_http.id_claims["nonce"] = query["nonce"]
    r = client.simulate_get("/auth/callback", params={"code": "c9", "state": query["state"]})
    assert r.status_code == 303 and r.headers["Location"] == "/flags"
    (redeem, exchange) = fake_http.posts
    verifier = redeem[1]["code_verifier"]
    digest = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    assert digest == query["code_challenge"] and redeem[1]["code"] == "c9"
    assert exchange[0] == "http://tenants.test/v1/oauth/token" and exchange[2][0] == "svc-console"
    assert exchange[1]["grant_type"] == "urn:ietf:params:oauth:grant-type:token-exchange"


@pytest.mark.parametrize("header", ["Content-Security-Policy"])
def test_every_page_has_the_strict_policy(client, header):
    r = client.simulate_get("/")
    policy = r.headers[header]
    assert "default-src 'none'" in policy and "frame-ancestors 'none'" in policy
    # Scripts: the console's own files only, never inline, never another origin.
    assert "script-src 'self';" in policy and "unsafe" not in policy and "connect-src 'self';" in policy
    assert client.simulate_get("/static/console.css").status_code == 200
    assert client.simulate_get("/static/..%2Fapp.py").status_code == 404


def _form() -> dict[str, str]:
    return {"Content-Type": "application/x-www-form-urlencoded"}


def test_a_sessions_claims_are_decoded_once_and_still_read_as_before():
    session = Session(token(TEN_A, scope="flags:read", role="viewer", language="de"), time.time() + 60, "c")
    assert session.claims is session.claims, "one decode a request, however often a page asks"
    assert session.claims["language"] == "de" and session.tenant_id == TEN_A and session.can("flags:read")
    assert Session("not a token", time.time() + 60, "c").claims == {}
