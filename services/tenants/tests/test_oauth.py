"""The token endpoint, JWKS and discovery, over the real app and a real Redis."""

from __future__ import annotations

import base64
import json
import time

import jwt
import pytest
import redis

from aerie.auth.tokens import StaticKeySource, TokenVerifier
from aerie.testing.http import basic_auth as basic

ISSUER = "http://tenants.test"
BOOT_ID = "aerie-bootstrap"
BOOT_SECRET = "b" * 43
SVC_ID = "svc-projects"
SVC_SECRET = "s" * 43

FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def post_token(client, body: str, headers: dict[str, str] | None = None):
    return client.simulate_post("/v1/oauth/token", body=body, headers={**FORM, **(headers or {})})


def events(redis_url: str, type_: str) -> list[dict]:
    r = redis.Redis.from_url(redis_url, decode_responses=True)
    out = [json.loads(f["event"]) for _id, f in r.xrange("aerie:events")]
    return [e for e in out if e["type"] == type_]


def test_bootstrap_client_gets_a_verifiable_platform_token(client, signing_key, redis_url):
    r = post_token(client, "grant_type=client_credentials", {"Authorization": basic(BOOT_ID, BOOT_SECRET)})
    assert r.status_code == 200
    assert r.headers["cache-control"] == "no-store"
    body = r.json
    assert body["token_type"] == "Bearer" and body["expires_in"] == 900 and body["scope"] == "platform:admin"
    verifier = TokenVerifier(StaticKeySource(client.simulate_get("/.well-known/jwks.json").json), issuer=ISSUER)
    principal = verifier.verify(body["access_token"])
    assert principal.is_platform and principal.client_id == BOOT_ID
    header = jwt.get_unverified_header(body["access_token"])
    assert header == {"alg": "RS256", "kid": "k1", "typ": "at+jwt"}
    claims = jwt.decode(body["access_token"], options={"verify_signature": False})
    assert {"iss", "aud", "sub", "client_id", "scope", "iat", "exp", "jti"} <= claims.keys()
    assert "tenant_id" not in claims
    issued = events(redis_url, "token.issued")
    assert len(issued) == 1 and issued[0]["data"]["jti"] == claims["jti"]


def test_client_secret_in_the_form_works_too(client):
    r = post_token(client, f"grant_type=client_credentials&client_id={BOOT_ID}&client_secret={BOOT_SECRET}")
    assert r.status_code == 200


def test_tenant_client_token_is_bound_to_its_tenant_and_scopes(api, client):
    tenant = api.create_tenant("acme")
    created = api.create_client(tenant["id"], ["projects:read", "projects:write"])
    assert "secret_hash" not in created and len(created["client_secret"]) >= 43
    token = api.token(created["client_id"], created["client_secret"])
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["tenant_id"] == tenant["id"]
    assert claims["scope"] == "projects:read projects:write"
    narrowed = api.token(created["client_id"], created["client_secret"], scope="projects:read")
    assert jwt.decode(narrowed, options={"verify_signature": False})["scope"] == "projects:read"


def test_a_wrong_secret_for_a_tenants_client_names_the_tenant_in_the_denial(api, client, redis_url):
    tenant = api.create_tenant("initech")
    created = api.create_client(tenant["id"], ["projects:read"])
    form = "grant_type=client_credentials"
    wrong = post_token(client, form, {"Authorization": basic(created["client_id"], "x" * 43)})
    unknown = post_token(client, form, {"Authorization": basic("cli_nobody", "x" * 43)})
    # The caller learns nothing: both answers are the same.
    assert (
        (wrong.status_code, wrong.json)
        == (unknown.status_code, unknown.json)
        == (
            401,
            {"error": "invalid_client", "error_description": "Client authentication failed."},
        )
    )
    denied = [e for e in events(redis_url, "token.denied") if e["data"].get("client_id") == created["client_id"]]
    assert [e["tenant_id"] for e in denied] == [tenant["id"]]


def test_platform_client_can_mint_a_tenant_bound_token(api, redis_url):
    tenant = api.create_tenant("globex")
    token = api.token(tenant_id=tenant["id"], scope="projects:read")
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["tenant_id"] == tenant["id"] and claims["scope"] == "projects:read"
    issued = [e for e in events(redis_url, "token.issued") if e["tenant_id"] == tenant["id"]]
    assert issued and issued[-1]["data"]["platform_client"] is True


def test_service_client_reads_only(api, client):
    token = api.token(SVC_ID, SVC_SECRET)
    assert jwt.decode(token, options={"verify_signature": False})["scope"] == "audit:write platform:read"
    r = post_token(
        client, "grant_type=client_credentials&scope=platform:admin", {"Authorization": basic(SVC_ID, SVC_SECRET)}
    )
    assert r.status_code == 400 and r.json["error"] == "invalid_scope"


