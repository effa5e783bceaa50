"""Signing keys and hand-made tokens for tests, including deliberately bad ones."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

__all__ = ["TestKey", "make_claims"]

#: A JWK's private members (RFC 7518), and key_ops, which a published key does not carry.
_NOT_PUBLISHED = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k", "key_ops"})


class TestKey:
    """A private signing key with its kid, able to mint any token a test needs."""

    __test__ = False  # not a pytest test class

    def __init__(self, kid: str = "test-key", alg: str = "RS256") -> None:
        self.kid = kid
        self.alg = alg
        if alg == "RS256":
            self.private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            jwk = json.loads(RSAAlgorithm.to_jwk(self.private))
        elif alg == "ES256":
            self.private = ec.generate_private_key(ec.SECP256R1())
            jwk = json.loads(ECAlgorithm.to_jwk(self.private))
        else:
            raise ValueError(alg)
        # As PyJWT writes it, so with key_ops ["sign"] for RSA, like the keys deployments hold.
        self.private_jwk: dict[str, Any] = {**jwk, "kid": kid, "alg": alg, "use": "sig"}

    def private_jwks(self) -> dict[str, Any]:
        return {"keys": [self.private_jwk]}

    def public_jwk(self) -> dict[str, Any]:
        """The key as a JWKS publishes it: no private member, and no key_ops (a private key's
        ``["sign"]`` makes WebCrypto refuse to import it for verifying)."""
        return {k: v for k, v in self.private_jwk.items() if k not in _NOT_PUBLISHED}

    def public_pem(self) -> bytes:
        from cryptography.hazmat.primitives import serialization

        return self.private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def sign(self, claims: dict[str, Any], **headers: Any) -> str:
        header = {"kid": self.kid, "typ": "at+jwt", **headers}
        return jwt.encode(claims, self.private, algorithm=self.alg, headers=header)


def make_claims(issuer: str, **overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": issuer,
        "aud": "aerie",
        "sub": "cli_test",
        "client_id": "cli_test",
        "tenant_id": "ten_test",
        "scope": "tenants:read",
        "iat": now,
        "exp": now + 300,
        "jti": uuid.uuid4().hex,
    }
    claims.update(overrides)
    return {k: v for k, v in claims.items() if v is not None}
