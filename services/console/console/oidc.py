"""Signing a person in: authorization code with PKCE at the provider, then the token exchange.

1. :meth:`SignInFlow.authorization_url`: the provider's authorization endpoint (from its
   discovery document) with ``state``, ``nonce`` and an S256 ``code_challenge``.
2. :meth:`SignInFlow.finish`: the code is redeemed at the provider's token endpoint with the
   PKCE verifier; the ID token must name the provider (``iss``), the console (``aud``) and
   this sign-in (``nonce``). Its signature is checked by the tenants service in the next step;
   the console received it straight from the provider's token endpoint over the connection it
   opened, which OpenID Connect Core (3.1.3.7) accepts in place of checking it twice.
3. The ID token is exchanged (RFC 8693) at tenants' ``/v1/oauth/token`` by the console's
   client, which holds the token-exchange grant only: the person gets a token with exactly
   their role's scopes. A person in several tenants is refused with the list of them
   (:class:`ChooseTenant`); the console asks them which, then exchanges for that one.

Every refusal is a :class:`SignInFailed` whose message a person may read.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import threading
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import jwt
import requests

from aerie.i18n import msg
from console.config import ConsoleConfig
from console.session import SignIn

__all__ = ["ChooseTenant", "Exchanged", "SignInFailed", "SignInFlow", "TenantChoice"]

log = logging.getLogger("aerie.console.sign_in")

TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"  # noqa: S105 (a URN)
ID_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:id_token"  # noqa: S105 (a URN)
#: The provider's discovery document is fetched again after this long.
DISCOVERY_TTL_S = 3600
#: What the console shows of a several-tenants refusal's list, whatever the answer holds.
MAX_CHOICES = 100
MAX_CHOICE_CHARS = 200


class SignInFailed(Exception):
    """The sign-in cannot finish; ``detail`` is for the person (a :func:`~aerie.i18n.msg`)."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


@dataclass(frozen=True)
class Exchanged:
    access_token: str
    expires_in: int


@dataclass(frozen=True)
class TenantChoice:
    """One tenant the person may pick: as the tenants service listed it."""

    id: str
    name: str
    role: str
    status: str


class ChooseTenant(Exception):
    """The person belongs to several tenants: which one is theirs to say."""

    def __init__(self, choices: list[TenantChoice]) -> None:
        super().__init__("tenant_id is required")
        self.choices = choices


def _choices(listed: Any) -> list[TenantChoice]:
    """The several-tenants refusal's ``tenants``, the well-formed entries only."""
    if not isinstance(listed, list):
        return []
    found = []
    for item in listed[:MAX_CHOICES]:
        if not isinstance(item, dict):
            continue
        fields = [item.get(name) for name in ("id", "name", "role", "status")]
        if all(isinstance(f, str) and 0 < len(f) <= MAX_CHOICE_CHARS for f in fields):
            found.append(TenantChoice(*fields))
    return found


def challenge(verifier: str) -> str:
    """The S256 code challenge of a PKCE verifier (RFC 7636, 4.2)."""
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()


