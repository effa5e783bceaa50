"""People in the tenants service: members and roles, platform people, and the token exchange.

A trusted provider is played by a key of the test's own: ID tokens are signed with it and
the real :class:`~tenants.identity.IdentityProviders` verifies them (its keys given, not
discovered). The service tests do the same against the real development provider.
"""

from __future__ import annotations

import dataclasses
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from aerie.app import Infrastructure
from aerie.auth.tokens import StaticKeySource
from aerie.config import Settings
from aerie.testing.http import assert_problem
from aerie.testing.http import basic_auth as basic
from aerie.testing.keys import TestKey
from tenants.app import create_app
from tenants.config import TenantsConfig
from tenants.identity import IdentityProviders, ProvidersUnavailable
from tenants.identity_settings import TrustedProvider

IDP = "https://idp.test"
AUDIENCE = "aerie-app"
EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
ID_TOKEN = "urn:ietf:params:oauth:token-type:id_token"
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


@pytest.fixture(scope="module")
def idp_key() -> TestKey:
    return TestKey("idp-1")


@pytest.fixture
def app(env: dict[str, str], idp_key: TestKey) -> Iterator[Any]:
    env = {**env, "AERIE_BOOTSTRAP_ADMIN_EMAIL": "ops@example.com"}
    settings = Settings.from_env("tenants", env)
    providers = IdentityProviders(
        [TrustedProvider(IDP, AUDIENCE)], keys={IDP: StaticKeySource({"keys": [idp_key.public_jwk()]})}
    )
    config = dataclasses.replace(TenantsConfig.from_settings(settings), identity_providers=providers)
    infra = Infrastructure.from_settings(settings, keys=StaticKeySource(config.keys.jwks()))
    yield create_app(settings, config, infra=infra)
    infra.close()


def id_token(key: TestKey, sub: str, email: str | None, *, verified: Any = True, **claims: Any) -> str:
    now = int(time.time())
    body: dict[str, Any] = {
        "iss": IDP,
        "aud": AUDIENCE,
        "sub": sub,
        "iat": now,
        "exp": now + 300,
        "email_verified": verified,
        "nonce": uuid.uuid4().hex,
        **claims,
    }
    if email is not None:
        body["email"] = email
    return key.sign({k: v for k, v in body.items() if v is not None}, typ="JWT")


class People:
    """The journeys of people, over the app."""

    def __init__(self, api: Any, key: TestKey) -> None:
        self.api = api
        self.c = api.c
        self.key = key

    def app_client(self, tenant_id: str, scopes: list[str], grants: tuple[str, ...] = ("token-exchange",)) -> Any:
        body = {"name": "web app", "scopes": scopes, "grants": list(grants)}
        r = self.c.simulate_post(f"/v1/tenants/{tenant_id}/clients", json=body, headers=self.api.admin())
        assert r.status_code == 201, r.text
        return r.json

    def invite(self, tenant_id: str, email: str, role: str, headers: dict[str, str] | None = None) -> Any:
        return self.c.simulate_post(
            f"/v1/tenants/{tenant_id}/members", json={"email": email, "role": role}, headers=headers or self.api.admin()
        )

    def exchange(self, client_id: str, secret: str, subject_token: str, **form: str) -> Any:
        fields = {"grant_type": EXCHANGE, "subject_token": subject_token, "subject_token_type": ID_TOKEN, **form}
        return self.c.simulate_post(
            "/v1/oauth/token",
            headers={"Authorization": basic(client_id, secret), **FORM},
            body="&".join(f"{k}={v}" for k, v in fields.items()),
        )

    def sign_in(self, client: Any, sub: str, email: str, **form: str) -> dict[str, str]:
        r = self.exchange(client["client_id"], client["client_secret"], id_token(self.key, sub, email), **form)
        assert r.status_code == 200, r.text
        return {"Authorization": f"Bearer {r.json['access_token']}"}


@pytest.fixture
def people(api: Any, idp_key: TestKey) -> People:
    return People(api, idp_key)


@pytest.fixture
def acme(api: Any, people: People) -> tuple[str, Any]:
    """A tenant with an owner and an app client that may exchange and hold every people scope."""
    tenant = api.create_tenant("acme")
    scopes = ["tenants:read", "projects:read", "projects:write", "flags:read", "members:read", "members:write"]
    client = people.app_client(tenant["id"], scopes)
    assert people.invite(tenant["id"], "olga@example.com", "owner").status_code == 201
    return tenant["id"], client


