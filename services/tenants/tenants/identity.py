"""Who a person is, by the word of an OpenID Connect provider the platform trusts.

The token exchange (docs/api.md, "people") hands the tenants service a provider's ID token
(or another JWT it signed); :meth:`IdentityProviders.verify` turns it into an
:class:`Identity` or refuses it. The rules, each closing a known hole in JWT handling
(RFC 8725):

* The provider is picked by the token's ``iss`` among the configured ones, compared
  exactly; its keys come from its discovery document or configured ``jwks_uri`` only:
  a ``jku``, ``jwk`` or ``x5u`` header is refused, never followed.
* A token without ``kid`` is checked with the provider's key only when it publishes exactly
  one (OpenID Connect Core 10.1).
* RS256 and ES256 only, and the header's ``alg`` must be the key's: ``none``, and an HMAC
  token keyed with the provider's public key, are refused.
* ``iss``, ``aud``, ``exp``, ``iat`` and ``sub`` are required, with 30 s leeway. ``aud``
  must be (or, as a list, contain) the configured audience. With several audiences OIDC
  says ``azp`` should name the requesting client, but that client may differ from ours
  (one sign-in shared by an app's web and mobile clients), so it is not compared.
* A token over 16 KiB is refused before it is parsed; a claim that must be a string and
  is not refuses the token.
* ``email_verified`` is true for the JSON ``true`` and for the string ``"true"``, which
  some providers (Amazon Cognito among them) send; anything else, or no claim, is not
  verified. The email is lowercased: members are matched by email case-insensitively.
* ``locale`` is a hint: one that is not shaped like a BCP 47 tag (``en_US`` is read as
  ``en-US``) is dropped rather than refusing the sign-in.

Verified tokens are not cached (exchanges are rare); the providers' keys are.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import jwt

from aerie.auth.tokens import ALLOWED_ALGORITHMS, KeySource, KeysUnavailable
from aerie.config import ConfigError, Settings
from tenants.identity_settings import TrustedProvider, trusted_providers
from tenants.oidc_discovery import ProviderKeys

__all__ = [
    "LEEWAY_S",
    "MAX_SUBJECT_TOKEN_CHARS",
    "Identity",
    "IdentityProviders",
    "ProvidersUnavailable",
    "UntrustedToken",
    "bootstrap_admin_email",
    "email_address",
]

MAX_SUBJECT_TOKEN_CHARS = 16 * 1024
LEEWAY_S = 30
REQUIRED_CLAIMS = ["iss", "aud", "exp", "iat", "sub"]
#: OpenID Connect Core 1.0 section 2: ``sub`` is at most 255 ASCII characters.
MAX_SUBJECT_CHARS = 255
MAX_EMAIL_CHARS = 320
#: A BCP 47 language tag, loosely: a primary subtag and up to five more.
_LOCALE_RE = re.compile(r"[A-Za-z]{2,3}(?:-[A-Za-z0-9]{1,8}){0,5}")
_EMAIL_RE = re.compile(r"[^@\s]{1,64}@[^@\s.]+(?:\.[^@\s.]+)*")
_PRINTABLE_RE = re.compile(r"[\x21-\x7e]+")
_OWN_KEY_HEADERS = ("jku", "jwk", "x5u")


class UntrustedToken(Exception):
    """The subject token is not one Aerie accepts; ``description`` is safe to show (invalid_grant)."""

    def __init__(self, description: str) -> None:
        super().__init__(description)
        self.description = description


class ProvidersUnavailable(Exception):
    """The provider's keys cannot be fetched and none are known: try again later (503)."""

    def __init__(self, description: str) -> None:
        super().__init__(description)
        self.description = description


@dataclass(frozen=True)
class Identity:
    """A person as their provider vouches for them."""

    issuer: str
    subject: str
    email: str | None
    email_verified: bool
    locale: str | None


def email_address(value: str) -> str | None:
    """``value`` lowercased if it is shaped like an email address, else None."""
    if len(value) > MAX_EMAIL_CHARS or not _EMAIL_RE.fullmatch(value):
        return None
    return value.lower()


class _Provider:
    def __init__(self, trusted: TrustedProvider, keys: KeySource) -> None:
        self.trusted = trusted
        self.keys = keys


class IdentityProviders:
    """The trusted providers and the one check every subject token passes.

    Thread-safe, and fork-safe as built: nothing is fetched before the first :meth:`verify`.
    With no provider configured every token is refused.
    """

    def __init__(self, providers: Iterable[TrustedProvider], *, keys: Mapping[str, KeySource] | None = None) -> None:
        """``keys`` (by issuer) replaces the keys found by discovery, for tests and callers
        that hold a provider's keys already."""
        given = keys or {}
        self._providers = {p.issuer: _Provider(p, given.get(p.issuer) or ProviderKeys(p)) for p in providers}

    @classmethod
    def from_settings(cls, settings: Settings) -> IdentityProviders:
        return cls(trusted_providers(settings.extra, settings.vcap_services))

    @property
    def issuers(self) -> tuple[str, ...]:
        return tuple(self._providers)

    def verify(self, subject_token: str) -> Identity:
        if not self._providers:
            raise UntrustedToken("no trusted provider: this platform accepts no identity provider's tokens")
        if not isinstance(subject_token, str) or not subject_token:
            raise UntrustedToken("the subject token is empty")
        if len(subject_token) > MAX_SUBJECT_TOKEN_CHARS:
            raise UntrustedToken(f"the subject token is larger than {MAX_SUBJECT_TOKEN_CHARS} characters")
        header, unverified = _unverified(subject_token)
        issuer = unverified.get("iss")
        provider = self._providers.get(issuer) if isinstance(issuer, str) else None
        if provider is None:
            raise UntrustedToken("untrusted issuer: the subject token comes from no provider this platform trusts")
        alg = header.get("alg")
        if alg not in ALLOWED_ALGORITHMS:
            raise UntrustedToken(f"the subject token must be signed with {' or '.join(ALLOWED_ALGORITHMS)}")
        if any(name in header for name in _OWN_KEY_HEADERS):
            raise UntrustedToken("the subject token may not name its own key (jku, jwk, x5u)")
        kid = header.get("kid")
        if "kid" in header and (not isinstance(kid, str) or not kid):
            raise UntrustedToken("the subject token's key id (kid) must be a non-empty string")
        key = _key(provider, kid) if kid is not None else _sole_key(provider)
        if key is None:
            raise UntrustedToken("the subject token was signed with a key its provider does not publish")
        if key.algorithm_name != alg:
            raise UntrustedToken("the subject token's algorithm does not match its key")
        claims = _decoded(subject_token, key, alg, provider.trusted)
        return _identity(claims, provider.trusted)