class SignInFlow:
    def __init__(self, config: ConsoleConfig, http: requests.Session | None = None) -> None:
        self._config = config
        self._http = http or requests.Session()
        self._lock = threading.Lock()
        self._discovery: tuple[float, dict[str, Any]] | None = None

    def discovery(self) -> dict[str, Any]:
        with self._lock:
            cached = self._discovery
            if cached is not None and time.monotonic() - cached[0] < DISCOVERY_TTL_S:
                return cached[1]
        url = f"{self._config.oidc_issuer}/.well-known/openid-configuration"
        try:
            resp = self._http.get(url, timeout=self._config.timeout_s)
            document = resp.json() if resp.status_code == 200 else None
        except (requests.RequestException, ValueError):
            document = None
        if not isinstance(document, dict) or document.get("issuer", "").rstrip("/") != self._config.oidc_issuer:
            raise SignInFailed(msg("The sign-in provider cannot be reached just now. Try again in a moment."))
        with self._lock:
            self._discovery = (time.monotonic(), document)
        return document

    def authorization_url(self, flow: SignIn) -> str:
        params = {
            "response_type": "code",
            "client_id": self._config.oidc_client_id,
            "redirect_uri": self._config.redirect_uri,
            "scope": "openid email profile",
            "state": flow.state,
            "nonce": flow.nonce,
            "code_challenge": challenge(flow.verifier),
            "code_challenge_method": "S256",
        }
        return f"{self.discovery()['authorization_endpoint']}?{urlencode(params)}"

    def finish(self, flow: SignIn, code: str) -> Exchanged:
        """The code redeemed and exchanged in one go (for the tenant the sign-in asked for, if any)."""
        return self.exchange(self.redeem(flow, code), flow.tenant, fall_back=True)

    def redeem(self, flow: SignIn, code: str) -> str:
        """The provider's ID token for ``code``, checked against this sign-in."""
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": self._config.redirect_uri,
            "client_id": self._config.oidc_client_id,
            "code_verifier": flow.verifier,
        }
        auth = None
        if self._config.oidc_client_secret:
            auth = (self._config.oidc_client_id, self._config.oidc_client_secret)
        try:
            resp = self._http.post(
                self.discovery()["token_endpoint"], data=form, auth=auth, timeout=self._config.timeout_s
            )
            body = resp.json()
        except (requests.RequestException, ValueError):
            raise SignInFailed(msg("The sign-in provider did not answer. Try again.")) from None
        id_token = body.get("id_token") if isinstance(body, dict) and resp.status_code == 200 else None
        if not isinstance(id_token, str):
            error = body.get("error") if isinstance(body, dict) else None
            log.warning("the provider refused a code", extra={"status": resp.status_code, "error": error})
            raise SignInFailed(msg("The sign-in provider refused the sign-in. Start again."))
        try:
            claims = jwt.decode(id_token, options={"verify_signature": False})
        except jwt.PyJWTError:
            raise SignInFailed(msg("The sign-in provider answered something that is not an ID token.")) from None
        audience = claims.get("aud")
        audiences = audience if isinstance(audience, list) else [audience]
        if str(claims.get("iss", "")).rstrip("/") != self._config.oidc_issuer:
            raise SignInFailed(msg("The ID token comes from another provider."))
        if self._config.oidc_client_id not in audiences:
            raise SignInFailed(msg("The ID token is meant for another application."))
        if claims.get("nonce") != flow.nonce:
            raise SignInFailed(msg("The ID token answers another sign-in. Start again."))
        return id_token

    def exchange(self, id_token: str, tenant_id: str | None = None, *, fall_back: bool = False) -> Exchanged:
        """An Aerie token for the person (in ``tenant_id``), or :class:`ChooseTenant`.

        ``fall_back``: a tenant remembered from before that is no longer theirs is not an
        error; the person is exchanged as if none were asked (straight in, or a choice).
        """
        form = {
            "grant_type": TOKEN_EXCHANGE,
            "subject_token": id_token,
            "subject_token_type": ID_TOKEN_TYPE,
        }
        if tenant_id:
            form["tenant_id"] = tenant_id
        try:
            resp = self._http.post(
                f"{self._config.tenants_url}/v1/oauth/token",
                data=form,
                auth=(self._config.client_id, self._config.client_secret),
                timeout=self._config.timeout_s,
            )
            body = resp.json()
        except (requests.RequestException, ValueError):
            raise SignInFailed(msg("Aerie could not be reached to finish the sign-in. Try again.")) from None
        if resp.status_code == 200 and isinstance(body, dict) and isinstance(body.get("access_token"), str):
            return Exchanged(body["access_token"], int(body.get("expires_in") or 300))
        error = body.get("error") if isinstance(body, dict) else None
        if error == "invalid_grant" and tenant_id and fall_back:
            return self.exchange(id_token)
        if error == "invalid_request" and not tenant_id and isinstance(body, dict):
            choices = _choices(body.get("tenants"))
            if choices:
                raise ChooseTenant(choices)
        if error == "invalid_grant" and not tenant_id:
            raise SignInFailed(msg("You signed in, but you are not a member of any tenant or of the platform."))
        description = body.get("error_description") if isinstance(body, dict) else None
        code = error or resp.status_code
        if description:
            raise SignInFailed(msg("Aerie refused the sign-in (%(code)s): %(reason)s", code=code, reason=description))
        raise SignInFailed(msg("Aerie refused the sign-in (%(code)s) and gave no reason.", code=code))
