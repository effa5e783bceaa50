"""``POST /v1/oauth/token``: client credentials (RFC 6749 section 4.4) and token exchange (RFC 8693).

Errors here are RFC 6749 JSON (``{"error", "error_description"}``), not problem+json:
OAuth client libraries parse them. Every token issued or denied is published as an event.

The endpoint answers anyone, so everything a request brings is bounded before it is looked
up, stored, published or logged: the form to :data:`MAX_FORM_BYTES` (refused on
its ``Content-Length`` before a byte is read), the Authorization header to
:data:`MAX_AUTHORIZATION_CHARS`, and each field to the limits in :mod:`tenants.issuer`
(:data:`~tenants.issuer.MAX_CLIENT_ID_CHARS` and the rest), all far beyond any real
client's. Past one, the answer is ``invalid_request`` (400), or ``invalid_client`` (401)
for credentials no client can have; the ``token.denied`` event keeps at most
:data:`~tenants.issuer.MAX_CLIENT_ID_CHARS` of a claimed client id and
:data:`MAX_REASON_CHARS` of the reason, and :func:`aerie.events.new_event` bounds the
request's headers, so its stream entry stays under 2 KB whatever was sent.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any
from urllib.parse import parse_qs, unquote_plus

import falcon

from aerie import errors
from aerie.endpoints import PUBLIC, endpoint
from aerie.events import EventContext, EventPublisher, client_ip, new_event
from aerie.logs import truncated
from aerie.middleware import read_body
from aerie.redis import RedisProvider
from tenants.auth_failures import AuthFailures
from tenants.exchange import ACCESS_TOKEN_TYPE, GRANT_TYPE, SUBJECT_TOKEN_TYPES, ProvidersDown, TokenExchange
from tenants.identity import MAX_SUBJECT_TOKEN_CHARS
from tenants.issuer import (
    MAX_CLIENT_ID_CHARS,
    MAX_CLIENT_SECRET_CHARS,
    MAX_SCOPE_CHARS,
    MAX_TENANT_ID_CHARS,
    Issuer,
    OAuthError,
)

FORM = "application/x-www-form-urlencoded"

#: A token request's whole form: its fields at their limits, percent-encoded, fit with room
#: to spare (a client-credentials request is a few hundred bytes; an exchange carries an ID
#: token of a few KiB, at most :data:`~tenants.identity.MAX_SUBJECT_TOKEN_CHARS`, whose
#: base64url and dots need no percent-encoding), and 24 KiB is a 40th of the 1 MiB the JSON
#: routes take. Refused on the ``Content-Length`` alone, before the body is read.
MAX_FORM_BYTES = 24 * 1024
#: ``Basic `` and the base64 of a client id and secret at their limits, percent-encoded.
MAX_AUTHORIZATION_CHARS = 2048
#: The token-exchange grant's URN is the longest name of a grant or token type we take.
MAX_GRANT_TYPE_CHARS = 64
MAX_TOKEN_TYPE_CHARS = 64
GRANT_TYPES = ("client_credentials", GRANT_TYPE)
#: What a ``token.denied`` event and the error's description keep of the reason (ours, but
#: it may quote requested scopes).
MAX_REASON_CHARS = 256
#: The tenant ids a ``token.denied`` event names of a several-tenants refusal's list (ids
#: are short, so the event stays small), beside how many there were.
MAX_LISTED_IN_EVENT = 20

TOKEN_REQUEST = {
    "grant_type": {
        "type": "string",
        "required": True,
        "allowed": list(GRANT_TYPES),
        "maxlength": MAX_GRANT_TYPE_CHARS,
    },
    "subject_token": {"type": "string", "maxlength": MAX_SUBJECT_TOKEN_CHARS},
    "subject_token_type": {"type": "string", "allowed": list(SUBJECT_TOKEN_TYPES)},
    "requested_token_type": {"type": "string", "allowed": [ACCESS_TOKEN_TYPE]},
    "scope": {"type": "string", "maxlength": MAX_SCOPE_CHARS},
    "tenant_id": {"type": "string", "maxlength": MAX_TENANT_ID_CHARS},
    "client_id": {"type": "string", "maxlength": MAX_CLIENT_ID_CHARS},
    "client_secret": {"type": "string", "maxlength": MAX_CLIENT_SECRET_CHARS},
}
TOKEN_RESPONSE = {
    "access_token": {"type": "string"},
    "token_type": {"type": "string", "allowed": ["Bearer"]},
    "expires_in": {"type": "integer"},
    "scope": {"type": "string"},
    "issued_token_type": {"type": "string", "allowed": [ACCESS_TOKEN_TYPE]},
}


def _form(req: falcon.Request) -> dict[str, str]:
    media = (req.content_type or "").split(";", 1)[0].strip().lower()
    if media != FORM:
        raise OAuthError("invalid_request", f"The body must be {FORM}.")
    length = req.content_length
    if length is not None and length > MAX_FORM_BYTES:
        raise OAuthError("invalid_request", f"A token request's form is limited to {MAX_FORM_BYTES} bytes.")
    try:
        raw = read_body(req, MAX_FORM_BYTES)
    except errors.Problem as exc:  # chunked past the limit, or cut short: answered the OAuth way
        raise OAuthError("invalid_request", exc.description or "The form body cannot be read.") from None
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
        if len(header) > MAX_AUTHORIZATION_CHARS:
            raise OAuthError("invalid_client", "The Authorization header is longer than any client's credentials.", 401)
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
    def __init__(
        self,
        issuer: Issuer,
        exchange: TokenExchange,
        events: EventPublisher,
        redis: RedisProvider,
        failures: AuthFailures,
    ) -> None:
        self._issuer = issuer
        self._exchange = exchange
        self._events = events
        self._redis = redis
        self._failures = failures

    @endpoint(
        "Issue an access token (client credentials, or token exchange for a person)",
        scopes=PUBLIC,
        body=TOKEN_REQUEST,
        media=FORM,
        response=TOKEN_RESPONSE,
        description="Form-encoded. `grant_type=client_credentials` (RFC 6749 section 4.4), or "
        f"`grant_type={GRANT_TYPE}` (RFC 8693) with a trusted provider's `subject_token` of a person: the "
        "client must hold the token-exchange grant; the token's `sub` is the member, `act` the client, and "
        "its scopes are those asked for (all if none) within the member's role and the client's scopes; the "
        "answer adds `issued_token_type`. Client authentication by HTTP Basic or client_id/client_secret. "
        f"The form is limited to {MAX_FORM_BYTES} bytes and each field to its maxLength. Errors are RFC 6749 "
        "JSON: invalid_client 401, invalid_grant, invalid_scope, unauthorized_client, unsupported_grant_type, "
        "invalid_request 400; temporarily_unavailable 503 while a provider's keys cannot be fetched. "
        "Extension: an exchange by a platform client without `tenant_id` for a person in several tenants is "
        "invalid_request with `tenants`: `[{id, name, role, status}]`, the tenants to choose from.",
        responses={400: "RFC 6749 error", 401: "invalid_client", 503: "temporarily_unavailable"},
    )
    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.set_header("Cache-Control", "no-store")
        resp.set_header("Pragma", "no-cache")
        client_id: str | None = None
        grant: str | None = None
        try:
            form = _form(req)
            grant = form.get("grant_type")
            if not grant:
                raise OAuthError("invalid_request", "grant_type is required.")
            if len(grant) > MAX_GRANT_TYPE_CHARS:
                raise OAuthError("invalid_request", f"grant_type is limited to {MAX_GRANT_TYPE_CHARS} characters.")
            if grant not in GRANT_TYPES:
                raise OAuthError("unsupported_grant_type", f"Supported grant types: {', '.join(GRANT_TYPES)}.")
            client_id, secret = _credentials(req, form)
            wait = self._failures.retry_after(client_id, client_ip(req))
            if wait is not None:
                raise OAuthError(
                    "slow_down",
                    f"Too many failed client authentications; try again in {wait} s.",
                    429,
                    retry_after=wait,
                )
            if grant == GRANT_TYPE:
                self._exchange_for_person(req, resp, form, client_id, secret)
                return
            token = self._issuer.issue(client_id, secret, form.get("scope"), form.get("tenant_id") or None)
        except OAuthError as exc:
            self._deny(req, resp, exc, client_id, grant)
            return
        except ProvidersDown as exc:
            self._unavailable(req, resp, str(exc), client_id)
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
        event = new_event("token.issued", claims.get("tenant_id"), data, ctx)
        self._redis.replicated(self._events.publish(self._redis.client, event))
        resp.media = {
            "access_token": token.access_token,
            "token_type": "Bearer",
            "expires_in": token.expires_in,
            "scope": token.scope,
        }

    def _exchange_for_person(
        self, req: falcon.Request, resp: falcon.Response, form: dict[str, str], client_id: str, secret: str
    ) -> None:
        for name in ("subject_token_type", "requested_token_type"):
            if len(form.get(name) or "") > MAX_TOKEN_TYPE_CHARS:
                raise OAuthError("invalid_request", f"{name} is limited to {MAX_TOKEN_TYPE_CHARS} characters.")
        if len(form.get("subject_token") or "") > MAX_SUBJECT_TOKEN_CHARS:
            raise OAuthError("invalid_grant", f"No subject token is longer than {MAX_SUBJECT_TOKEN_CHARS} characters.")
        self._issuer.check_lengths(client_id, secret, form.get("scope"), form.get("tenant_id") or None)
        client = self._issuer.authenticate(client_id, secret)
        ctx = self._context(req, client_id)
        done = self._exchange.exchange(client, form, ctx)
        token = done.token
        claims = token.claims
        data = {
            "client_id": client_id,
            "member_id": claims["sub"],
            "issuer": done.issuer,
            "scope": token.scope,
            "jti": claims["jti"],
            "expires_at": claims["exp"],
            "platform": claims.get("tenant_id") is None,
        }
        person = {"type": "user", "id": claims["sub"], "client_id": client_id}
        person_ctx = EventContext(actor=person, request_id=ctx.request_id, ip=ctx.ip, user_agent=ctx.user_agent)
        event = new_event("token.exchanged", claims.get("tenant_id"), data, person_ctx)
        self._redis.replicated(self._events.publish(self._redis.client, event))
        resp.media = {
            "access_token": token.access_token,
            "issued_token_type": ACCESS_TOKEN_TYPE,
            "token_type": "Bearer",
            "expires_in": token.expires_in,
            "scope": token.scope,
        }

    def _unavailable(self, req: falcon.Request, resp: falcon.Response, why: str, client_id: str | None) -> None:
        """A provider's keys cannot be had: the exchange may work in a moment (RFC 6749 JSON, 503)."""
        resp.status = 503
        resp.set_header("Retry-After", "5")
        resp.media = {"error": "temporarily_unavailable", "error_description": truncated(why, MAX_REASON_CHARS)}

    def _deny(
        self,
        req: falcon.Request,
        resp: falcon.Response,
        exc: OAuthError,
        client_id: str | None,
        grant: str | None = None,
    ) -> None:
        # The claimed client id is whatever the caller sent (it may be no client's): cut to
        # the longest a client id can be, so the event stays small whatever arrived.
        claimed = truncated(client_id, MAX_CLIENT_ID_CHARS) if client_id else client_id
        reason = truncated(exc.description, MAX_REASON_CHARS)
        data: dict[str, Any] = {"client_id": claimed, "error": exc.error, "reason": reason}
        if grant in GRANT_TYPES:
            data["grant_type"] = grant
        if exc.candidates:
            # Which memberships were revealed, and to which client, is on the record.
            data["tenants"] = [c["id"] for c in exc.candidates[:MAX_LISTED_IN_EVENT]]
            data["tenant_count"] = len(exc.candidates)
        event = new_event("token.denied", exc.tenant_id, data, self._context(req, claimed))
        self._redis.replicated(self._events.publish(self._redis.client, event))
        resp.status = exc.status
        if exc.status == 401:
            resp.set_header("WWW-Authenticate", 'Basic realm="aerie"')
        if exc.error == "invalid_client":
            self._failures.failed(claimed, client_ip(req))
        if exc.retry_after is not None:
            resp.set_header("Retry-After", str(exc.retry_after))
        resp.media = {"error": exc.error, "error_description": reason}
        if exc.candidates:
            resp.media["tenants"] = exc.candidates

    @staticmethod
    def _context(req: falcon.Request, client_id: str | None) -> EventContext:
        """The request's context with the (claimed) client as actor; new_event bounds the rest."""
        ctx = EventContext.from_request(req)
        actor = {"type": "client", "id": client_id, "client_id": client_id} if client_id else None
        return EventContext(actor=actor, request_id=ctx.request_id, ip=ctx.ip, user_agent=ctx.user_agent)
