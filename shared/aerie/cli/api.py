"""The HTTP calls a command makes: a platform client's token, JSON in and out, errors as :class:`CliError`.

Tokens come from the tenants service's token endpoint (client credentials, the client
authenticated by HTTP Basic with its id and secret form-encoded first, as RFC 6749 section
2.3.1 asks), once per run and per tenant a token is bound to. Only a failed *connect* is
retried: nothing was sent, so trying again cannot do anything twice; a refused or half-done
write is reported, not repeated.
"""

from __future__ import annotations

import uuid
from base64 import b64encode
from collections.abc import Iterator, Mapping
from typing import Any
from urllib.parse import quote, quote_plus

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from aerie.cli.config import Settings
from aerie.cli.errors import ApiError, NetworkError

__all__ = ["Api", "segment"]

USER_AGENT = "aerie-cli/0.1"


def segment(value: str) -> str:
    """``value`` safe as one path segment: an id or key typed by a person never changes the route."""
    return quote(value, safe="")


class Api:
    """One run's session with the services, acting as the configured platform client."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._http = requests.Session()
        self._http.headers["User-Agent"] = USER_AGENT
        retry = Retry(total=2, connect=2, read=0, status=0, other=0, backoff_factor=0.2, raise_on_status=False)
        self._http.mount("http://", HTTPAdapter(max_retries=retry))
        self._http.mount("https://", HTTPAdapter(max_retries=retry))
        self._tokens: dict[str | None, str] = {}

    def __enter__(self) -> Api:
        return self

    def __exit__(self, *exc: object) -> None:
        self._http.close()

    def token(self, tenant_id: str | None = None) -> str:
        """The platform client's access token; with ``tenant_id``, one bound to that tenant."""
        if tenant_id in self._tokens:
            return self._tokens[tenant_id]
        client_id, secret = self.settings.credentials()
        basic = b64encode(f"{quote_plus(client_id)}:{quote_plus(secret)}".encode()).decode()
        form = {"grant_type": "client_credentials"}
        if tenant_id:
            form["tenant_id"] = tenant_id
        r = self._send("POST", "tenants", "/v1/oauth/token", data=form, headers={"Authorization": f"Basic {basic}"})
        if r.status_code != 200:
            raise _error("tenants", r, prefix="getting a token: ")
        token = _json(r, "tenants").get("access_token")
        if not isinstance(token, str):
            raise ApiError("tenants", r.status_code, None, "the token endpoint answered without an access_token")
        self._tokens[tenant_id] = token
        return token

    def call(
        self,
        method: str,
        service: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        body: Any = None,
        headers: Mapping[str, str] | None = None,
        tenant_id: str | None = None,
    ) -> requests.Response:
        """``method path`` on ``service`` with a token; any status of 400 or more raises :class:`ApiError`."""
        sent = {"Authorization": f"Bearer {self.token(tenant_id)}", **(headers or {})}
        r = self._send(method, service, path, params=_clean(params), json=body, headers=sent)
        if r.status_code >= 400:
            raise _error(service, r)
        return r

    def json(self, method: str, service: str, path: str, **kw: Any) -> Any:
        """:meth:`call`, and the answer's JSON (None for an empty answer such as 204)."""
        r = self.call(method, service, path, **kw)
        return _json(r, service) if r.content else None

    def pages(self, service: str, path: str, params: Mapping[str, Any] | None = None) -> Iterator[dict[str, Any]]:
        """Every item of a list, following ``next_cursor`` (contract pages of 200, the most allowed)."""
        query = {**_clean(params), "limit": 200}
        while True:
            page = self.json("GET", service, path, params=query)
            yield from page.get("items", [])
            cursor = page.get("next_cursor")
            if not cursor:
                return
            query["cursor"] = cursor

    def lines(self, service: str, path: str, params: Mapping[str, Any] | None = None) -> Iterator[bytes]:
        """A streamed answer, line by line as it arrives; a connection lost mid-way is a :class:`NetworkError`."""
        headers = {"Authorization": f"Bearer {self.token()}"}
        r = self._send("GET", service, path, params=_clean(params), headers=headers, stream=True)
        with r:
            if r.status_code >= 400:
                raise _error(service, r)
            try:
                yield from r.iter_lines(chunk_size=64 * 1024)
            except requests.RequestException as exc:
                raise NetworkError(f"{service}: the connection broke off mid-answer ({_reason(exc)})") from None

    def _send(self, method: str, service: str, path: str, **kw: Any) -> requests.Response:
        base = self.settings.url(service)
        headers = {"X-Request-ID": f"cli-{uuid.uuid4().hex[:16]}", **kw.pop("headers", {})}
        try:
            return self._http.request(method, base + path, headers=headers, timeout=self.settings.timeout, **kw)
        except requests.RequestException as exc:
            raise NetworkError(f"cannot reach the {service} service at {base}: {_reason(exc)}") from None


def _clean(params: Mapping[str, Any] | None) -> dict[str, Any]:
    return {k: v for k, v in (params or {}).items() if v is not None}


def _json(r: requests.Response, service: str) -> Any:
    try:
        return r.json()
    except ValueError:
        raise ApiError(service, r.status_code, None, "the answer is not JSON") from None


def _error(service: str, r: requests.Response, *, prefix: str = "") -> ApiError:
    """The answer as an :class:`ApiError`: a problem document, an RFC 6749 error, or just the status."""
    request_id = r.headers.get("X-Request-ID")
    try:
        body = r.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        return ApiError(service, r.status_code, None, prefix + (r.reason or "no error document"), request_id=request_id)
    if "error" in body and "code" not in body:
        return ApiError(
            service,
            r.status_code,
            str(body["error"]),
            prefix + str(body.get("error_description") or ""),
            request_id=request_id,
        )
    errors = body.get("errors") if isinstance(body.get("errors"), list) else None
    detail = body.get("detail") or body.get("title")
    return ApiError(
        service,
        r.status_code,
        body.get("code"),
        prefix + str(detail) if detail else prefix or None,
        errors=errors,
        request_id=body.get("request_id") or request_id,
    )


def _reason(exc: requests.RequestException) -> str:
    """A few words for what failed, without urllib3's nested reprs."""
    if isinstance(exc, requests.ConnectTimeout):
        return "timed out connecting"
    if isinstance(exc, requests.ReadTimeout):
        return "timed out waiting for the answer"
    if isinstance(exc, requests.exceptions.SSLError):
        return "TLS handshake failed"
    text = str(exc)
    for known in ("Connection refused", "Name or service not known", "nodename nor servname", "Connection reset"):
        if known in text:
            return known.lower()
    if isinstance(exc, requests.exceptions.ChunkedEncodingError):
        return "the answer was cut short"
    if isinstance(exc, requests.ConnectionError):
        return "connection failed"
    return type(exc).__name__
