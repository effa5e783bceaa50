"""Issue 23, item 12: the JWKS publishes public keys a WebCrypto verifier imports.

The private keys in ``AERIE_SIGNING_KEYS`` carry ``key_ops: ["sign"]`` (PyJWT writes it into
every RSA private JWK it makes, the local and Cloud Foundry secrets included); copied into the
JWKS, it made browsers, Node, Deno and edge runtimes refuse every key.
"""

from __future__ import annotations

import json

import jwt
import pytest
from falcon import testing

from aerie.config import Settings
from aerie.testing.keys import TestKey
from tenants.app import create_app
from tenants.config import TenantsConfig
from tenants.signing import SigningKeys

PRIVATE_MEMBERS = {"d", "p", "q", "dp", "dq", "qi", "oth", "k"}


def signing_private(key: TestKey, **extra: object) -> dict:
    """``key``'s private JWK as a key set holds it: with ``key_ops: ["sign"]`` whatever PyJWT wrote."""
    return {**key.private_jwk, "key_ops": ["sign"], **extra}


def assert_publishable(published: dict, key: TestKey) -> None:
    assert not PRIVATE_MEMBERS & published.keys(), published
    assert published.get("key_ops", ["verify"]) == ["verify"], published
    assert (published["kid"], published["alg"], published["use"]) == (key.kid, key.alg, "sig")
    # It still verifies what the private key signs.
    token = key.sign({"sub": "x"})
    assert jwt.decode(token, jwt.PyJWK(published).key, algorithms=[key.alg]) == {"sub": "x"}


@pytest.mark.parametrize("alg", ["RS256", "ES256"])
def test_published_keys_have_no_private_members_and_no_sign_key_ops(alg):
    key = TestKey(f"k-{alg}", alg)
    # ext false would make WebCrypto refuse an extractable import too.
    private = signing_private(key, ext=False)
    (published,) = SigningKeys({"keys": [private]}).jwks()["keys"]
    assert_publishable(published, key)
    assert "ext" not in published


def test_the_jwks_route_serves_every_key_publishable(env):
    rsa, ec = TestKey("rsa-1"), TestKey("ec-1", alg="ES256")
    env = {**env, "AERIE_SIGNING_KEYS": json.dumps({"keys": [signing_private(ec), signing_private(rsa)]})}
    settings = Settings.from_env("tenants", env)
    client = testing.TestClient(create_app(settings, TenantsConfig.from_settings(settings)))
    r = client.simulate_get("/.well-known/jwks.json")
    assert r.status_code == 200 and r.headers["content-type"] == "application/jwk-set+json"
    published = r.json["keys"]
    assert [k["kid"] for k in published] == ["ec-1", "rsa-1"]
    for key, jwk in zip([ec, rsa], published, strict=True):
        assert_publishable(jwk, key)


def test_x509_members_are_published_and_nothing_else_unknown():
    key = TestKey("k-x5")
    private = signing_private(key, x5t="dGh1bWI", x5c=["Y2VydA=="], secret_note="never published")
    (published,) = SigningKeys({"keys": [private]}).jwks()["keys"]
    assert published["x5t"] == "dGh1bWI" and published["x5c"] == ["Y2VydA=="]
    assert "secret_note" not in published


def test_the_local_and_cloud_foundry_keys_are_publishable():
    from aerie.local.secrets import new_signing_jwks

    made = new_signing_jwks()
    (private,) = made["keys"]
    assert private["use"] == "sig" and "key_ops" not in private  # RFC 7517 4.3: not both
    (published,) = SigningKeys(made).jwks()["keys"]
    assert not PRIVATE_MEMBERS & published.keys() and "key_ops" not in published


def test_test_keys_public_half_is_what_the_issuer_publishes():
    for key in (TestKey("t-rsa"), TestKey("t-ec", alg="ES256")):
        (published,) = SigningKeys(key.private_jwks()).jwks()["keys"]
        assert key.public_jwk() == published
