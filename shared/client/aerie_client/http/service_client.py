"""A client for one peer service: timeouts, retries, a bulkhead, bearer tokens, one session per process."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Mapping
from typing import Any, Protocol
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter
from requests.auth import AuthBase
from ulid import ULID

from aerie_client.http.context import current_request_id
from aerie_client.http.errors import PeerUnavailable
from aerie_client.http.retries import IDEMPOTENT_METHODS, RETRY_STATUSES, PeerRetry, passed_retry_after

__all__ = ["ServiceClient", "TokenProvider"]

log = logging.getLogger("aerie_client.http")


class TokenProvider(Protocol):
    """What :class:`ServiceClient` needs from a source of bearer tokens."""

    def token(self) -> str:
        """A token to send now; raises :class:`PeerUnavailable` when none can be had."""
        ...

    def invalidate(self, token: str) -> None:
        """Forget ``token``, which a peer has just refused."""
        ...


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
    between bytes of the answer. ``retries`` bounds the retries described in
    :mod:`aerie_client.http`, so the worst case for an idempotent call is ``(retries + 1)`` connects plus
    one read timeout plus at most a couple of seconds of backoff. ``max_in_flight`` (per
    process; None for no limit) bounds the calls under way at once, each further call
    waiting at most ``queue_timeout_s`` (:mod:`aerie_client.http`: a silent peer).
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
        retry = PeerRetry(
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
            raise PeerUnavailable(self.peer, slow=True)
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
            retry_after = passed_retry_after(response.headers.get("Retry-After"))
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


def _peer_from_url(url: str) -> str:
    host = urlsplit(url).hostname or "peer"
    label = host.split(".", 1)[0]
    return "peer" if label.isdigit() or not label else label
