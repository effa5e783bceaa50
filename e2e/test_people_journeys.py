"""A person joins a tenant, signs in, works, and is seen doing it: people across every service.

Alice is invited as a developer, signs in at the development OpenID Connect provider
(``AERIE_DEV_IDP_URL``: ``make run`` starts one), and her app exchanges her ID token for an
Aerie token. Against staging, a real provider signs people in through
``AERIE_E2E_SIGN_IN_COMMAND``: a command given the person's email as its last argument that
prints a verified ID token for them, which only the staging suite knows how to get (a
password grant at UAA for test users, a provider's admin API). Without either, the journeys
skip: they need a way to sign a person in without a browser.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import uuid
from collections.abc import Callable

import jwt
import pytest
import requests

from aerie.local.sign_in import sign_in
from aerie.testing.http import basic_auth

pytestmark = [pytest.mark.tenants, pytest.mark.projects, pytest.mark.audit]

EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
ID_TOKEN = "urn:ietf:params:oauth:token-type:id_token"


SignIn = Callable[[str], str]


def command_sign_in(command: str, env: dict[str, str]) -> SignIn:
    """ID tokens from ``command`` (given the email last), with the suite's ``AERIE_*`` around it."""

    def by_command(email: str) -> str:
        done = subprocess.run(
            [*shlex.split(command), email], capture_output=True, text=True, timeout=60, env={**os.environ, **env}
        )
        assert done.returncode == 0, f"AERIE_E2E_SIGN_IN_COMMAND failed for {email}: {done.stderr[-500:]}"
        return done.stdout.strip()

    return by_command


@pytest.fixture
def idp(aerie) -> SignIn:
    """How a person (by email) gets a verified ID token here."""
    url = aerie.env.get("AERIE_DEV_IDP_URL")
    if url:
        return lambda email: sign_in(url.rstrip("/"), email)
    command = aerie.env.get("AERIE_E2E_SIGN_IN_COMMAND")
    if command:
        return command_sign_in(command, aerie.env)
    pytest.skip("neither AERIE_DEV_IDP_URL nor AERIE_E2E_SIGN_IN_COMMAND is set: no way to sign a person in")


def invite(aerie, tenant_id: str, email: str, role: str, token: str | None = None) -> requests.Response:
    body = {"email": email, "role": role}
    return aerie.call(
        "POST", "tenants", f"/v1/tenants/{tenant_id}/members", token=token or aerie.admin_token, json=body
    )


def exchange(aerie, client: dict, id_token: str, **form: str) -> requests.Response:
    return aerie.call(
        "POST",
        "tenants",
        "/v1/oauth/token",
        data={"grant_type": EXCHANGE, "subject_token": id_token, "subject_token_type": ID_TOKEN, **form},
        headers={"Authorization": basic_auth(client["client_id"], client["client_secret"])},
    )


def exchanging_client(aerie, tenant_id: str, scopes: list[str]) -> dict:
    body = {"name": f"e2e-web-{aerie.run_id}", "scopes": scopes, "grants": ["token-exchange"]}
    r = aerie.call("POST", "tenants", f"/v1/tenants/{tenant_id}/clients", token=aerie.admin_token, json=body)
    assert r.status_code == 201, r.text
    return r.json()


def test_alice_is_invited_signs_in_works_and_is_in_the_trail(aerie, idp):
    tenant = aerie.create_tenant()
    scopes = ["tenants:read", "projects:read", "projects:write", "audit:read", "members:read"]
    app = exchanging_client(aerie, tenant["id"], scopes)
    alice = f"alice-{aerie.run_id}-{uuid.uuid4().hex[:4]}@example.com"
    r = invite(aerie, tenant["id"], alice, "developer")
    assert r.status_code == 201, r.text
    member = r.json()
    assert member["status"] == "invited"

    r = exchange(aerie, app, idp(alice))
    assert r.status_code == 200, r.text
    token = r.json()["access_token"]
    assert set(r.json()["scope"].split()) == {"tenants:read", "projects:read", "projects:write", "audit:read"}

    for service in ("tenants", "projects", "flags", "audit"):
        me = aerie.call("GET", service, "/v1/me", token=token)
        assert me.status_code == 200, f"{service}: {me.text}"
        assert me.json()["type"] == "user" and me.json()["id"] == member["id"], service
        assert me.json()["tenant_id"] == tenant["id"] and me.json()["role"] == "developer", service

    r = aerie.call("POST", "projects", "/v1/projects", token=token, json={"name": "Alice's project"})
    assert r.status_code == 201, r.text
    project = r.json()
    # She may not manage people: the role lacks members:write, whatever the app holds.
    assert invite(aerie, tenant["id"], "bob@example.com", "viewer", token=token).status_code == 403

    def she_is_in_the_trail() -> bool:
        entries = aerie.audit_trail(token, action="project.created")
        return any(
            e["target"]["id"] == project["id"]
            and e["actor"] == {"type": "user", "id": member["id"], "client_id": app["client_id"]}
            for e in entries
        )

    aerie.eventually(she_is_in_the_trail, within=10, what="Alice's project.created in the audit trail")
    joined = aerie.audit_trail(token, action="member.joined")
    assert [e["target"]["id"] for e in joined] == [member["id"]]
    # Her sign-in itself is in the trail: the exchange, by her, through the app.
    exchanged = aerie.audit_trail(token, action="token.exchanged")
    assert [e["actor"] for e in exchanged] == [{"type": "user", "id": member["id"], "client_id": app["client_id"]}]
    assert aerie.first_broken_link(aerie.audit_trail(token)) is None


