"""One trusted provider's signing keys, found through its OpenID Connect discovery document.

The discovery document (``<issuer>/.well-known/openid-configuration``) names the JWKS; it
changes almost never, so it is read on first use, kept for ``lifespan`` and, while the
provider cannot be reached, kept for as long as the keys it led to are (a day, see
:class:`aerie.auth.tokens.JWKSKeySource`, which caches, refreshes and serves stale keys).
Its ``issuer`` must equal the configured one exactly (OpenID Connect Discovery 1.0,
section 4.3): a document that names another issuer is not this provider's, and its keys
are not used.

A failed read is not repeated for ``retry_s``: the exchanges that arrive meanwhile fail
at once (503) instead of each waiting for the same silent provider.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import jwt
import requests

from aerie.auth.tokens import JWKSKeySource, KeySource, KeysUnavailable
from tenants.identity_settings import TrustedProvider, is_local_url

__all__ = ["DISCOVERY_PATH", "MAX_DISCOVERY_BYTES", "ProviderKeys"]

log = logging.getLogger("tenants.identity")

DISCOVERY_PATH = "/.well-known/openid-configuration"
#: Real discovery documents are a few KiB; a provider answering megabytes is not read.
MAX_DISCOVERY_BYTES = 256 * 1024


class DiscoveryFailed(Exception):
    """The discovery document could not be read or is not this provider's; logged, never shown."""


@dataclass(frozen=True)
class _Found:
    jwks_uri: str
    at: float  # monotonic time it was read


class ProviderKeys:
    """The keys one provider signs with: ``key_for(kid)`` as :class:`aerie.auth.tokens.KeySource`.

    Raises :class:`aerie.auth.tokens.KeysUnavailable` when no key can be known right now
    (provider down and nothing cached, or its discovery document names another issuer).
    Nothing is fetched before the first call, so building one at start-up, before uWSGI
    forks, costs nothing and shares no socket.
    """

    def __init__(
        self,
        provider: TrustedProvider,
        *,
        timeout: float = 2.0,
        lifespan: float = 86_400,
        retry_s: float = 10.0,
        keys: Callable[[str], KeySource] = JWKSKeySource,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._provider = provider
        self._timeout = timeout
        self._lifespan = lifespan
        self._retry_s = retry_s
        self._make_keys = keys
        self._clock = clock
        self._lock = threading.Lock()
        self._found: _Found | None = None
        self._failed_at: float | None = None
        self._keys: KeySource | None = None
        self._keys_uri: str | None = None

    def key_for(self, kid: str) -> jwt.PyJWK | None:
        return self._key_source().key_for(kid)

    def sole_key(self) -> jwt.PyJWK | None:
        """The provider's one signing key, for tokens that name none (OIDC Core 10.1)."""
        source = self._key_source()
        sole = getattr(source, "sole_key", None)
        return sole() if sole is not None else None

    def _key_source(self) -> KeySource:
        uri = self._provider.jwks_uri or self._jwks_uri()
        with self._lock:
            if self._keys is None or self._keys_uri != uri:
                self._keys, self._keys_uri = self._make_keys(uri), uri
            return self._keys

    def _jwks_uri(self) -> str:
        now = self._clock()
        found = self._found
        if found is not None and now - found.at < self._lifespan:
            return found.jwks_uri
        # One thread reads; the others wait at most as long as that read may take.
        if not self._lock.acquire(timeout=self._timeout + 0.5):
            return self._known("another request is reading the discovery document")
        try:
            found = self._found
            if found is not None and now - found.at < self._lifespan:
                return found.jwks_uri
            if self._failed_at is not None and now - self._failed_at < self._retry_s:
                return self._known("the discovery document could not be read just now")
            try:
                jwks_uri = self._read_discovery()
            except DiscoveryFailed as exc:
                self._failed_at = self._clock()
                log.warning("identity provider %s: %s", self._provider.issuer, exc)
                return self._known(str(exc))
            self._found, self._failed_at = _Found(jwks_uri, self._clock()), None
            return jwks_uri
        finally:
            self._lock.release()

    def _known(self, why: str) -> str:
        """The JWKS URL read before, while the provider cannot say it again; else unavailable."""
        found = self._found
        if found is None:
            raise KeysUnavailable(why)
        return found.jwks_uri

    def _read_discovery(self) -> str:
        issuer = self._provider.issuer
        url = issuer.rstrip("/") + DISCOVERY_PATH
        try:
            # No redirects, as PyJWKClient follows none for the keys: the URL is configuration's.
            with requests.get(
                url, timeout=self._timeout, allow_redirects=False, stream=True, headers={"Accept": "application/json"}
            ) as response:
                if response.status_code != 200:
                    raise DiscoveryFailed(f"{url} answered {response.status_code}")
                body = response.raw.read(MAX_DISCOVERY_BYTES + 1, decode_content=True)
        except requests.RequestException as exc:
            raise DiscoveryFailed(f"{url} could not be read ({type(exc).__name__})") from None
        if len(body) > MAX_DISCOVERY_BYTES:
            raise DiscoveryFailed(f"{url} is larger than {MAX_DISCOVERY_BYTES} bytes")
        try:
            document = json.loads(body)
        except ValueError:
            raise DiscoveryFailed(f"{url} is not JSON") from None
        if not isinstance(document, dict):
            raise DiscoveryFailed(f"{url} is not a JSON object")
        if document.get("issuer") != issuer:
            raise DiscoveryFailed(f"{url} names another issuer ({str(document.get('issuer'))[:200]!r})")
        jwks_uri = document.get("jwks_uri")
        if not isinstance(jwks_uri, str) or not jwks_uri.startswith(("https://", "http://")):
            raise DiscoveryFailed(f"{url} has no jwks_uri URL")
        if not jwks_uri.startswith("https://") and not (is_local_url(jwks_uri) and is_local_url(issuer)):
            raise DiscoveryFailed(f"{url} names a jwks_uri that is not https")
        return jwks_uri