def _unverified(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Header and claims before any check: only to find the provider and its key."""
    try:
        header = jwt.get_unverified_header(token)
        claims = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError:
        raise UntrustedToken("the subject token is not a well-formed JWT") from None
    if not isinstance(header, dict) or not isinstance(claims, dict):
        raise UntrustedToken("the subject token is not a well-formed JWT")
    return header, claims


def _key(provider: _Provider, kid: str) -> jwt.PyJWK | None:
    try:
        return provider.keys.key_for(kid)
    except KeysUnavailable:
        raise ProvidersUnavailable("the identity provider's keys cannot be fetched right now") from None
    except (jwt.PyJWTError, ValueError):
        # The provider answered something that is not a usable key set.
        raise ProvidersUnavailable("the identity provider publishes no usable keys right now") from None


def _sole_key(provider: _Provider) -> jwt.PyJWK | None:
    """A token without ``kid``: the provider's key if it publishes exactly one (OIDC Core 10.1)."""
    sole = getattr(provider.keys, "sole_key", None)
    if sole is None:
        raise UntrustedToken("the subject token has no key id (kid)")
    try:
        key = sole()
    except KeysUnavailable:
        raise ProvidersUnavailable("the identity provider's keys cannot be fetched right now") from None
    if key is None:
        raise UntrustedToken("the subject token names no key (kid) and its provider publishes several")
    return key


def _decoded(token: str, key: jwt.PyJWK, alg: str, trusted: TrustedProvider) -> dict[str, Any]:
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            key=key.key,
            algorithms=[alg],
            audience=trusted.audience,
            issuer=trusted.issuer,
            leeway=LEEWAY_S,
            options={"require": REQUIRED_CLAIMS, "verify_signature": True},
        )
    except jwt.ExpiredSignatureError:
        raise UntrustedToken("the subject token has expired") from None
    except jwt.ImmatureSignatureError:
        raise UntrustedToken("the subject token is not valid yet") from None
    except jwt.InvalidAudienceError:
        raise UntrustedToken("the subject token is not meant for this platform (aud)") from None
    except jwt.MissingRequiredClaimError as exc:
        raise UntrustedToken(f"the subject token lacks the {exc.claim!r} claim") from None
    except jwt.InvalidSignatureError:
        raise UntrustedToken("the subject token's signature does not verify") from None
    except jwt.PyJWTError:
        raise UntrustedToken("the subject token could not be verified") from None
    # PyJWT reads times with int(), which takes "1700000000" too.
    for name in ("exp", "iat", "nbf"):
        value = claims.get(name)
        if name in claims and (isinstance(value, bool) or not isinstance(value, int | float)):
            raise UntrustedToken(f"the subject token's {name!r} claim must be a number")
    azp = claims.get("azp")
    if azp is not None and not isinstance(azp, str):
        raise UntrustedToken("the subject token's 'azp' claim must be a string")
    return claims


def _identity(claims: Mapping[str, Any], trusted: TrustedProvider) -> Identity:
    subject = claims["sub"]
    if not isinstance(subject, str) or len(subject) > MAX_SUBJECT_CHARS or not _PRINTABLE_RE.fullmatch(subject):
        raise UntrustedToken(f"the subject token's 'sub' claim must be 1 to {MAX_SUBJECT_CHARS} printable characters")
    email = _email(claims.get(trusted.email_claim), trusted.email_claim)
    verified = claims.get("email_verified")
    return Identity(
        issuer=trusted.issuer,
        subject=subject,
        email=email,
        email_verified=email is not None and (verified is True or verified == "true"),
        locale=_locale(claims.get(trusted.locale_claim), trusted.locale_claim),
    )


def _email(value: Any, claim: str) -> str | None:
    if value is None:
        return None
    address = email_address(value) if isinstance(value, str) else None
    if address is None:
        raise UntrustedToken(f"the subject token's {claim!r} claim must be an email address")
    return address


def _locale(value: Any, claim: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise UntrustedToken(f"the subject token's {claim!r} claim must be a string")
    tag = value.replace("_", "-")
    if not _LOCALE_RE.fullmatch(tag):
        return None
    primary, _, rest = tag.partition("-")
    return primary.lower() + ("-" + rest if rest else "")


def bootstrap_admin_email(extra: Mapping[str, str]) -> str | None:
    """``AERIE_BOOTSTRAP_ADMIN_EMAIL``: the first platform person, lowercased; None when unset."""
    raw = extra.get("AERIE_BOOTSTRAP_ADMIN_EMAIL")
    if raw is None or not raw.strip():
        return None
    address = email_address(raw.strip())
    if address is None:
        raise ConfigError(f"AERIE_BOOTSTRAP_ADMIN_EMAIL must be an email address, got {raw!r}")
    return address
