"""Calls from one Aerie service to another, over ``requests``.

Three things go wrong between services, and this module decides once how each is met:

* **A peer is away** (refused, timed out, answering 5xx). The calling service must then
  answer ``503`` with ``Retry-After``, never ``500``: the caller's request was fine, a
  dependency was not. Every such failure becomes :class:`PeerUnavailable`, a
  :class:`~aerie.errors.Problem` that the error handling renders as the contract's
  ``unavailable`` problem. Its detail names the peer and nothing else (no URL, host, or
  exception text). Responses below 500 are handed back untouched: a 404 or 409 from a
  peer means something to the caller, who decides.
* **A blip** (an instance being replaced, a connection refused for a moment). Requests are
  retried a few times with a short backoff, but only when that is safe: a failed *connect*
  is retried for any method, since nothing was sent; a ``502``/``503``/``504`` is retried only
  for idempotent methods, since a ``POST`` may already have had its effect. A *read
  timeout* is never retried: a peer that was too slow once will likely be slow again, and
  retrying would multiply the caller's wait past its own client's patience.
* **A peer is silent** (accepts connections, never answers). Each call then holds a worker
  thread until its read timeout, and a uWSGI worker has only a few. A client made with
  ``max_in_flight`` lets that many calls wait on the peer at once; a further call waits at
  most ``queue_timeout_s`` for its turn and then fails as :class:`PeerUnavailable`, so a
  silent peer costs a worker one thread, not all of them (the bulkhead pattern).
  :class:`ClientCredentials` does the same for callers waiting on another thread's token
  fetch.
* **Tokens.** Services call each other with OAuth client-credentials tokens from the
  tenants service. :class:`ClientCredentials` fetches one, caches it for its lifetime less
  a margin, and lets concurrent threads share a single fetch. A ``401`` from a peer
  (token expired early, signing key rotated) makes :class:`ServiceClient` drop the token
  and retry once with a fresh one.

Nothing here touches the network at import or construction time, and sessions are per
process: uWSGI forks workers after importing the app, and a pooled socket must never be
shared by two processes.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from base64 import b64encode
from collections.abc import Callable, Mapping
from typing import Any, ClassVar, Protocol
from urllib.parse import quote_plus, urlsplit

import requests
from requests.adapters import HTTPAdapter
from requests.auth import AuthBase
from ulid import ULID
from urllib3.exceptions import InvalidHeader, ReadTimeoutError
from urllib3.util.retry import Retry

from aerie.context import current_request_id
from aerie.errors import Problem

__all__ = [
    "IDEMPOTENT_METHODS",
    "ClientCredentials",
    "CredentialsRejected",
    "PeerUnavailable",
    "ServiceClient",
    "TokenProvider",
]

log = logging.getLogger("aerie.http_client")

#: Methods that may be sent twice with the effect of once (RFC 9110 section 9.2.2).
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})
#: Statuses that mean "a proxy or the peer is momentarily unable", worth one more try.
RETRY_STATUSES = frozenset({502, 503, 504})
#: The Retry-After this service tells its own caller, unless the peer asked for another.
DEFAULT_RETRY_AFTER_S = 1
#: Upper bound on a Retry-After passed on from a peer to our caller.
MAX_PASSED_RETRY_AFTER_S = 30


class PeerUnavailable(Problem):
    """Another service could not be reached or failed: this service answers 503.

    The detail names the peer and no internals, because it ends up in the problem document
    that this service's caller sees. What went wrong in detail is logged (and kept as
    ``__cause__``) instead.
    """

    def __init__(self, peer: str, *, retry_after: int = DEFAULT_RETRY_AFTER_S, detail: str | None = None) -> None:
        super().__init__(
            503,
            "unavailable",
            detail or f"The {peer} service is not answering; try again shortly.",
            headers={"Retry-After": str(retry_after)},
        )
        self.peer = peer
        self.retry_after = retry_after


class CredentialsRejected(PeerUnavailable):
    """The tenants service refused this service's client credentials (or its scope).

    This is a deployment error (wrong or revoked ``AERIE_CLIENT_SECRET``, a scope the client
    lacks), not the caller's fault, so it is still a 503 to the caller, to whom the service
    is simply unable to do its work right now. It is logged at ERROR with the OAuth error
    code, kept here as :attr:`oauth_error` so code and tests can tell it from an outage.
    """

    def __init__(self, peer: str, oauth_error: str, *, retry_after: int = DEFAULT_RETRY_AFTER_S) -> None:
        super().__init__(
            peer,
            retry_after=retry_after,
            detail=f"This service could not authenticate to the {peer} service; try again later.",
        )
        self.oauth_error = oauth_error


class TokenProvider(Protocol):
    """What :class:`ServiceClient` needs from a source of bearer tokens."""

    def token(self) -> str:
        """A token to send now; raises :class:`PeerUnavailable` when none can be had."""
        ...

    def invalidate(self, token: str) -> None:
        """Forget ``token``, which a peer has just refused."""
        ...


class _Retry(Retry):
    """urllib3's ``Retry``, with the three refinements the module docstring argues for.

    * A read timeout is raised at once instead of retried (for every method).
    * Only ``503`` counts as "has a Retry-After worth waiting for"; urllib3 would also retry
      a ``413`` or ``429`` that carries one, and a rate limit is not a blip.
    * A Retry-After from the peer is obeyed but capped at :attr:`RETRY_AFTER_CAP` seconds,
      and a malformed one is ignored (urllib3 would raise): we are inside somebody else's
      request and cannot wait long.
    """

    RETRY_AFTER_STATUS_CODES: ClassVar[frozenset[int]] = frozenset({503})
    RETRY_AFTER_CAP: ClassVar[float] = 1.0

    def increment(self, method: str | None = None, url: str | None = None, *args: Any, **kwargs: Any) -> Retry:
        error = kwargs.get("error")
        if error is None and len(args) >= 2:
            error = args[1]
        if isinstance(error, ReadTimeoutError):
            raise error
        return super().increment(method, url, *args, **kwargs)

    def parse_retry_after(self, retry_after: str) -> float:
        try:
            seconds = super().parse_retry_after(retry_after)
        except InvalidHeader:
            return 0.0  # falls back to the exponential backoff
        return min(seconds, self.RETRY_AFTER_CAP)


def _new_request_id() -> str:
    """An id like the ones the request-id middleware makes, for calls made outside a request."""
    return str(ULID())


class ServiceClient:
    """An HTTP client for one peer service, rooted at ``base_url``.

    ``service_name`` is *this* service (it goes into ``User-Agent: aerie-<service_name>`` so
    the peer's logs say who called); ``peer`` is the service called, used in error details
    and logs (it defaults to ``base_url``'s first host label, but pass it: the detail then
    reads "The tenants service ..." rather than a host name).

    Timeouts are per attempt: ``connect_timeout`` to open the connection, ``read_timeout``
    between bytes of the answer. ``retries`` bounds the retries described in the module
    docstring, so the worst case for an idempotent call is ``(retries + 1)`` connects plus
    one read timeout plus at most a couple of seconds of backoff. ``max_in_flight`` (per
    process; None for no limit) bounds the calls under way at once, each further call
    waiting at most ``queue_timeout_s`` (module docstring: a silent peer).
    """

    def __init__(
        self,
        base_url: str,
        *,
        token_provider: TokenProvider | None = None,
        connect_timeout: float = 1.0,
        read_timeout: float = 3.0,
        retries: int = 2,
        service_name: str = "service",
        peer: str | None = None,
        backoff_factor: float = 0.2,
        pool_maxsize: int = 16,
        max_in_flight: int | None = None,
        queue_timeout_s: float = 0.5,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.peer = peer or _peer_from_url(self.base_url)
        self.service_name = service_name
        self._token_provider = token_provider
        self._timeout = (connect_timeout, read_timeout)
        self._retries = retries
        self._backoff_factor = backoff_factor
        self._pool_maxsize = pool_maxsize
        self._in_flight = threading.BoundedSemaphore(max_in_flight) if max_in_flight else None
        self._queue_timeout_s = queue_timeout_s
        self._lock = threading.Lock()
        self._pid: int | None = None
        self._session: requests.Session | None = None

    # -- the session, one per process -------------------------------------------------

    @property
    def session(self) -> requests.Session:
        """This process's session, made on first use (so after any fork)."""
        session = self._session
        if session is not None and self._pid == os.getpid():
            return session
        with self._lock:
            if self._session is None or self._pid != os.getpid():
                # The parent's session is dropped, not closed: closing would shut sockets
                # that the parent process is still using.
                self._session = self._make_session()
                self._pid = os.getpid()
            return self._session

    def _make_session(self) -> requests.Session:
        retry = _Retry(
            total=self._retries,
            connect=self._retries,
            read=self._retries,
            status=self._retries,
            other=0,
            redirect=0,
            allowed_methods=IDEMPOTENT_METHODS,
            status_forcelist=RETRY_STATUSES,
            backoff_factor=self._backoff_factor,
            backoff_max=1.0,
            respect_retry_after_header=True,
            raise_on_status=False,  # hand back the last 5xx; it becomes PeerUnavailable below
        )
        adapter = HTTPAdapter(max_retries=retry, pool_connections=1, pool_maxsize=self._pool_maxsize)
        session = requests.Session()
        session.trust_env = False  # no proxies or .netrc from the environment between services
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        return session

    def close(self) -> None:
        with self._lock:
            if self._session is not None and self._pid == os.getpid():
                self._session.close()
            self._session = None
            self._pid = None

    def __enter__(self) -> ServiceClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- requests ---------------------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        data: Any = None,
        headers: Mapping[str, str] | None = None,
        auth: AuthBase | None = None,
        authenticate: bool = True,
    ) -> requests.Response:
        """Send ``method path`` to the peer; any answer below 500 is returned as-is.

        Raises :class:`PeerUnavailable` when the peer cannot be reached, times out or
        answers 5xx, and when no token can be had. A ``401`` with a token we sent drops
        the token and retries once with a fresh one (safe for any method: the peer refused
        before doing anything). ``auth`` is a requests auth object for calls that do not
        use the bearer token (the token request itself); ``authenticate=False`` skips the
        token for a peer's public routes.
        """
        method = method.upper()
        url = self._url(path)
        sent_headers = self._headers(headers)
        provider = self._token_provider if authenticate else None
        token = None
        if provider is not None:
            token = provider.token()
            sent_headers["Authorization"] = f"Bearer {token}"
        response = self._send(method, url, params=params, json=json, data=data, headers=sent_headers, auth=auth)
        if response.status_code == 401 and provider is not None and token is not None:
            response.close()
            provider.invalidate(token)
            sent_headers["Authorization"] = f"Bearer {provider.token()}"
            response = self._send(method, url, params=params, json=json, data=data, headers=sent_headers, auth=auth)
        return response

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> requests.Response:
        return self.request("POST", path, **kwargs)

    def put(self, path: str, **kwargs: Any) -> requests.Response:
        return self.request("PUT", path, **kwargs)

    def patch(self, path: str, **kwargs: Any) -> requests.Response:
        return self.request("PATCH", path, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> requests.Response:
        return self.request("DELETE", path, **kwargs)

    def _url(self, path: str) -> str:
        if "://" in path:
            # Joining a caller-supplied absolute URL would send our token elsewhere.
            raise ValueError("ServiceClient takes a path relative to its base URL, not a URL")
        return f"{self.base_url}/{path.lstrip('/')}"

    def _headers(self, extra: Mapping[str, str] | None) -> dict[str, str]:
        headers = {
            "Accept": "application/json",
            "User-Agent": f"aerie-{self.service_name}",
            "X-Request-ID": current_request_id() or _new_request_id(),
        }
        if extra:
            headers.update(extra)
        return headers

    def _send(self, method: str, url: str, **kwargs: Any) -> requests.Response:
        slots = self._in_flight
        if slots is None:
            return self._send_now(method, url, **kwargs)
        if not slots.acquire(timeout=self._queue_timeout_s):
            log.warning("peer busy", extra={"peer": self.peer, "method": method, "path": urlsplit(url).path})
            raise PeerUnavailable(self.peer, detail=f"The {self.peer} service is slow to answer; try again shortly.")
        try:
            return self._send_now(method, url, **kwargs)
        finally:
            slots.release()

    def _send_now(self, method: str, url: str, **kwargs: Any) -> requests.Response:
        started = time.monotonic()
        try:
            response = self.session.request(method, url, timeout=self._timeout, allow_redirects=False, **kwargs)
        except requests.RequestException as exc:
            self._log_failure(method, url, started, error_type=type(exc).__name__)
            raise PeerUnavailable(self.peer) from exc
        if response.status_code >= 500:
            retry_after = _retry_after(response.headers.get("Retry-After"))
            self._log_failure(method, url, started, status=response.status_code)
            response.close()
            raise PeerUnavailable(self.peer, retry_after=retry_after)
        return response

    def _log_failure(self, method: str, url: str, started: float, **fields: Any) -> None:
        log.warning(
            "peer unavailable",
            extra={
                "peer": self.peer,
                "method": method,
                "url": url.split("?", 1)[0],
                "elapsed_ms": round((time.monotonic() - started) * 1000),
                **fields,
            },
        )


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
            raise PeerUnavailable("tenants", detail="The tenants service is slow to answer; try again shortly.")
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


def _retry_after(raw: str | None) -> int:
    """The peer's Retry-After in whole seconds, if plain and sane, else our default."""
    value = (raw or "").strip()
    # isascii: str.isdigit also takes "²", which int() refuses; nine digits keep int() quick.
    if value.isascii() and value.isdigit() and len(value) <= 9:
        return max(1, min(int(value), MAX_PASSED_RETRY_AFTER_S))
    return DEFAULT_RETRY_AFTER_S


def _peer_from_url(url: str) -> str:
    host = urlsplit(url).hostname or "peer"
    label = host.split(".", 1)[0]
    return "peer" if label.isdigit() or not label else label