def test_an_invited_person_signs_in_once_and_is_a_member(people: People, acme: tuple[str, Any]) -> None:
    tenant_id, client = acme
    r = people.invite(tenant_id, "Alice@Example.com", "developer")
    assert r.status_code == 201, r.text
    invited = r.json
    assert invited["email"] == "alice@example.com" and invited["status"] == "invited" and invited["role"] == "developer"
    assert invited["id"].startswith("usr_") and r.headers["Location"].endswith(invited["id"])

    r = people.exchange(
        client["client_id"], client["client_secret"], id_token(people.key, "idp|alice", "alice@example.com")
    )
    assert r.status_code == 200, r.text
    body = r.json
    assert body["issued_token_type"] == "urn:ietf:params:oauth:token-type:access_token"
    assert body["token_type"] == "Bearer"
    # developer ∩ the client: members:* are the client's but not the role's.
    assert body["scope"] == "flags:read projects:read projects:write tenants:read"
    me = people.c.simulate_get("/v1/me", headers={"Authorization": f"Bearer {body['access_token']}"}).json
    assert me["type"] == "user" and me["id"] == invited["id"] and me["tenant_id"] == tenant_id
    assert me["client_id"] == client["client_id"] and me["role"] == "developer"
    member = people.c.simulate_get(f"/v1/tenants/{tenant_id}/members/{invited['id']}", headers=people.api.admin()).json
    assert member["status"] == "active" and member["version"] == 2
    assert "identity" not in member


def test_after_the_first_sign_in_only_that_provider_account_matches(people: People, acme: tuple[str, Any]) -> None:
    tenant_id, client = acme
    people.invite(tenant_id, "alice@example.com", "viewer")
    people.sign_in(client, "idp|alice", "alice@example.com")
    someone = id_token(people.key, "idp|mallory", "alice@example.com")
    r = people.exchange(client["client_id"], client["client_secret"], someone)
    assert r.status_code == 400 and r.json["error"] == "invalid_grant"
    people.sign_in(client, "idp|alice", "alice@example.com")  # the same account, again: fine


@pytest.mark.parametrize(
    ("make", "error"),
    [
        (lambda key, other: id_token(key, "idp|bob", "bob@example.com"), "invalid_grant"),  # not invited
        (lambda key, other: id_token(key, "idp|alice", "alice@example.com", verified=False), "invalid_grant"),
        (lambda key, other: id_token(key, "idp|alice", "alice@example.com", verified="yes"), "invalid_grant"),
        (lambda key, other: id_token(key, "idp|alice", None), "invalid_grant"),
        (lambda key, other: id_token(other, "idp|alice", "alice@example.com"), "invalid_grant"),  # forged
        (
            lambda key, other: id_token(key, "idp|alice", "alice@example.com", exp=int(time.time()) - 300),
            "invalid_grant",
        ),
        (lambda key, other: id_token(key, "idp|alice", "alice@example.com", aud="another-app"), "invalid_grant"),
        (lambda key, other: id_token(key, "idp|alice", "alice@example.com", iss="https://evil.test"), "invalid_grant"),
        (lambda key, other: "not-a-jwt", "invalid_grant"),
    ],
)
def test_subject_tokens_that_prove_nothing_are_invalid_grant(
    people: People, acme: tuple[str, Any], make, error
) -> None:
    tenant_id, client = acme
    people.invite(tenant_id, "alice@example.com", "developer")
    r = people.exchange(client["client_id"], client["client_secret"], make(people.key, TestKey("forger")))
    assert r.status_code == 400, r.text
    assert r.json["error"] == error and r.json["error_description"]
    assert r.headers["Cache-Control"] == "no-store"
    member = people.c.simulate_get(f"/v1/tenants/{tenant_id}/members", headers=people.api.admin()).json["items"]
    assert {m["email"]: m["status"] for m in member}["alice@example.com"] == "invited"  # nothing half-written


def test_alg_none_and_hmac_with_the_public_key_are_refused(people: People, acme: tuple[str, Any]) -> None:
    import base64
    import hashlib
    import hmac
    import json

    tenant_id, client = acme
    people.invite(tenant_id, "alice@example.com", "developer")
    claims = {"iss": IDP, "aud": AUDIENCE, "sub": "idp|alice", "email": "alice@example.com", "email_verified": True}
    claims |= {"iat": int(time.time()), "exp": int(time.time()) + 300}

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    def token(header: dict[str, str], signature: bytes) -> str:
        return f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}.{b64(signature)}"

    unsigned = token({"alg": "none", "kid": people.key.kid}, b"")
    from cryptography.hazmat.primitives import serialization

    pem = people.key.private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    head = {"alg": "HS256", "kid": people.key.kid}
    signing_input = f"{b64(json.dumps(head).encode())}.{b64(json.dumps(claims).encode())}".encode()
    hs = token(head, hmac.new(pem, signing_input, hashlib.sha256).digest())
    for forged in (unsigned, hs):
        r = people.exchange(client["client_id"], client["client_secret"], forged)
        assert r.status_code == 400 and r.json["error"] == "invalid_grant", r.text