@pytest.mark.parametrize(
    ("body", "auth", "status", "error"),
    [
        ("grant_type=password", True, 400, "unsupported_grant_type"),
        ("grant_type=authorization_code", True, 400, "unsupported_grant_type"),
        ("", True, 400, "invalid_request"),
        ("scope=platform:admin", True, 400, "invalid_request"),
        ("grant_type=client_credentials&grant_type=client_credentials", True, 400, "invalid_request"),
        ("grant_type=client_credentials&scope=nonsense:scope", True, 400, "invalid_scope"),
        ("grant_type=client_credentials&tenant_id=ten_missing", True, 400, "invalid_request"),
        ("grant_type=client_credentials", False, 401, "invalid_client"),
        ("grant_type=client_credentials&client_id=aerie-bootstrap", False, 401, "invalid_client"),
        (
            f"grant_type=client_credentials&client_id={BOOT_ID}&client_secret={BOOT_SECRET}",
            True,
            400,
            "invalid_request",
        ),
    ],
)
def test_token_request_errors(client, redis_url, body, auth, status, error):
    headers = {"Authorization": basic(BOOT_ID, BOOT_SECRET)} if auth else {}
    r = post_token(client, body, headers)
    assert r.status_code == status, r.text
    assert r.json["error"] == error and r.json["error_description"]
    if status == 401:
        assert r.headers["www-authenticate"].startswith("Basic")
    assert events(redis_url, "token.denied")[-1]["data"]["error"] == error


@pytest.mark.parametrize(
    "authorization",
    [
        basic(BOOT_ID, "wrong-secret"),
        basic("cli_does_not_exist", BOOT_SECRET),
        "Basic !!!not-base64!!!",
        "Basic " + base64.b64encode(b"no-colon-here").decode(),
        "Bearer something",
    ],
)
def test_bad_client_authentication_is_invalid_client(client, authorization):
    r = post_token(client, "grant_type=client_credentials", {"Authorization": authorization})
    assert r.status_code == 401 and r.json["error"] == "invalid_client"


def test_wrong_media_type_and_malformed_forms(client):
    auth = {"Authorization": basic(BOOT_ID, BOOT_SECRET)}
    r = client.simulate_post("/v1/oauth/token", json={"grant_type": "client_credentials"}, headers=auth)
    assert r.status_code == 400 and r.json["error"] == "invalid_request"
    r = post_token(client, "grant_type=client_credentials&&=&broken", auth)
    assert r.status_code == 400 and r.json["error"] == "invalid_request"
    r = client.simulate_post("/v1/oauth/token", body=b"grant_type=\xff\xfe", headers={**FORM, **auth})
    assert r.status_code == 400 and r.json["error"] == "invalid_request"
    # Past the token form's 4 KiB (let alone the JSON routes' 1 MiB): RFC 6749 JSON, not a 413 problem.
    r = post_token(client, "grant_type=client_credentials&pad=" + "x" * (1024 * 1024 + 1), auth)
    assert r.status_code == 400 and r.json["error"] == "invalid_request"


def test_tenant_client_cannot_exceed_its_scopes_or_pick_a_tenant(api, client):
    tenant = api.create_tenant("initech")
    created = api.create_client(tenant["id"], ["projects:read"])
    auth = {"Authorization": basic(created["client_id"], created["client_secret"])}
    r = post_token(client, "grant_type=client_credentials&scope=projects:write", auth)
    assert r.status_code == 400 and r.json["error"] == "invalid_scope"
    r = post_token(client, f"grant_type=client_credentials&tenant_id={tenant['id']}", auth)
    assert r.status_code == 400 and r.json["error"] == "invalid_request"


def test_revoked_client_gets_no_token(api, client):
    tenant = api.create_tenant("umbrella")
    created = api.create_client(tenant["id"], ["projects:read"])
    r = client.simulate_delete(f"/v1/tenants/{tenant['id']}/clients/{created['client_id']}", headers=api.admin())
    assert r.status_code == 204
    r = post_token(
        client,
        "grant_type=client_credentials",
        {"Authorization": basic(created["client_id"], created["client_secret"])},
    )
    assert r.status_code == 401 and r.json["error"] == "invalid_client"


def test_secrets_are_stored_only_as_hashes(api, redis_url):
    tenant = api.create_tenant("hooli")
    created = api.create_client(tenant["id"], ["projects:read"])
    r = redis.Redis.from_url(redis_url, decode_responses=True)
    dump = "".join(str(r.get(k)) for k in r.keys("tenants:*") if r.type(k) == "string")
    assert created["client_secret"] not in dump
    stream = "".join(f["event"] for _id, f in r.xrange("aerie:events"))
    assert created["client_secret"] not in stream


