"""This service's OAuth access token from the tenants service: fetched once, shared, renewed early."""

from __future__ import annotations

import logging
import threading
import time
from base64 import b64encode
from collections.abc import Callable
from typing import Any
from urllib.parse import quote_plus

import requests
from requests.auth import AuthBase

from aerie_client.http.errors import CredentialsRejected, PeerUnavailable
from aerie_client.http.service_client import ServiceClient

__all__ = ["USABLE_MARGIN_S", "ClientCredentials"]

log = logging.getLogger("aerie_client.http")

#: A token due for renewal is still sent while more than this remains of its lifetime.
USABLE_MARGIN_S = 5.0


class ClientCredentials:
    """This service's access token, from the tenants service's token endpoint.

    The token is fetched on first use (RFC 6749 section 4.4, client authenticated with HTTP
    Basic), cached, and renewed once less than ``min(renew_margin_s, renew_ratio * lifetime)``
    of its lifetime remains, so a token is never sent that could expire while the request
    is in flight. Lifetimes are measured from when the request for the token was sent, on
    the monotonic clock, so a skewed wall clock cannot keep an expired token alive.

    One lock serialises fetches: threads that find the token stale while another is
    fetching wait for that fetch instead of making their own, but for ``wait_s`` at most:
    a fetch that takes longer (tenants silent) fails them as :class:`PeerUnavailable`
    rather than hold every worker thread until its read timeout. After a failed fetch,
    further calls fail at once for ``failure_backoff_s`` rather than queue up behind the
    lock for a connect timeout each, which would stall every worker thread during an
    outage and hammer the tenants service as it comes back.

    ``tenant_id`` makes a platform client's token tenant-bound (the token endpoint's
    ``tenant_id`` field): how a service acts for one tenant, e.g. to run the flags client
    for it. A tenant's own client needs none; its tokens are bound to its tenant already.
    """

    def __init__(
        self,
        tenants_url: str,
        client_id: str,
        client_secret: str,
        *,
        scope: str | None = None,
        tenant_id: str | None = None,
        service_name: str = "service",
        connect_timeout: float = 1.0,
        read_timeout: float = 3.0,
        renew_margin_s: float = 60.0,
        renew_ratio: float = 0.1,
        default_lifetime_s: float = 60.0,
        failure_backoff_s: float = 1.0,
        wait_s: float = 0.5,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = ServiceClient(
            tenants_url,
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            service_name=service_name,
            peer="tenants",
        )
        self._auth = (client_id, client_secret)
        self.scope = scope
        self.tenant_id = tenant_id
        self._renew_margin_s = renew_margin_s
        self._renew_ratio = renew_ratio
        self._default_lifetime_s = default_lifetime_s
        self._failure_backoff_s = failure_backoff_s
        self._wait_s = wait_s
        self._clock = clock
        self._lock = threading.Lock()
        self._token: str | None = None
        self._renew_at = 0.0
        #: Until when the current token may still be sent (its expiry, less a few seconds).
        self._usable_until = 0.0
        self._failed_until = 0.0
        self._last_failure: PeerUnavailable | None = None

    @classmethod
    def from_settings(cls, settings: Any, *, scope: str | None = None) -> ClientCredentials | None:
        """The provider for an :class:`aerie.config.Settings`, or None when it has no client."""
        if not (settings.tenants_url and settings.client_id and settings.client_secret):
            return None
        return cls(
            settings.tenants_url,
            settings.client_id,
            settings.client_secret,
            scope=scope,
            service_name=settings.service,
        )

    def token(self) -> str:
        """A token good for at least the renewal margin; fetched when there is none such."""
        token = self._token
        now = self._clock()
        if token is not None and now < self._renew_at:
            return token
        if token is not None and now < self._usable_until:
            # Due for renewal but still good: one thread renews, the others keep using it.
            if not self._lock.acquire(blocking=False):
                return token
        elif not self._lock.acquire(timeout=self._wait_s):
            raise PeerUnavailable("tenants", slow=True)
        try:
            now = self._clock()
            if self._token is not None and now < self._renew_at:
                return self._token  # another thread fetched it while we waited
            if now < self._failed_until and self._last_failure is not None:
                raise self._fresh_failure()
            try:
                self._fetch()
            except PeerUnavailable as exc:
                self._failed_until = self._clock() + self._failure_backoff_s
                self._last_failure = exc
                raise
            assert self._token is not None
            return self._token
        finally:
            self._lock.release()

    def invalidate(self, token: str) -> None:
        """Forget ``token`` after a peer refused it, unless it was already replaced.

        Passing the token that was refused (not "whatever is current") means that when many
        threads see a 401 for the same token, the first drops it and the rest keep the
        fresh one that the first then fetches.
        """
        with self._lock:
            if self._token == token:
                self._token = None
                self._renew_at = 0.0
                self._usable_until = 0.0

    def _fresh_failure(self) -> PeerUnavailable:
        last = self._last_failure
        if isinstance(last, CredentialsRejected):
            return CredentialsRejected(last.peer, last.oauth_error, retry_after=last.retry_after)
        assert last is not None
        return PeerUnavailable(last.peer, retry_after=last.retry_after)

    def _fetch(self) -> None:
        form = {"grant_type": "client_credentials"}
        if self.scope:
            form["scope"] = self.scope
        if self.tenant_id:
            form["tenant_id"] = self.tenant_id
        sent_at = self._clock()
        # Basic auth goes through requests' ``auth`` so the secret is encoded per RFC 6749
        # 2.3.1 (form-urlencoded, then base64) and never put in a URL or a log line.
        response = self._client.post(
            "/v1/oauth/token",
            data=form,
            headers={"Content-Type": "application/x-www-form-urlencoded"},
            auth=_FormEncodedBasic(*self._auth),
        )
        with response:
            if response.status_code != 200:
                error = _oauth_error(response)
                log.error(
                    "token request refused",
                    extra={"peer": "tenants", "status": response.status_code, "oauth_error": error},
                )
                if response.status_code in (400, 401, 403):
                    raise CredentialsRejected("tenants", error)
                raise PeerUnavailable("tenants")
            try:
                body = response.json()
                token = body["access_token"]
                token_type = body.get("token_type", "Bearer")
                lifetime = float(body.get("expires_in") or self._default_lifetime_s)
            except (ValueError, KeyError, TypeError, AttributeError):
                log.error("token response malformed", extra={"peer": "tenants"})
                raise PeerUnavailable("tenants") from None
        if not isinstance(token, str) or not token or str(token_type).lower() != "bearer" or lifetime <= 0:
            log.error("token response unusable", extra={"peer": "tenants", "token_type": str(token_type)})
            raise PeerUnavailable("tenants")
        margin = min(self._renew_margin_s, self._renew_ratio * lifetime)
        self._token = token
        self._renew_at = sent_at + lifetime - margin
        self._usable_until = sent_at + lifetime - min(USABLE_MARGIN_S, margin)
        self._failed_until = 0.0
        self._last_failure = None


class _FormEncodedBasic(AuthBase):
    """HTTP Basic as RFC 6749 section 2.3.1 wants it for OAuth clients.

    The client id and secret are each form-urlencoded before joining them with ``:``, so a
    secret containing ``:`` or non-ASCII characters survives; for the URL-safe secrets the
    tenants service hands out this is the same as plain Basic.
    """

    def __init__(self, client_id: str, client_secret: str) -> None:
        self._id = client_id
        self._secret = client_secret

    def __call__(self, r: requests.PreparedRequest) -> requests.PreparedRequest:
        raw = f"{quote_plus(self._id)}:{quote_plus(self._secret)}".encode()
        r.headers["Authorization"] = "Basic " + b64encode(raw).decode("ascii")
        return r


def _oauth_error(response: requests.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return f"http_{response.status_code}"
    error = body.get("error") if isinstance(body, dict) else None
    return str(error) if error else f"http_{response.status_code}"