def test_a_client_needs_the_token_exchange_grant(people: People, acme: tuple[str, Any]) -> None:
    tenant_id, _ = acme
    plain = people.app_client(tenant_id, ["projects:read"], grants=("client_credentials",))
    people.invite(tenant_id, "alice@example.com", "developer")
    r = people.exchange(plain["client_id"], plain["client_secret"], id_token(people.key, "idp|a", "alice@example.com"))
    assert r.status_code == 400 and r.json["error"] == "unauthorized_client"
    exchanger = people.app_client(tenant_id, ["projects:read"])  # token-exchange only
    r = people.api.c.simulate_post(
        "/v1/oauth/token",
        headers={"Authorization": basic(exchanger["client_id"], exchanger["client_secret"]), **FORM},
        body="grant_type=client_credentials",
    )
    assert r.status_code == 400 and r.json["error"] == "unauthorized_client"


def test_a_scope_the_role_lacks_is_invalid_scope(people: People, acme: tuple[str, Any]) -> None:
    tenant_id, client = acme
    invited = people.invite(tenant_id, "alice@example.com", "viewer").json
    token = id_token(people.key, "idp|alice", "alice@example.com")
    r = people.exchange(client["client_id"], client["client_secret"], token, scope="projects:write")
    assert r.status_code == 400 and r.json["error"] == "invalid_scope"
    # Refused, so nothing is written: the member is still invited, at the same version.
    member = people.c.simulate_get(f"/v1/tenants/{tenant_id}/members/{invited['id']}", headers=people.api.admin()).json
    assert (member["status"], member["version"]) == ("invited", invited["version"])
    r = people.exchange(client["client_id"], client["client_secret"], token, scope="projects:read")
    assert r.status_code == 200 and r.json["scope"] == "projects:read"


def test_a_tenant_client_exchanges_only_for_its_own_tenant(api: Any, people: People, acme: tuple[str, Any]) -> None:
    _tenant_id, client = acme
    other = api.create_tenant("globex")["id"]
    people.invite(other, "alice@example.com", "developer")
    token = id_token(people.key, "idp|alice", "alice@example.com")
    r = people.exchange(client["client_id"], client["client_secret"], token, tenant_id=other)
    assert r.status_code == 400 and r.json["error"] == "invalid_request"
    # Without tenant_id the client's own tenant is meant, where she is nobody.
    r = people.exchange(client["client_id"], client["client_secret"], token)
    assert r.status_code == 400 and r.json["error"] == "invalid_grant"


def test_a_platform_client_picks_the_tenant_and_needs_one_when_there_are_several(api: Any, people: People) -> None:
    a, b = api.create_tenant("alpha")["id"], api.create_tenant("beta")["id"]
    people.invite(a, "alice@example.com", "viewer")
    boot = {"client_id": api.BOOT_ID, "client_secret": api.BOOT_SECRET}
    headers = people.sign_in(boot, "idp|alice", "alice@example.com")  # one tenant: that one
    assert people.c.simulate_get("/v1/me", headers=headers).json["tenant_id"] == a
    people.invite(b, "alice@example.com", "developer")
    r = people.exchange(api.BOOT_ID, api.BOOT_SECRET, id_token(people.key, "idp|alice", "alice@example.com"))
    assert r.status_code == 400 and r.json["error"] == "invalid_request" and "tenant_id" in r.json["error_description"]
    headers = people.sign_in(boot, "idp|alice", "alice@example.com", tenant_id=b)
    me = people.c.simulate_get("/v1/me", headers=headers).json
    assert me["tenant_id"] == b and me["role"] == "developer"


