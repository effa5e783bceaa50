"""``POST /v1/oauth/token``: the OAuth2 client-credentials grant (RFC 6749 section 4.4).

Errors here are RFC 6749 JSON (``{"error", "error_description"}``), not problem+json:
OAuth client libraries parse them. Every token issued or denied is published as an event.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any
from urllib.parse import parse_qs, unquote_plus

import falcon

from aerie.endpoints import PUBLIC, endpoint
from aerie.events import EventContext, EventPublisher, new_event
from aerie.middleware import read_body
from aerie.redis import RedisProvider
from tenants.issuer import Issuer, OAuthError

FORM = "application/x-www-form-urlencoded"

TOKEN_REQUEST = {
    "grant_type": {"type": "string", "required": True, "allowed": ["client_credentials"]},
    "scope": {"type": "string"},
    "tenant_id": {"type": "string"},
    "client_id": {"type": "string"},
    "client_secret": {"type": "string"},
}
TOKEN_RESPONSE = {
    "access_token": {"type": "string"},
    "token_type": {"type": "string", "allowed": ["Bearer"]},
    "expires_in": {"type": "integer"},
    "scope": {"type": "string"},
}


def _form(req: falcon.Request) -> dict[str, str]:
    media = (req.content_type or "").split(";", 1)[0].strip().lower()
    if media != FORM:
        raise OAuthError("invalid_request", f"The body must be {FORM}.")
    raw = read_body(req)
    try:
        parsed = parse_qs(raw.decode("utf-8"), keep_blank_values=True, strict_parsing=bool(raw))
    except (UnicodeDecodeError, ValueError):
        raise OAuthError("invalid_request", "The form body is malformed.") from None
    repeated = sorted(k for k, v in parsed.items() if len(v) > 1)
    if repeated:
        raise OAuthError("invalid_request", f"Parameters may appear only once: {', '.join(repeated)}.")
    return {k: v[0] for k, v in parsed.items()}


def _credentials(req: falcon.Request, form: dict[str, str]) -> tuple[str, str]:
    header = req.get_header("Authorization")
    in_body = "client_id" in form or "client_secret" in form
    if header:
        if in_body:
            raise OAuthError("invalid_request", "Use one client authentication method, not two.")
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "basic":
            raise OAuthError("invalid_client", "Use HTTP Basic or client_id/client_secret fields.", 401)
        try:
            decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            raise OAuthError("invalid_client", "The Basic credentials are malformed.", 401) from None
        client_id, sep, secret = decoded.partition(":")
        if not sep:
            raise OAuthError("invalid_client", "The Basic credentials are malformed.", 401)
        return unquote_plus(client_id), unquote_plus(secret)
    client_id, secret = form.get("client_id"), form.get("client_secret")
    if not client_id or not secret:
        raise OAuthError("invalid_client", "Client authentication is required.", 401)
    return client_id, secret


class TokenResource:
    def __init__(self, issuer: Issuer, events: EventPublisher, redis: RedisProvider) -> None:
        self._issuer = issuer
        self._events = events
        self._redis = redis

    @endpoint(
        "Issue an access token (client credentials)",
        scopes=PUBLIC,
        body=TOKEN_REQUEST,
        media=FORM,
        response=TOKEN_RESPONSE,
        description="Form-encoded (RFC 6749 section 4.4). Client authentication by HTTP Basic or "
        "client_id/client_secret. "
        "Errors are RFC 6749 JSON: invalid_client 401, invalid_scope, unsupported_grant_type, invalid_request 400.",
        responses={400: "RFC 6749 error", 401: "invalid_client"},
    )
    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.set_header("Cache-Control", "no-store")
        resp.set_header("Pragma", "no-cache")
        client_id: str | None = None
        try:
            form = _form(req)
            grant = form.get("grant_type")
            if not grant:
                raise OAuthError("invalid_request", "grant_type is required.")
            if grant != "client_credentials":
                raise OAuthError("unsupported_grant_type", "Only client_credentials is supported.")
            client_id, secret = _credentials(req, form)
            token = self._issuer.issue(client_id, secret, form.get("scope"), form.get("tenant_id") or None)
        except OAuthError as exc:
            self._deny(req, resp, exc, client_id)
            return
        claims = token.claims
        ctx = self._context(req, client_id)
        data = {
            "client_id": client_id,
            "scope": token.scope,
            "jti": claims["jti"],
            "expires_at": claims["exp"],
            "platform_client": token.platform,
        }
        self._events.publish(self._redis.client, new_event("token.issued", claims.get("tenant_id"), data, ctx))
        resp.media = {
            "access_token": token.access_token,
            "token_type": "Bearer",
            "expires_in": token.expires_in,
            "scope": token.scope,
        }

    def _deny(self, req: falcon.Request, resp: falcon.Response, exc: OAuthError, client_id: str | None) -> None:
        data: dict[str, Any] = {"client_id": client_id, "error": exc.error, "reason": exc.description}
        event = new_event("token.denied", exc.tenant_id, data, self._context(req, client_id))
        self._events.publish(self._redis.client, event)
        resp.status = exc.status
        if exc.status == 401:
            resp.set_header("WWW-Authenticate", 'Basic realm="aerie"')
        resp.media = {"error": exc.error, "error_description": exc.description}

    @staticmethod
    def _context(req: falcon.Request, client_id: str | None) -> EventContext:
        ctx = EventContext.from_request(req)
        actor = {"type": "client", "id": client_id, "client_id": client_id} if client_id else None
        return EventContext(actor=actor, request_id=ctx.request_id, ip=ctx.ip, user_agent=ctx.user_agent)