def test_jwks_publishes_every_key_and_no_private_parts(client, signing_key):
    r = client.simulate_get("/.well-known/jwks.json")
    assert r.status_code == 200 and r.headers["content-type"] == "application/jwk-set+json"
    (key,) = r.json["keys"]
    assert key["kid"] == "k1" and key["use"] == "sig" and key["alg"] == "RS256"
    assert not {"d", "p", "q", "dp", "dq", "qi"} & key.keys()


def test_rotation_signs_with_the_first_key_and_publishes_both(env, redis_url, api):
    from falcon import testing

    from aerie.config import Settings
    from aerie.testing.keys import TestKey
    from tenants.app import create_app
    from tenants.config import TenantsConfig

    old, new = TestKey("old"), TestKey("new", alg="ES256")
    env = {**env, "AERIE_SIGNING_KEYS": json.dumps({"keys": [new.private_jwk, old.private_jwk]})}
    settings = Settings.from_env("tenants", env)
    c = testing.TestClient(create_app(settings, TenantsConfig.from_settings(settings)))
    assert [k["kid"] for k in c.simulate_get("/.well-known/jwks.json").json["keys"]] == ["new", "old"]
    token = type(api)(c).token()
    assert jwt.get_unverified_header(token)["kid"] == "new"
    # a token signed by the old key still verifies during the rotation
    from aerie.testing.keys import make_claims

    legacy = old.sign(make_claims(ISSUER, tenant_id=None, client_id=BOOT_ID, sub=BOOT_ID, scope="platform:admin"))
    assert c.simulate_get("/v1/tenants", headers={"Authorization": f"Bearer {legacy}"}).status_code == 200


def test_authorization_server_metadata(client):
    body = client.simulate_get("/.well-known/oauth-authorization-server").json
    assert body["issuer"] == ISSUER
    assert body["token_endpoint"] == f"{ISSUER}/v1/oauth/token"
    assert body["jwks_uri"] == f"{ISSUER}/.well-known/jwks.json"
    assert body["grant_types_supported"] == ["client_credentials", "urn:ietf:params:oauth:grant-type:token-exchange"]


@pytest.mark.parametrize(("ttl", "seconds"), [(None, 900), ("", 900), ("60", 60), ("86400", 86_400)])
def test_token_ttl_setting(env, ttl: str | None, seconds: int):
    from aerie.config import Settings
    from tenants.config import TenantsConfig

    extra = {} if ttl is None else {"AERIE_TOKEN_TTL": ttl}
    assert TenantsConfig.from_settings(Settings.from_env("tenants", {**env, **extra})).token_ttl_s == seconds


@pytest.mark.parametrize("ttl", ["59", "86401", "soon", "1.5", "\u00b2", "9" * 5000])
def test_a_bad_token_ttl_stops_start_up_with_its_name(env, ttl: str):
    from aerie.config import ConfigError, Settings
    from tenants.config import TenantsConfig

    with pytest.raises(ConfigError, match="AERIE_TOKEN_TTL"):
        TenantsConfig.from_settings(Settings.from_env("tenants", {**env, "AERIE_TOKEN_TTL": ttl}))


def test_failed_authentications_are_limited_per_client_id_and_per_address(env, redis_url):
    from falcon import testing

    from aerie.config import Settings
    from tenants.app import create_app
    from tenants.config import TenantsConfig

    limited = {**env, "AERIE_AUTH_FAILURES_PER_CLIENT": "3", "AERIE_AUTH_FAILURES_PER_ADDRESS": "5"}
    settings = Settings.from_env("tenants", limited)
    c = testing.TestClient(create_app(settings, TenantsConfig.from_settings(settings)))

    def attempt(client_id: str, secret: str, address: str = "203.0.113.7"):
        headers = {"Authorization": basic(client_id, secret), "X-Forwarded-For": address}
        return post_token(c, "grant_type=client_credentials", headers)

    while time.time() % 60 > 57:  # the window is a fixed minute: do not straddle two
        time.sleep(0.2)
    assert [attempt(BOOT_ID, "wrong").status_code for _ in range(3)] == [401] * 3
    refused = attempt(BOOT_ID, BOOT_SECRET)  # even the right secret waits: the guessing is what is slowed
    assert refused.status_code == 429 and refused.json["error"] == "slow_down"
    assert 0 < int(refused.headers["Retry-After"]) <= 60
    assert set(refused.json) == {"error", "error_description"}
    # Another client id from the same address has two failures left before the address is spent.
    assert [attempt("cli_other", "x").status_code for _ in range(3)] == [401, 401, 429]
    # Another address is not held to this one's failures, and a good secret works there.
    assert attempt("cli_third", BOOT_SECRET, "198.51.100.9").status_code == 401
    denied = [e for e in events(redis_url, "token.denied") if e["data"]["error"] == "slow_down"]
    assert denied and denied[-1]["data"]["client_id"] == "cli_other"