def test_the_several_tenants_refusal_lists_the_persons_tenants_and_is_on_the_record(
    api: Any, people: People, redis_url: str
) -> None:
    zeta, alpha, beta = (api.create_tenant(slug)["id"] for slug in ("zeta", "alpha", "beta"))
    gone, bobs = api.create_tenant("gone")["id"], api.create_tenant("bobs")["id"]
    people.invite(zeta, "alice@example.com", "viewer")
    people.invite(alpha, "alice@example.com", "developer")
    people.invite(gone, "alice@example.com", "owner")
    people.invite(bobs, "bob@example.com", "owner")
    assert people.c.simulate_delete(f"/v1/tenants/{gone}", headers=api.admin()).status_code in (200, 204)
    boot = {"client_id": api.BOOT_ID, "client_secret": api.BOOT_SECRET}
    people.sign_in(boot, "idp|alice", "alice@example.com", tenant_id=zeta)  # bound there, invited in alpha
    assert people.c.simulate_post(f"/v1/tenants/{zeta}/suspend", headers=api.admin()).status_code == 200
    people.invite(beta, "alice@example.com", "admin")
    r = people.exchange(api.BOOT_ID, api.BOOT_SECRET, id_token(people.key, "idp|alice", "alice@example.com"))
    assert r.status_code == 400 and r.json["error"] == "invalid_request"
    assert r.json["tenants"] == [
        {"id": alpha, "name": "Alpha", "role": "developer", "status": "active"},
        {"id": beta, "name": "Beta", "role": "admin", "status": "active"},
        {"id": zeta, "name": "Zeta", "role": "viewer", "status": "suspended"},
    ]
    (denied,) = [e for e in _events(redis_url, "token.denied") if e["data"].get("tenants")]
    assert denied["data"]["tenants"] == [alpha, beta, zeta] and denied["data"]["tenant_count"] == 3
    assert denied["data"]["client_id"] == api.BOOT_ID and denied["tenant_id"] is None
    # Each listed tenant is one the person can then be exchanged for.
    for listed in r.json["tenants"]:
        headers = people.sign_in(boot, "idp|alice", "alice@example.com", tenant_id=listed["id"])
        assert people.c.simulate_get("/v1/me", headers=headers).json["role"] == listed["role"]


def test_no_one_but_the_exchanging_client_with_the_persons_verified_token_learns_their_tenants(
    api: Any, people: People, acme: tuple[str, Any]
) -> None:
    acme_id, acme_client = acme
    a, b = api.create_tenant("alpha")["id"], api.create_tenant("beta")["id"]
    people.invite(a, "alice@example.com", "viewer")
    people.invite(b, "alice@example.com", "viewer")
    people.invite(acme_id, "alice@example.com", "viewer")
    alice = id_token(people.key, "idp|alice", "alice@example.com")
    refusals = [
        people.exchange(api.BOOT_ID, api.BOOT_SECRET, id_token(TestKey("forger"), "idp|alice", "alice@example.com")),
        people.exchange(
            api.BOOT_ID, api.BOOT_SECRET, id_token(people.key, "idp|alice", "alice@example.com", aud="another-app")
        ),
        people.exchange(
            api.BOOT_ID, api.BOOT_SECRET, id_token(people.key, "idp|alice", "alice@example.com", verified=False)
        ),
        people.exchange(
            api.BOOT_ID, api.BOOT_SECRET, id_token(people.key, "idp|alice", "alice@example.com", iss="https://e.test")
        ),
        people.exchange(api.BOOT_ID, "w" * 43, alice),  # the client's secret is wrong
        people.exchange(api.SVC_ID, api.SVC_SECRET, alice),  # a platform client without the grant
        people.exchange(acme_client["client_id"], acme_client["client_secret"], alice, tenant_id=a),
    ]
    assert [r.json["error"] for r in refusals] == ["invalid_grant"] * 4 + [
        "invalid_client",
        "unauthorized_client",
        "invalid_request",
    ]
    assert all("tenants" not in r.json for r in refusals)
    # A tenant's own client exchanges for its tenant: no choice, no list.
    assert people.exchange(acme_client["client_id"], acme_client["client_secret"], alice).status_code == 200
    # Someone else's verified token lists their tenants only.
    people.invite(b, "bob@example.com", "viewer")
    people.invite(acme_id, "bob@example.com", "owner")
    r = people.exchange(api.BOOT_ID, api.BOOT_SECRET, id_token(people.key, "idp|bob", "bob@example.com"))
    assert [t["id"] for t in r.json["tenants"]] == [acme_id, b]
    # A second account with alice's email, once she is bound everywhere, gets nothing of hers.
    for tenant in (a, b):
        people.sign_in(
            {"client_id": api.BOOT_ID, "client_secret": api.BOOT_SECRET},
            "idp|alice",
            "alice@example.com",
            tenant_id=tenant,
        )
    r = people.exchange(api.BOOT_ID, api.BOOT_SECRET, id_token(people.key, "idp|mallory", "alice@example.com"))
    assert r.status_code == 400 and r.json["error"] == "invalid_grant" and "tenants" not in r.json