def test_another_tenant_reaches_none_of_our_members(aerie, idp):
    ours = aerie.create_tenant()
    member = invite(aerie, ours["id"], f"carol-{aerie.run_id}@example.com", "viewer").json()
    theirs, their_token = aerie.tenant_with_token(["members:read", "members:write"])
    paths = [
        ("GET", f"/v1/tenants/{ours['id']}/members"),
        ("POST", f"/v1/tenants/{ours['id']}/members"),
        ("GET", f"/v1/tenants/{ours['id']}/members/{member['id']}"),
        ("PATCH", f"/v1/tenants/{ours['id']}/members/{member['id']}"),
        ("DELETE", f"/v1/tenants/{ours['id']}/members/{member['id']}"),
        ("GET", f"/v1/tenants/{theirs['id']}/members/{member['id']}"),
        ("PATCH", f"/v1/tenants/{theirs['id']}/members/{member['id']}"),
        ("DELETE", f"/v1/tenants/{theirs['id']}/members/{member['id']}"),
    ]
    for method, path in paths:
        body = {"email": "x@example.com", "role": "viewer"} if method == "POST" else {"role": "owner"}
        r = aerie.call(method, "tenants", path, token=their_token, json=body if method in ("POST", "PATCH") else None)
        assert r.status_code == 404, f"{method} {path}: {r.status_code}"
    assert aerie.call("GET", "tenants", "/v1/platform/members", token=their_token).status_code == 403
    still = aerie.call("GET", "tenants", f"/v1/tenants/{ours['id']}/members/{member['id']}", token=aerie.admin_token)
    assert still.status_code == 200 and still.json()["role"] == "viewer"


def test_a_removed_person_is_locked_out_everywhere(aerie, idp):
    tenant = aerie.create_tenant()
    app = exchanging_client(aerie, tenant["id"], ["projects:read", "tenants:read"])
    dave = f"dave-{aerie.run_id}@example.com"
    member = invite(aerie, tenant["id"], dave, "viewer").json()
    token = exchange(aerie, app, idp(dave)).json()["access_token"]
    assert jwt.decode(token, options={"verify_signature": False})["act"] == {"sub": app["client_id"]}
    assert aerie.call("GET", "projects", "/v1/projects", token=token).status_code == 200
    path = f"/v1/tenants/{tenant['id']}/members/{member['id']}"
    assert aerie.call("DELETE", "tenants", path, token=aerie.admin_token).status_code == 204
    aerie.eventually(
        lambda: aerie.call("GET", "projects", "/v1/projects", token=token).status_code == 401,
        within=1.5,
        what="the removed person's token refused by projects",
    )
    assert exchange(aerie, app, idp(dave)).json()["error"] == "invalid_grant"


def test_a_sign_in_command_gives_a_token_the_exchange_takes(aerie):
    """The staging way of signing people in, played here by the dev provider's own command."""
    if not aerie.env.get("AERIE_DEV_IDP_URL"):
        pytest.skip("AERIE_DEV_IDP_URL is not set: no provider for the command to sign in at")
    tenant = aerie.create_tenant()
    app = exchanging_client(aerie, tenant["id"], ["projects:read"])
    erin = f"erin-{aerie.run_id}@example.com"
    invite(aerie, tenant["id"], erin, "viewer")
    sign_in_erin = command_sign_in(f"{shlex.quote(sys.executable)} -m aerie.local.sign_in", aerie.env)
    r = exchange(aerie, app, sign_in_erin(erin))
    assert r.status_code == 200, r.text
