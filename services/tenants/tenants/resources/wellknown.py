"""Discovery: the JWKS every service verifies with, and RFC 8414 server metadata."""

from __future__ import annotations

import json
from typing import Any

import falcon

from aerie.endpoints import PUBLIC, endpoint
from tenants.domain import KNOWN_SCOPES

#: RFC 7517's media type for a JWK Set.
JWK_SET = "application/jwk-set+json"


class JWKSResource:
    def __init__(self, jwks: dict[str, Any]) -> None:
        self._body = json.dumps(jwks).encode()

    @endpoint(
        "The issuer's public signing keys (JWK Set)",
        scopes=PUBLIC,
        response={"keys": {"type": "list"}},
        response_media=JWK_SET,
    )
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.content_type = JWK_SET
        resp.set_header("Cache-Control", "public, max-age=300")
        resp.data = self._body


class AuthorizationServerMetadata:
    def __init__(self, issuer: str) -> None:
        self._body = {
            "issuer": issuer,
            "token_endpoint": f"{issuer}/v1/oauth/token",
            "jwks_uri": f"{issuer}/.well-known/jwks.json",
            "grant_types_supported": ["client_credentials", "urn:ietf:params:oauth:grant-type:token-exchange"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
            "token_endpoint_auth_signing_alg_values_supported": ["RS256", "ES256"],
            "scopes_supported": list(KNOWN_SCOPES),
            "response_types_supported": ["token"],
        }

    @endpoint("OAuth 2.0 authorization server metadata (RFC 8414)", scopes=PUBLIC)
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.set_header("Cache-Control", "public, max-age=300")
        resp.media = self._body