def test_one_tenant_besides_deleted_ones_is_exchanged_for_without_asking(api: Any, people: People) -> None:
    kept, gone = api.create_tenant("kept")["id"], api.create_tenant("gone")["id"]
    people.invite(kept, "alice@example.com", "viewer")
    people.invite(gone, "alice@example.com", "viewer")
    assert people.c.simulate_delete(f"/v1/tenants/{gone}", headers=api.admin()).status_code in (200, 204)
    headers = people.sign_in(
        {"client_id": api.BOOT_ID, "client_secret": api.BOOT_SECRET}, "idp|alice", "alice@example.com"
    )
    assert people.c.simulate_get("/v1/me", headers=headers).json["tenant_id"] == kept


def test_the_bootstrap_person_gets_a_platform_token(api: Any, people: People) -> None:
    boot = {"client_id": api.BOOT_ID, "client_secret": api.BOOT_SECRET}
    headers = people.sign_in(boot, "idp|ops", "ops@example.com")
    me = people.c.simulate_get("/v1/me", headers=headers).json
    assert me["type"] == "user" and me["tenant_id"] is None and me["role"] == "platform-admin"
    assert me["scopes"] == ["platform:admin"]
    assert people.c.simulate_get("/v1/tenants", headers=headers).status_code == 200
    # Only platform clients hand out platform tokens: a tenant's app gets none.
    tenant = api.create_tenant("solo")["id"]
    app = people.app_client(tenant, ["tenants:read"])
    r = people.exchange(app["client_id"], app["client_secret"], id_token(people.key, "idp|ops", "ops@example.com"))
    assert r.status_code == 400 and r.json["error"] == "invalid_grant"


def test_platform_people_are_invited_and_the_last_platform_admin_stays(api: Any, people: People) -> None:
    admin = api.admin()
    listed = people.c.simulate_get("/v1/platform/members", headers=admin).json["items"]
    (ops,) = [m for m in listed if m["email"] == "ops@example.com"]
    assert ops["role"] == "platform-admin" and ops["tenant_id"] is None
    assert_problem(people.c.simulate_delete(f"/v1/platform/members/{ops['id']}", headers=admin), 409, "conflict")
    r = people.c.simulate_post(
        "/v1/platform/members", json={"email": "vic@example.com", "role": "platform-viewer"}, headers=admin
    )
    assert r.status_code == 201
    vic = r.json
    boot = {"client_id": api.BOOT_ID, "client_secret": api.BOOT_SECRET}
    viewer = people.sign_in(boot, "idp|vic", "vic@example.com")
    assert people.c.simulate_get("/v1/tenants", headers=viewer).status_code == 200
    assert_problem(people.c.simulate_get("/v1/platform/members", headers=viewer), 403, "insufficient_scope")
    r = people.c.simulate_post("/v1/platform/members", json={"email": "x@example.com", "role": "owner"}, headers=admin)
    assert_problem(r, 422, "validation_error")
    assert people.c.simulate_delete(f"/v1/platform/members/{vic['id']}", headers=admin).status_code == 204


def test_the_last_owner_cannot_be_removed_or_demoted(people: People, acme: tuple[str, Any]) -> None:
    tenant_id, _ = acme
    admin = people.api.admin()
    members = people.c.simulate_get(f"/v1/tenants/{tenant_id}/members", headers=admin).json["items"]
    (olga,) = [m for m in members if m["role"] == "owner"]
    path = f"/v1/tenants/{tenant_id}/members/{olga['id']}"
    assert_problem(people.c.simulate_delete(path, headers=admin), 409, "conflict")
    assert_problem(people.c.simulate_patch(path, json={"role": "admin"}, headers=admin), 409, "conflict")
    second = people.invite(tenant_id, "otto@example.com", "owner").json
    assert people.c.simulate_patch(path, json={"role": "admin"}, headers=admin).json["role"] == "admin"
    assert_problem(
        people.c.simulate_delete(f"/v1/tenants/{tenant_id}/members/{second['id']}", headers=admin), 409, "conflict"
    )


