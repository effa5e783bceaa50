"""Access-token verification: what every service does with ``Authorization: Bearer``.

The rules (docs/api.md, "Tokens and scopes"): RS256 or ES256 only, the key chosen by ``kid``
from the tenants service's JWKS, ``iss`` and ``aud`` checked, ``exp``, ``iat``, ``iss``,
``aud``, ``sub`` and ``jti`` required, 30 s leeway. Tokens must carry the ``at+jwt`` type
of RFC 9068, so refresh or ID tokens minted by some other issuer with the same keys are
refused. A verified token is cached until its ``exp`` so the hot path does no RSA work
twice; the revocation list is consulted on every request, cached or not.
"""

from __future__ import annotations

import functools
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Protocol

import jwt

from aerie.auth.principal import Principal
from aerie.i18n import msg

__all__ = [
    "ACCESS_TOKEN_TYPE",
    "ALLOWED_ALGORITHMS",
    "InvalidToken",
    "JWKSKeySource",
    "KeySource",
    "KeysUnavailable",
    "StaticKeySource",
    "TokenVerifier",
]

ALLOWED_ALGORITHMS = ("RS256", "ES256")
ACCESS_TOKEN_TYPE = "at+jwt"  # noqa: S105 (a media type, not a secret)
REQUIRED_CLAIMS = ["exp", "iat", "iss", "aud", "sub", "jti"]


class InvalidToken(Exception):
    """The token is not one we accept; the message is safe to show to the caller."""


class KeysUnavailable(Exception):
    """The JWKS could not be fetched, so no token can be checked right now."""


class KeySource(Protocol):
    def key_for(self, kid: str) -> jwt.PyJWK | None:
        """The verification key with this ``kid``, or None if the issuer has none."""
        ...


class StaticKeySource:
    """Keys known in-process, from a JWK Set document (the tenants service's own keys)."""

    def __init__(self, jwks: Mapping[str, Any]) -> None:
        self._all = [k for k in jwt.PyJWKSet.from_dict(dict(jwks)).keys if k.public_key_use in ("sig", None)]
        self._keys = {k.key_id: k for k in self._all if k.key_id}

    def key_for(self, kid: str) -> jwt.PyJWK | None:
        return self._keys.get(kid)

    def sole_key(self) -> jwt.PyJWK | None:
        """The one signing key, when the set has exactly one (see :meth:`JWKSKeySource.sole_key`)."""
        return self._all[0] if len(self._all) == 1 else None


class JWKSKeySource:
    """Keys fetched from the issuer's JWKS URL, cached, refreshed on an unknown ``kid``.

    PyJWKClient refreshes at most once per ``cooldown`` for unknown kids, so a stream of
    forged kids cannot hammer the issuer. A ``jku`` header in a token is never followed:
    the URL comes from configuration only.

    One thread fetches at a time. While a key set is known, the others wait at most
    ``wait_s`` for it, as calls to a silent peer do (:mod:`aerie_client.http`), and then answer
    from the known set. A new worker knows none: there the fetch in flight is the only way to
    any key, so the others wait for its outcome (at most its ``timeout``) and share it. A
    failed fetch is not repeated by the threads that waited on it; each answers 503 at once.
    Either way no thread waits behind more than one fetch.

    When the issuer cannot be reached (or another thread is still trying), the key set last
    fetched still answers for ``stale_s`` (a day) after it expired. Without that, an outage
    of tenants longer than ``lifespan`` would turn every token a worker had not yet seen
    into a 503, although the keys had not changed; and while tenants is down no new key can
    be published anyway. A ``kid`` the stale set lacks is unavailable (503), not invalid.
    """

    def __init__(
        self,
        url: str,
        *,
        lifespan: float = 300,
        timeout: float = 2.0,
        cooldown: float = 10.0,
        wait_s: float = 0.5,
        stale_s: float = 86_400,
    ) -> None:
        self._client = jwt.PyJWKClient(
            url, cache_keys=False, lifespan=lifespan, timeout=timeout, cooldown_duration=cooldown
        )
        self._lock = threading.Lock()
        self._timeout = timeout
        self._wait_s = wait_s
        self._stale_s = stale_s
        self._failed_at: float | None = None  # monotonic time of the last fetch that failed

    def key_for(self, kid: str) -> jwt.PyJWK | None:
        known = self._known_set() is not None
        asked_at = time.monotonic()
        # The fetch's own timeout plus a margin for the holder to take and release the lock.
        if not self._lock.acquire(timeout=self._wait_s if known else self._timeout + self._wait_s):
            return self._last_known(kid, "another request is fetching the issuer's keys")
        try:
            failed_at = self._failed_at
            if not known and failed_at is not None and failed_at >= asked_at:
                raise KeysUnavailable("the issuer's keys could not be fetched just now")
            key = self._client.get_signing_key(kid)
        except jwt.PyJWKClientConnectionError as exc:
            self._failed_at = time.monotonic()
            return self._last_known(kid, str(exc))
        except (ValueError, jwt.PyJWKSetError):
            # The issuer answered something that is not a usable JWK Set (not JSON, or no key
            # PyJWT can use): like an outage, the keys known so far go on answering.
            self._failed_at = time.monotonic()
            return self._last_known(kid, "the issuer's JWKS is not a usable JWK Set")
        except jwt.PyJWKClientError:
            return None
        finally:
            self._lock.release()
        return key

    def sole_key(self) -> jwt.PyJWK | None:
        """The issuer's one signing key, when it publishes exactly one; else None.

        OpenID Connect Core 10.1 lets a token name no ``kid`` when the JWK Set holds a single
        key (some providers, the development one among them, do that). Fetched and kept
        like :meth:`key_for`'s keys; while the issuer is down, the last set answers.
        """
        try:
            with self._lock:
                keys = self._client.get_signing_keys()
        except (jwt.PyJWKClientConnectionError, ValueError, jwt.PyJWKSetError):
            known = self._known_set()
            if known is None:
                raise KeysUnavailable("the issuer's keys could not be fetched just now") from None
            keys = [k for k in known.keys if k.public_key_use in ("sig", None)]
        except jwt.PyJWKClientError:
            return None
        return keys[0] if len(keys) == 1 else None

    def _known_set(self) -> jwt.PyJWKSet | None:
        """The last key set fetched, if not older than ``stale_s``."""
        cache = self._client.jwk_set_cache
        cached = cache.jwk_set_with_timestamp if cache is not None else None
        if cached is not None and time.monotonic() - cached.get_timestamp() <= self._stale_s:
            return cached.get_jwk_set()
        return None

    def _last_known(self, kid: str, why: str) -> jwt.PyJWK:
        """``kid`` from the last key set fetched, if not older than ``stale_s``; else 503."""
        known = self._known_set()
        for key in known.keys if known is not None else ():
            if key.key_id == kid and key.public_key_use in ("sig", None):
                return key
        raise KeysUnavailable(why)


