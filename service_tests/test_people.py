"""People over the real path: tenants under uWSGI trusting the real development provider.

Alice signs in at oidc-provider-mock through its own endpoints (authorization code with
PKCE, :func:`aerie.local.sign_in.sign_in`); nothing here mints an ID token.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from typing import Any

import jwt
import pytest
from conftest import BOOT_ID, BOOT_SECRET, Http

from aerie.local.sign_in import sign_in
from aerie.testing.http import basic_auth
from aerie.testing.keys import TestKey

EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
ID_TOKEN = "urn:ietf:params:oauth:token-type:id_token"


def exchange(http: Http, client: dict[str, str], subject_token: str, **form: str) -> Any:
    return http.s.post(
        f"{http.base}/v1/oauth/token",
        data={"grant_type": EXCHANGE, "subject_token": subject_token, "subject_token_type": ID_TOKEN, **form},
        headers={"Authorization": basic_auth(client["client_id"], client["client_secret"])},
        timeout=5,
    )


@pytest.fixture
def tenant(http: Http) -> dict[str, Any]:
    admin = http.bearer()
    r = http.request(
        "POST", "/v1/tenants", json={"slug": f"p-{uuid.uuid4().hex[:12]}", "name": "People"}, headers=admin
    )
    assert r.status_code == 201, r.text
    return r.json()


def app_client(http: Http, tenant_id: str, grants: list[str]) -> dict[str, str]:
    body = {
        "name": "web",
        "scopes": ["tenants:read", "projects:read", "projects:write", "members:read", "members:write"],
        "grants": grants,
    }
    r = http.request("POST", f"/v1/tenants/{tenant_id}/clients", json=body, headers=http.bearer())
    assert r.status_code == 201, r.text
    return r.json()


def email() -> str:
    return f"alice-{uuid.uuid4().hex[:8]}@example.com"


def test_alice_signs_in_at_the_provider_and_acts_as_a_developer(http: Http, dev_idp: str, tenant: dict) -> None:
    client = app_client(http, tenant["id"], ["client_credentials", "token-exchange"])
    alice = email()
    r = http.request(
        "POST", f"/v1/tenants/{tenant['id']}/members", json={"email": alice, "role": "developer"}, headers=http.bearer()
    )
    assert r.status_code == 201, r.text
    member = r.json()
    id_token = sign_in(dev_idp, alice)
    r = exchange(http, client, id_token)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["issued_token_type"] == "urn:ietf:params:oauth:token-type:access_token"
    # The developer role ∩ the client: members:* is the app's, not hers.
    assert body["scope"] == "projects:read projects:write tenants:read"
    claims = jwt.decode(body["access_token"], options={"verify_signature": False})
    assert claims["sub"] == member["id"] and claims["act"] == {"sub": client["client_id"]}
    me = http.request("GET", "/v1/me", headers=http.bearer(body["access_token"])).json()
    assert me["type"] == "user" and me["id"] == member["id"] and me["role"] == "developer"
    r = http.request("GET", f"/v1/tenants/{tenant['id']}/members/{member['id']}", headers=http.bearer())
    assert r.json()["status"] == "active"

    # Removed: her token stops working within a second, and she cannot exchange again.
    r = http.request("DELETE", f"/v1/tenants/{tenant['id']}/members/{member['id']}", headers=http.bearer())
    assert r.status_code == 204
    deadline = time.monotonic() + 1.0
    while http.request("GET", "/v1/me", headers=http.bearer(body["access_token"])).status_code == 200:
        assert time.monotonic() < deadline, "her token still works a second after her removal"
        time.sleep(0.02)
    assert exchange(http, client, sign_in(dev_idp, alice)).json()["error"] == "invalid_grant"


def test_a_platform_admin_signs_in_with_the_bootstrap_client(http: Http, dev_idp: str) -> None:
    # A person of this test's own: the session's tenants is shared with the fuzz tests, which
    # may change any platform member they find, the bootstrap admin@example.com included.
    operator = f"ops-{uuid.uuid4().hex[:8]}@example.com"
    r = http.request(
        "POST", "/v1/platform/members", json={"email": operator, "role": "platform-admin"}, headers=http.bearer()
    )
    assert r.status_code == 201, r.text
    r = exchange(http, {"client_id": BOOT_ID, "client_secret": BOOT_SECRET}, sign_in(dev_idp, operator))
    assert r.status_code == 200, r.text
    token = r.json()["access_token"]
    assert "tenant_id" not in jwt.decode(token, options={"verify_signature": False})
    assert http.request("GET", "/v1/tenants", headers=http.bearer(token)).status_code == 200


def test_refusals_over_the_real_path(http: Http, dev_idp: str, tenant: dict) -> None:
    client = app_client(http, tenant["id"], ["token-exchange"])
    alice = email()
    http.request(
        "POST", f"/v1/tenants/{tenant['id']}/members", json={"email": alice, "role": "viewer"}, headers=http.bearer()
    )
    real = sign_in(dev_idp, alice)

    # Re-signed by someone else's key, with the provider's claims: the signature does not verify.
    claims = jwt.decode(real, options={"verify_signature": False})
    forger = TestKey("forger")
    forged = forger.sign(claims, typ="JWT")
    # Like the provider's own, naming no kid: checked against its one published key, and failing.
    forged_without_kid = jwt.encode(claims, forger.private, algorithm="RS256", headers={"typ": "JWT"})
    # The provider's signature over claims it did not sign (her own, living a minute longer).
    head, _, signature = real.split(".")
    other = base64.urlsafe_b64encode(json.dumps({**claims, "exp": claims["exp"] + 60}).encode())
    tampered = f"{head}.{other.rstrip(b'=').decode()}.{signature}"
    # The provider itself vouching, but the email unverified.
    unverified = sign_in(dev_idp, alice, claims={"email_verified": False}, subject=f"other-{alice}")
    nobody = sign_in(dev_idp, email())
    for token in (forged, forged_without_kid, tampered, unverified, nobody, "garbage"):
        r = exchange(http, client, token)
        assert r.status_code == 400 and r.json()["error"] == "invalid_grant", r.text
        assert "Traceback" not in r.text
    plain = app_client(http, tenant["id"], ["client_credentials"])
    r = exchange(http, plain, real)
    assert r.status_code == 400 and r.json()["error"] == "unauthorized_client"
    r = exchange(http, client, real, scope="projects:write")
    assert r.status_code == 400 and r.json()["error"] == "invalid_scope"
    assert exchange(http, client, real).status_code == 200