def test_an_admin_cannot_touch_owners(people: People, acme: tuple[str, Any]) -> None:
    tenant_id, client = acme
    people.invite(tenant_id, "ada@example.com", "admin")
    ada = people.sign_in(client, "idp|ada", "ada@example.com")
    assert_problem(people.invite(tenant_id, "new@example.com", "owner", headers=ada), 403, "forbidden")
    r = people.invite(tenant_id, "dev@example.com", "developer", headers=ada)
    assert r.status_code == 201  # an admin manages everyone else
    dev = r.json
    members = people.c.simulate_get(f"/v1/tenants/{tenant_id}/members", headers=ada).json["items"]
    (olga,) = [m for m in members if m["role"] == "owner"]
    owner_path = f"/v1/tenants/{tenant_id}/members/{olga['id']}"
    assert_problem(people.c.simulate_patch(owner_path, json={"role": "viewer"}, headers=ada), 403, "forbidden")
    assert_problem(people.c.simulate_delete(owner_path, headers=ada), 403, "forbidden")
    dev_path = f"/v1/tenants/{tenant_id}/members/{dev['id']}"
    assert_problem(people.c.simulate_patch(dev_path, json={"role": "owner"}, headers=ada), 403, "forbidden")
    assert people.c.simulate_patch(dev_path, json={"role": "viewer"}, headers=ada).json["role"] == "viewer"


def test_removing_or_re_roling_a_member_stops_their_tokens(people: People, acme: tuple[str, Any]) -> None:
    tenant_id, client = acme
    alice = people.invite(tenant_id, "alice@example.com", "developer").json
    headers = people.sign_in(client, "idp|alice", "alice@example.com")
    tenant_path = f"/v1/tenants/{tenant_id}"
    assert people.c.simulate_get(tenant_path, headers=headers).status_code == 200
    path = f"{tenant_path}/members/{alice['id']}"
    assert people.c.simulate_patch(path, json={"role": "viewer"}, headers=people.api.admin()).status_code == 200
    assert_within_a_second(lambda: people.c.simulate_get(tenant_path, headers=headers).status_code == 401)
    again = people.sign_in(client, "idp|alice", "alice@example.com")  # the new role, at once
    assert people.c.simulate_get("/v1/me", headers=again).json["role"] == "viewer"
    assert people.c.simulate_delete(path, headers=people.api.admin()).status_code == 204
    assert_within_a_second(lambda: people.c.simulate_get(tenant_path, headers=again).status_code == 401)
    r = people.exchange(
        client["client_id"], client["client_secret"], id_token(people.key, "idp|alice", "alice@example.com")
    )
    assert r.status_code == 400 and r.json["error"] == "invalid_grant"


def assert_within_a_second(done: Any) -> None:
    deadline = time.monotonic() + 1.0
    while not done():
        assert time.monotonic() < deadline, "not within a second"
        time.sleep(0.01)


def test_member_writes_use_if_match_and_validate(people: People, acme: tuple[str, Any]) -> None:
    tenant_id, _ = acme
    admin = people.api.admin()
    member = people.invite(tenant_id, "alice@example.com", "developer").json
    path = f"/v1/tenants/{tenant_id}/members/{member['id']}"
    stale = {**admin, "If-Match": '"7"'}
    assert_problem(people.c.simulate_patch(path, json={"role": "viewer"}, headers=stale), 412, "precondition_failed")
    fresh = {**admin, "If-Match": people.c.simulate_get(path, headers=admin).headers["ETag"]}
    assert people.c.simulate_patch(path, json={"language": "de"}, headers=fresh).json["language"] == "de"
    assert_problem(people.invite(tenant_id, "alice@example.com", "viewer"), 409, "conflict")
    for bad in ({"email": "not an email", "role": "viewer"}, {"email": "a@b.de", "role": "god"}, {"role": "viewer"}):
        r = people.c.simulate_post(f"/v1/tenants/{tenant_id}/members", json=bad, headers=admin)
        assert_problem(r, 422, "validation_error")


def test_invites_replay_with_an_idempotency_key(people: People, acme: tuple[str, Any]) -> None:
    tenant_id, _ = acme
    headers = {**people.api.admin(), "Idempotency-Key": "invite-alice-1"}
    body = {"email": "alice@example.com", "role": "viewer"}
    first = people.c.simulate_post(f"/v1/tenants/{tenant_id}/members", json=body, headers=headers)
    again = people.c.simulate_post(f"/v1/tenants/{tenant_id}/members", json=body, headers=headers)
    assert first.status_code == again.status_code == 201 and first.json == again.json


