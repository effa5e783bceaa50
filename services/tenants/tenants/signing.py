"""The issuer's signing keys, from ``AERIE_SIGNING_KEYS`` (a private JWK Set).

The first key signs; every key is published in the JWKS. To rotate without downtime, put
the new key first and keep the old one after it until tokens it signed have expired.

What is published is made from each key's public half, not copied from the private JWK: the
public members PyJWT writes for it (``n``/``e``, or ``crv``/``x``/``y``), ``kid``, ``alg``,
``use: "sig"`` and any X.509 members, and nothing else. So no private member (``d``, ``p``,
``q``, ``dp``, ``dq``, ``qi``, ``oth``, ``k``) can leak whatever the key set holds, and no
``key_ops``: a private key's ``["sign"]`` (PyJWT writes it into every RSA private JWK it
makes) published in the JWKS made WebCrypto verifiers (browsers, Node, Deno, edge runtimes)
refuse the key, and RFC 7517 (4.3) advises against ``key_ops`` beside ``use`` anyway.
"""

from __future__ import annotations

import json
from typing import Any

import jwt

from aerie.auth.tokens import ACCESS_TOKEN_TYPE, ALLOWED_ALGORITHMS
from aerie.config import ConfigError

__all__ = ["SigningKeys", "public_jwk"]

_PRIVATE_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})
#: Members of a private JWK that are about the key and public: copied to the JWKS as they are.
_PUBLIC_METADATA = ("x5u", "x5c", "x5t", "x5t#S256")


def public_jwk(private: jwt.PyJWK, raw: dict[str, Any]) -> dict[str, Any]:
    """The JWK to publish for ``private`` (made from ``raw``): its public half, for verifying."""
    public_key = private.key.public_key()
    derived = private.Algorithm.to_jwk(public_key, as_dict=True)
    public = {k: v for k, v in derived.items() if k != "key_ops" and k not in _PRIVATE_MEMBERS}
    public.update({"kid": raw["kid"], "alg": raw["alg"], "use": "sig"})
    public.update({k: raw[k] for k in _PUBLIC_METADATA if k in raw})
    return public


class SigningKeys:
    def __init__(self, jwks: dict[str, Any]) -> None:
        raw_keys = jwks.get("keys") if isinstance(jwks, dict) else None
        if not isinstance(raw_keys, list) or not raw_keys:
            raise ConfigError('AERIE_SIGNING_KEYS must be a JWK Set with at least one key: {"keys": [...]}')
        self._keys: list[jwt.PyJWK] = []
        self._public: list[dict[str, Any]] = []
        for i, raw in enumerate(raw_keys):
            if not isinstance(raw, dict) or not raw.get("kid") or raw.get("alg") not in ALLOWED_ALGORITHMS:
                raise ConfigError(
                    f"AERIE_SIGNING_KEYS key {i} needs a kid and an alg of {', '.join(ALLOWED_ALGORITHMS)}"
                )
            if "d" not in raw:
                raise ConfigError(f"AERIE_SIGNING_KEYS key {raw['kid']!r} is not a private key")
            try:
                key = jwt.PyJWK(raw)
            except jwt.PyJWTError as exc:
                raise ConfigError(f"AERIE_SIGNING_KEYS key {raw['kid']!r} is invalid: {exc}") from None
            self._keys.append(key)
            self._public.append(public_jwk(key, raw))

    @classmethod
    def from_env_value(cls, value: str) -> SigningKeys:
        try:
            return cls(json.loads(value))
        except ValueError:
            raise ConfigError("AERIE_SIGNING_KEYS is not valid JSON") from None

    def jwks(self) -> dict[str, Any]:
        return {"keys": list(self._public)}

    def sign(self, claims: dict[str, Any]) -> str:
        key = self._keys[0]
        return jwt.encode(
            claims, key.key, algorithm=key.algorithm_name, headers={"kid": key.key_id, "typ": ACCESS_TOKEN_TYPE}
        )
