"""The issuer's signing keys, from ``AERIE_SIGNING_KEYS`` (a private JWK Set).

The first key signs; every key is published in the JWKS. To rotate without downtime, put
the new key first and keep the old one after it until tokens it signed have expired.
"""

from __future__ import annotations

import json
from typing import Any

import jwt

from aerie.auth.tokens import ACCESS_TOKEN_TYPE, ALLOWED_ALGORITHMS
from aerie.config import ConfigError

__all__ = ["SigningKeys"]

_PRIVATE_MEMBERS = {"d", "p", "q", "dp", "dq", "qi", "oth", "k"}


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
                self._keys.append(jwt.PyJWK(raw))
            except jwt.PyJWTError as exc:
                raise ConfigError(f"AERIE_SIGNING_KEYS key {raw['kid']!r} is invalid: {exc}") from None
            public = {k: v for k, v in raw.items() if k not in _PRIVATE_MEMBERS}
            public["use"] = "sig"
            self._public.append(public)

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