def test_another_tenants_members_answer_404(api: Any, people: People, acme: tuple[str, Any]) -> None:
    tenant_id, _ = acme
    member = people.invite(tenant_id, "alice@example.com", "viewer").json
    other = api.create_tenant("other")["id"]
    theirs = api.tenant_headers(other, ["members:read", "members:write"])
    mine = f"/v1/tenants/{tenant_id}/members"
    assert_problem(people.c.simulate_get(mine, headers=theirs), 404, "not_found")
    assert_problem(people.c.simulate_get(f"{mine}/{member['id']}", headers=theirs), 404, "not_found")
    assert_problem(
        people.c.simulate_post(mine, json={"email": "e@x.de", "role": "viewer"}, headers=theirs), 404, "not_found"
    )
    crossed = f"/v1/tenants/{other}/members/{member['id']}"  # their path, our member's id
    assert_problem(people.c.simulate_get(crossed, headers=theirs), 404, "not_found")
    assert_problem(people.c.simulate_patch(crossed, json={"role": "owner"}, headers=theirs), 404, "not_found")
    assert_problem(people.c.simulate_delete(crossed, headers=theirs), 404, "not_found")


def test_a_suspended_tenant_keeps_its_members_read_only(api: Any, people: People, acme: tuple[str, Any]) -> None:
    tenant_id, client = acme
    people.invite(tenant_id, "alice@example.com", "owner")
    alice = people.sign_in(client, "idp|alice", "alice@example.com")
    assert people.c.simulate_post(f"/v1/tenants/{tenant_id}/suspend", headers=api.admin()).status_code == 200
    assert people.c.simulate_get(f"/v1/tenants/{tenant_id}/members", headers=alice).status_code == 200
    r = people.invite(tenant_id, "bob@example.com", "viewer", headers=alice)
    assert_problem(r, 403, "tenant_suspended")


def test_deleting_a_tenant_removes_its_members_and_cuts_their_tokens(
    api: Any, people: People, acme: tuple[str, Any]
) -> None:
    tenant_id, _client = acme
    people.invite(tenant_id, "alice@example.com", "viewer")
    boot = {"client_id": api.BOOT_ID, "client_secret": api.BOOT_SECRET}
    alice = people.sign_in(boot, "idp|alice", "alice@example.com", tenant_id=tenant_id)
    assert people.c.simulate_delete(f"/v1/tenants/{tenant_id}", headers=api.admin()).status_code == 204
    assert_within_a_second(lambda: people.c.simulate_get("/v1/me", headers=alice).status_code == 401)
    r = people.exchange(api.BOOT_ID, api.BOOT_SECRET, id_token(people.key, "idp|alice", "alice@example.com"))
    assert r.status_code == 400 and r.json["error"] == "invalid_grant"


def test_a_provider_that_cannot_be_reached_is_503(people: People, acme: tuple[str, Any], monkeypatch) -> None:
    _tenant_id, client = acme

    def down(token: str) -> Any:
        raise ProvidersUnavailable("the provider's keys cannot be fetched")

    monkeypatch.setattr(IdentityProviders, "verify", lambda self, token: down(token))
    r = people.exchange(client["client_id"], client["client_secret"], id_token(people.key, "idp|a", "a@example.com"))
    assert r.status_code == 503 and r.json["error"] == "temporarily_unavailable"
    assert int(r.headers["Retry-After"]) > 0


def test_oversized_subject_tokens_are_refused_before_anything_is_parsed(people: People, acme: tuple[str, Any]) -> None:
    _, client = acme
    r = people.exchange(client["client_id"], client["client_secret"], "a" * 17_000)
    assert r.status_code == 400 and r.json["error"] in ("invalid_request", "invalid_grant")
    r = people.exchange(client["client_id"], client["client_secret"], "x", subject_token_type="urn:nope")
    assert r.status_code == 400 and r.json["error"] == "invalid_request"


def test_problems_speak_the_persons_language_else_the_tenants(api: Any, people: People) -> None:
    tenant = api.create_tenant("berlin", language="de")["id"]
    client = people.app_client(tenant, ["members:read", "tenants:read"])
    people.invite(tenant, "eva@example.com", "owner")
    as_client = api.tenant_headers(tenant, ["members:read"])
    missing = f"/v1/tenants/{tenant}/members/usr_01JNOBODY00000000000000000"
    r = people.c.simulate_get(missing, headers=as_client)
    assert r.status_code == 404 and r.headers["Content-Language"] == "de"
    eva = people.sign_in(client, "idp|eva", "eva@example.com")
    r = people.c.simulate_get(missing, headers={**eva, "Accept-Language": "de"})
    assert r.headers["Content-Language"] == "de"
    people.c.simulate_patch(
        f"/v1/tenants/{tenant}/members/{people.c.simulate_get('/v1/me', headers=eva).json['id']}",
        json={"language": "en"},
        headers=api.admin(),
    )
    english = people.sign_in(client, "idp|eva", "eva@example.com")  # her own language now: English
    r = people.c.simulate_get(missing, headers={**english, "Accept-Language": "de"})
    assert r.headers["Content-Language"] == "en"