class TokenVerifier:
    def __init__(
        self,
        keys: KeySource,
        *,
        issuer: str,
        audience: str = "aerie",
        leeway: int = 30,
        is_revoked: Callable[[Principal], bool] | None = None,
        cache_size: int = 10_000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._keys = keys
        self._issuer = issuer
        self._audience = audience
        self._leeway = leeway
        self._is_revoked = is_revoked or (lambda _p: False)
        self._clock = clock
        # Tokens that verified, by their text. The C ``lru_cache`` is thread-safe without a
        # lock of ours and costs well under a microsecond; a TLRUCache behind a lock cost ~5%
        # of a whole read request. Expiry is checked on every hit instead of by the cache:
        # a token's ``exp`` never changes, so a hit past it is simply an expired token.
        # Refusals raise, and lru_cache keeps no exceptions: a bad token is checked each time.
        self._verified: Callable[[str], Principal] = functools.lru_cache(maxsize=cache_size)(
            self._verify_signature_and_claims
        )

    def verify(self, token: str) -> Principal:
        principal = self._verified(token)
        # PyJWT's own rule: expired once now - leeway reaches exp.
        if self._clock() - self._leeway >= principal.expires_at:
            raise InvalidToken(msg("The token has expired."))
        if self._is_revoked(principal):
            if principal.is_user:
                raise InvalidToken(
                    msg("The token was revoked: its client, or the member's role or membership, changed.")
                )
            raise InvalidToken(msg("The token's client has been revoked."))
        return principal

    def _verify_signature_and_claims(self, token: str) -> Principal:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise InvalidToken(msg("The token is not a well-formed JWT.")) from None
        alg = header.get("alg")
        if alg not in ALLOWED_ALGORITHMS:
            raise InvalidToken(
                msg("Tokens must be signed with one of %(algorithms)s.", algorithms=", ".join(ALLOWED_ALGORITHMS))
            )
        if str(header.get("typ", "")).lower() != ACCESS_TOKEN_TYPE:
            raise InvalidToken(msg("The token is not an access token (typ at+jwt)."))
        if "jwk" in header or "jku" in header or "x5u" in header:
            raise InvalidToken(msg("Tokens may not name their own key."))
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise InvalidToken(msg("The token has no key id (kid)."))
        key = self._keys.key_for(kid)
        if key is None:
            raise InvalidToken(msg("The token was signed with an unknown key."))
        if key.algorithm_name != alg:
            raise InvalidToken(msg("The token's algorithm does not match its key."))
        try:
            claims = jwt.decode(
                token,
                key=key.key,
                algorithms=[alg],
                audience=self._audience,
                issuer=self._issuer,
                leeway=self._leeway,
                options={"require": REQUIRED_CLAIMS, "verify_signature": True},
            )
        except jwt.ExpiredSignatureError:
            raise InvalidToken(msg("The token has expired.")) from None
        except jwt.ImmatureSignatureError:
            raise InvalidToken(msg("The token is not valid yet.")) from None
        except jwt.InvalidAudienceError:
            raise InvalidToken(msg("The token is not meant for this audience.")) from None
        except jwt.InvalidIssuerError:
            raise InvalidToken(msg("The token comes from an unknown issuer.")) from None
        except jwt.MissingRequiredClaimError as exc:
            raise InvalidToken(msg("The token lacks the %(claim)r claim.", claim=exc.claim)) from None
        except jwt.InvalidSignatureError:
            raise InvalidToken(msg("The token's signature does not verify.")) from None
        except jwt.PyJWTError:
            raise InvalidToken(msg("The token could not be verified.")) from None
        return _principal_from(claims)


#: What ids in a token look like. They become parts of Redis keys, log lines and events in
#: every service, so a correctly signed token naming ``*``, ``../x`` or a megabyte is refused
#: here rather than trusted downstream. Tenant ids are ``ten_<ULID>``; client ids and
#: subjects are ours (``cli_<ULID>``, ``usr_<ULID>``) or an operator's (``svc-projects``).
TENANT_ID_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")
SUBJECT_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}")
TOKEN_ID_RE = re.compile(r"[A-Za-z0-9._:-]{1,128}")
MAX_SCOPE_LENGTH = 4096
#: A person's token: ``sub`` is the member id, ``role`` one of the tenants service's roles,
#: ``language`` a BCP 47 tag like the tenants' own.
USER_ID_RE = re.compile(r"usr_[A-Za-z0-9]{1,60}")
ROLE_RE = re.compile(r"[a-z][a-z-]{0,31}")
LANGUAGE_RE = re.compile(r"[a-z]{2,3}(-[A-Za-z0-9]{2,8}){0,4}")
MAX_EMAIL_LENGTH = 320


