"""The signed cookies the console keeps in the browser: the session, a sign-in under way, a pick.

All are made with ``itsdangerous`` (signed and timestamped, not encrypted), ``HttpOnly``,
``SameSite=Lax`` and ``Secure`` outside localhost. The session holds only what the console
cannot do without: the person's Aerie access token, when it expires, the CSRF token its
forms carry, and whether the person chose their tenant (so the page offers to switch). Who
the person is (email, role, tenant) is read from that token's claims when a page needs it;
the services verify the token on every call, so the console never trusts a claim for
anything but what it shows.

A person in several tenants picks one after the provider's round trip: their ID token is
kept for that step alone, in a cookie scoped to :data:`PICK_PATH` that lives at most
:data:`PICK_MAX_AGE_S` (never past the ID token's own expiry) and is dropped once the
exchange for the chosen tenant is done. It is the person's own credential, in their own
browser, and lets the console ask for a token with no secret of its own acting for them;
kept any longer, it would let the console mint tokens after the person left, and it could
not be used for switching later anyway, since ID tokens are short-lived.
"""

from __future__ import annotations

import hmac
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import falcon
import jwt
from itsdangerous import BadSignature, URLSafeTimedSerializer

__all__ = ["PICK_COOKIE", "PICK_PATH", "SESSION_COOKIE", "SIGN_IN_COOKIE", "Cookies", "Pick", "Session", "SignIn"]

SESSION_COOKIE = "aerie_console"
SIGN_IN_COOKIE = "aerie_console_sign_in"
PICK_COOKIE = "aerie_console_pick"
#: Where the tenant picker lives: the only path the browser sends the pick cookie to.
PICK_PATH = "/sign-in/tenant"
#: A tenant not picked within this many seconds means signing in again.
PICK_MAX_AGE_S = 300
#: A sign-in not finished within this many seconds must start again.
SIGN_IN_MAX_AGE_S = 600
#: No session outlives a day, whatever the token says.
SESSION_MAX_AGE_S = 86400


@dataclass(frozen=True)
class Session:
    """A signed-in person: their Aerie token, its expiry and the CSRF token of their forms."""

    access_token: str
    expires_at: float
    csrf: str
    #: The person chose this tenant among several: the header offers to switch.
    chose_tenant: bool = False

    def expired(self, now: float | None = None) -> bool:
        # A few seconds early, so a page is not half-built when the token lapses.
        return (now if now is not None else time.time()) >= self.expires_at - 5

    @cached_property
    def claims(self) -> Mapping[str, Any]:
        """The token's claims, unverified: for showing and routing only (the services verify).

        Decoded once a request: a page asks for them (scopes, role, language) half a dozen times.
        """
        try:
            return jwt.decode(self.access_token, options={"verify_signature": False})
        except jwt.PyJWTError:
            return {}

    @property
    def scopes(self) -> frozenset[str]:
        return frozenset(str(self.claims.get("scope", "")).split())

    @property
    def tenant_id(self) -> str | None:
        value = self.claims.get("tenant_id")
        return value if isinstance(value, str) else None

    @property
    def is_platform(self) -> bool:
        return self.tenant_id is None

    def can(self, scope: str) -> bool:
        """``platform:admin`` grants every scope, as in the services."""
        return scope in self.scopes or "platform:admin" in self.scopes

    def csrf_matches(self, sent: str | None) -> bool:
        return bool(sent) and hmac.compare_digest(sent.encode(), self.csrf.encode())


@dataclass(frozen=True)
class SignIn:
    """What the callback checks a provider's answer against: state, nonce, PKCE verifier, next.

    ``tenant``: the tenant to exchange for, chosen before (a person in several signing in again).
    """

    state: str
    nonce: str
    verifier: str
    next: str
    tenant: str | None = None

    @classmethod
    def new(cls, next_path: str, tenant: str | None = None) -> SignIn:
        return cls(secrets.token_urlsafe(24), secrets.token_urlsafe(24), secrets.token_urlsafe(48), next_path, tenant)


@dataclass(frozen=True)
class Pick:
    """A person in several tenants, between the provider's answer and their choice."""

    id_token: str
    next: str
    csrf: str

    def csrf_matches(self, sent: str | None) -> bool:
        return bool(sent) and hmac.compare_digest(sent.encode(), self.csrf.encode())


