"""The console's own settings, read once from :class:`aerie.config.Settings`."""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from urllib.parse import urlsplit

from aerie.config import ConfigError, Settings, int_setting

__all__ = ["ConsoleConfig"]

#: Hosts where the console runs over plain HTTP (make run, tests): only there may the session
#: cookie go without ``Secure``, or a browser would never send it back.
LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "[::1]", "::1"})


def _url(settings: Settings, name: str) -> str:
    value = settings.require(name).rstrip("/")
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"{name} must be an http(s) URL, got {value!r}")
    return value


@dataclass(frozen=True)
class ConsoleConfig:
    #: Where people reach the console (``AERIE_CONSOLE_URL``): the callback is under it.
    public_url: str
    #: The OpenID Connect provider people sign in with (``AERIE_CONSOLE_OIDC_ISSUER``).
    oidc_issuer: str
    #: The client id the console signs people in as (``AERIE_CONSOLE_OIDC_CLIENT_ID``).
    oidc_client_id: str
    #: ``AERIE_CONSOLE_OIDC_CLIENT_SECRET``, for a confidential client; None relies on PKCE.
    oidc_client_secret: str | None
    #: The console's platform client, holding the token-exchange grant only.
    client_id: str
    client_secret: str
    tenants_url: str
    projects_url: str
    flags_url: str
    audit_url: str
    #: Seconds a call to another service may take (``AERIE_CONSOLE_TIMEOUT``).
    timeout_s: int = 10

    @property
    def redirect_uri(self) -> str:
        return f"{self.public_url}/auth/callback"

    @property
    def secure_cookies(self) -> bool:
        return (urlsplit(self.public_url).hostname or "") not in LOCAL_HOSTS

    @property
    def session_key(self) -> bytes:
        """The key cookies are signed with, derived from the client secret.

        One secret fewer to hand out and rotate: rotating the client secret signs everyone
        out, which is what a leaked secret calls for anyway.
        """
        return hmac.new(self.client_secret.encode(), b"aerie-console-session", hashlib.sha256).digest()

    @classmethod
    def from_settings(cls, settings: Settings) -> ConsoleConfig:
        if not settings.client_id or not settings.client_secret:
            raise ConfigError("AERIE_CLIENT_ID and AERIE_CLIENT_SECRET (the console's client) must both be set")
        if not settings.tenants_url:
            raise ConfigError("AERIE_TENANTS_URL is not set")
        return cls(
            public_url=_url(settings, "AERIE_CONSOLE_URL"),
            oidc_issuer=_url(settings, "AERIE_CONSOLE_OIDC_ISSUER"),
            oidc_client_id=settings.require("AERIE_CONSOLE_OIDC_CLIENT_ID"),
            oidc_client_secret=settings.extra.get("AERIE_CONSOLE_OIDC_CLIENT_SECRET") or None,
            client_id=settings.client_id,
            client_secret=settings.client_secret,
            tenants_url=settings.tenants_url,
            projects_url=_url(settings, "AERIE_PROJECTS_URL"),
            flags_url=_url(settings, "AERIE_FLAGS_URL"),
            audit_url=_url(settings, "AERIE_AUDIT_URL"),
            timeout_s=int_setting(settings.extra, "AERIE_CONSOLE_TIMEOUT", 10, 1, 60),
        )