def _principal_from(claims: Mapping[str, Any]) -> Principal:
    def text(name: str, shape: re.Pattern[str], required: bool = True) -> str | None:
        value = claims.get(name)
        if value is None and not required:
            return None
        if not isinstance(value, str) or not value:
            raise InvalidToken(msg("The token's %(claim)r claim must be a non-empty string.", claim=name))
        if not shape.fullmatch(value):
            raise InvalidToken(msg("The token's %(claim)r claim is not an id Aerie issues.", claim=name))
        return value

    scope = claims.get("scope", "")
    if not isinstance(scope, str) or len(scope) > MAX_SCOPE_LENGTH:
        raise InvalidToken(msg("The token's 'scope' claim must be a space-separated string."))
    exp = claims["exp"]
    if not isinstance(exp, int | float):
        raise InvalidToken(msg("The token's 'exp' claim must be a number."))
    subject = text("sub", SUBJECT_RE)
    token_id = text("jti", TOKEN_ID_RE)
    assert subject is not None and token_id is not None
    client_id = text("client_id", SUBJECT_RE, required=False) or subject
    tenant_id = text("tenant_id", TENANT_ID_RE, required=False)
    scopes = frozenset(_split(scope))
    act = claims.get("act")
    if act is None:
        return Principal(subject, client_id, tenant_id, scopes, token_id, int(exp))
    # A person's token (RFC 8693): ``act`` names the app, which must be the token's client.
    if not isinstance(act, Mapping) or act.get("sub") != client_id or "client_id" not in claims:
        raise InvalidToken(msg("The token's 'act' claim must name its client."))
    if not USER_ID_RE.fullmatch(subject):
        raise InvalidToken(msg("The token's 'sub' claim is not a member id."))
    version = claims.get("member_version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise InvalidToken(msg("The token's 'member_version' claim must be a positive integer."))
    return Principal(
        subject,
        client_id,
        tenant_id,
        scopes,
        token_id,
        int(exp),
        kind="user",
        role=text("role", ROLE_RE),
        email=_bounded_text(claims, "email", MAX_EMAIL_LENGTH),
        language=text("language", LANGUAGE_RE, required=False),
        member_version=version,
    )


def _bounded_text(claims: Mapping[str, Any], name: str, limit: int) -> str | None:
    value = claims.get(name)
    if value is None:
        return None
    if not isinstance(value, str) or not 0 < len(value) <= limit:
        raise InvalidToken(
            msg(
                "The token's %(claim)r claim must be a string of at most %(limit)d characters.", claim=name, limit=limit
            )
        )
    return value


def _split(scope: str) -> Iterable[str]:
    return (s for s in scope.split(" ") if s)