class Cookies:
    def __init__(self, key: bytes, *, secure: bool) -> None:
        self._session = URLSafeTimedSerializer(key, salt="aerie-console-session")
        self._sign_in = URLSafeTimedSerializer(key, salt="aerie-console-sign-in")
        self._pick = URLSafeTimedSerializer(key, salt="aerie-console-pick")
        self.secure = secure

    def _set(self, resp: falcon.Response, name: str, value: str, max_age: int, path: str = "/") -> None:
        resp.set_cookie(name, value, max_age=max_age, path=path, secure=self.secure, http_only=True, same_site="Lax")

    def _clear(self, resp: falcon.Response, name: str, path: str = "/") -> None:
        # An empty cookie that expires now: Falcon 4.0's unset_cookie takes no same_site.
        self._set(resp, name, "", 0, path)

    # The session ---------------------------------------------------------------------

    def session(self, req: falcon.Request) -> Session | None:
        """The request's session when its signature holds and it is well formed (expired or not)."""
        raw = req.get_cookie_values(SESSION_COOKIE)
        if not raw:
            return None
        try:
            data = self._session.loads(raw[0], max_age=SESSION_MAX_AGE_S)
            return Session(str(data["t"]), float(data["e"]), str(data["c"]), data.get("m") is True)
        except (BadSignature, KeyError, TypeError, ValueError):
            return None

    def start_session(
        self, resp: falcon.Response, access_token: str, expires_in: int, *, chose_tenant: bool = False
    ) -> Session:
        session = Session(access_token, time.time() + expires_in, secrets.token_urlsafe(32), chose_tenant)
        data: dict[str, Any] = {"t": session.access_token, "e": session.expires_at, "c": session.csrf}
        if chose_tenant:
            data["m"] = True
        value = self._session.dumps(data)
        self._set(resp, SESSION_COOKIE, value, min(SESSION_MAX_AGE_S, max(expires_in, 60)))
        return session

    def end_session(self, resp: falcon.Response) -> None:
        self._clear(resp, SESSION_COOKIE)

    # A sign-in under way --------------------------------------------------------------

    def sign_in(self, req: falcon.Request) -> SignIn | None:
        raw = req.get_cookie_values(SIGN_IN_COOKIE)
        if not raw:
            return None
        try:
            data = self._sign_in.loads(raw[0], max_age=SIGN_IN_MAX_AGE_S)
            tenant = data.get("t")
            return SignIn(
                str(data["s"]),
                str(data["n"]),
                str(data["v"]),
                str(data["x"]),
                tenant if isinstance(tenant, str) else None,
            )
        except (BadSignature, KeyError, TypeError, ValueError):
            return None

    def begin_sign_in(self, resp: falcon.Response, flow: SignIn) -> None:
        data = {"s": flow.state, "n": flow.nonce, "v": flow.verifier, "x": flow.next}
        if flow.tenant:
            data["t"] = flow.tenant
        self._set(resp, SIGN_IN_COOKIE, self._sign_in.dumps(data), SIGN_IN_MAX_AGE_S)

    def end_sign_in(self, resp: falcon.Response) -> None:
        self._clear(resp, SIGN_IN_COOKIE)

    # A tenant to pick -------------------------------------------------------------------

    def pick(self, req: falcon.Request) -> Pick | None:
        raw = req.get_cookie_values(PICK_COOKIE)
        if not raw:
            return None
        try:
            data = self._pick.loads(raw[0], max_age=PICK_MAX_AGE_S)
            return Pick(str(data["i"]), str(data["x"]), str(data["c"]))
        except (BadSignature, KeyError, TypeError, ValueError):
            return None

    def begin_pick(self, resp: falcon.Response, id_token: str, next_path: str) -> None:
        """The ID token, kept for the picker until it or the token expires, whichever is first."""
        try:
            expires = float(jwt.decode(id_token, options={"verify_signature": False})["exp"])
        except (jwt.PyJWTError, KeyError, TypeError, ValueError):
            expires = time.time() + PICK_MAX_AGE_S
        max_age = max(1, min(PICK_MAX_AGE_S, int(expires - time.time())))
        value = self._pick.dumps({"i": id_token, "x": next_path, "c": secrets.token_urlsafe(32)})
        self._set(resp, PICK_COOKIE, value, max_age, PICK_PATH)

    def end_pick(self, resp: falcon.Response) -> None:
        self._clear(resp, PICK_COOKIE, PICK_PATH)