def test_the_bootstrap_person_is_invited_once_and_again_only_after_data_loss(
    api: Any, people: People, redis_url: str
) -> None:
    import redis

    admin = api.admin()
    boot = {"client_id": api.BOOT_ID, "client_secret": api.BOOT_SECRET}
    people.sign_in(boot, "idp|ops", "ops@example.com")
    other = people.c.simulate_post(
        "/v1/platform/members", json={"email": "second@example.com", "role": "platform-admin"}, headers=admin
    ).json
    (ops,) = [
        m
        for m in people.c.simulate_get("/v1/platform/members", headers=admin).json["items"]
        if m["email"] == "ops@example.com"
    ]
    assert people.c.simulate_delete(f"/v1/platform/members/{ops['id']}", headers=admin).status_code == 204
    token = id_token(people.key, "idp|ops", "ops@example.com")
    r = people.exchange(api.BOOT_ID, api.BOOT_SECRET, token)
    assert r.status_code == 400 and r.json["error"] == "invalid_grant"  # removed stays removed
    assert other["role"] == "platform-admin"
    redis.Redis.from_url(redis_url).flushdb()  # Redis lost its data: the platform needs its first admin back
    assert people.exchange(api.BOOT_ID, api.BOOT_SECRET, token).status_code == 200


def _events(redis_url: str, *types: str) -> list[dict[str, Any]]:
    import json

    import redis

    entries = redis.Redis.from_url(redis_url, decode_responses=True).xrange("aerie:events")
    return [e for e in (json.loads(f["event"]) for _id, f in entries) if e["type"] in types]


def test_an_exchange_and_a_refused_one_are_events_that_name_the_person_and_the_client(
    people: People, acme: tuple[str, Any], redis_url: str
) -> None:
    tenant_id, client = acme
    member = people.invite(tenant_id, "alice@example.com", "viewer").json
    token = id_token(people.key, "idp|alice", "alice@example.com")
    cid, secret = client["client_id"], client["client_secret"]
    assert people.exchange(cid, secret, token, scope="projects:write").status_code == 400
    assert people.exchange(cid, secret, token).status_code == 200
    (denied,) = [e for e in _events(redis_url, "token.denied") if e["data"]["client_id"] == client["client_id"]]
    assert denied["data"]["error"] == "invalid_scope" and denied["data"]["grant_type"] == EXCHANGE
    assert denied["tenant_id"] == tenant_id
    (exchanged,) = _events(redis_url, "token.exchanged")
    assert exchanged["actor"] == {"type": "user", "id": member["id"], "client_id": client["client_id"]}
    assert exchanged["data"]["member_id"] == member["id"] and exchanged["data"]["issuer"] == IDP
    assert exchanged["tenant_id"] == tenant_id and exchanged["data"]["scope"]


def test_invites_role_changes_and_removals_are_events_and_the_last_two_raise_the_token_floor(
    people: People, acme: tuple[str, Any], redis_url: str
) -> None:
    tenant_id, client = acme
    member = people.invite(tenant_id, "bob@example.com", "viewer").json
    people.sign_in(client, "idp|bob", "bob@example.com")
    path = f"/v1/tenants/{tenant_id}/members/{member['id']}"
    changed = people.c.simulate_patch(path, json={"role": "developer"}, headers=people.api.admin())
    assert changed.status_code == 200, changed.text
    assert people.c.simulate_delete(path, headers=people.api.admin()).status_code == 204
    seen = [e for e in _events(redis_url, "member.invited", "member.updated", "member.removed")
            if e["data"]["member_id"] == member["id"]]  # fmt: skip
    assert [e["type"] for e in seen] == ["member.invited", "member.updated", "member.removed"]
    assert all(e["tenant_id"] == tenant_id for e in seen)
    assert "token_floor" not in seen[0]["data"]
    assert seen[1]["data"]["token_floor"] == changed.json["version"]
    assert seen[2]["data"]["token_floor"] >= seen[1]["data"]["token_floor"]
