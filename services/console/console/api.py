"""The services, called with the signed-in person's own token and nothing else.

A refusal comes back as :class:`ServiceProblem`: the problem document's title, detail and
request id (RFC 9457), which the page shows as they are, so a person can quote the id. A
service that cannot be reached is a problem too (503), never a traceback.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import requests

from aerie.i18n import msg
from console.config import ConsoleConfig

__all__ = ["Api", "Download", "ServiceProblem"]


class ServiceProblem(Exception):
    def __init__(
        self,
        status: int,
        title: str,
        detail: str,
        request_id: str | None,
        code: str | None = None,
        errors: list[dict[str, Any]] | None = None,
    ) -> None:
        super().__init__(f"{status} {title}: {detail}")
        self.status = status
        self.title = title
        self.detail = detail
        self.request_id = request_id
        self.code = code
        #: A 422's ``[{"field", "message"}]``, so a form shows each next to its field.
        self.errors = errors or []


def segment(value: str) -> str:
    """One path segment, so a value from a URL can never reach another route."""
    return quote(value, safe="")


class Api:
    def __init__(self, config: ConsoleConfig, http: requests.Session | None = None) -> None:
        self._bases = {
            "tenants": config.tenants_url,
            "projects": config.projects_url,
            "flags": config.flags_url,
            "audit": config.audit_url,
        }
        self._timeout = config.timeout_s
        self._http = http or requests.Session()

    def call(
        self,
        token: str,
        method: str,
        service: str,
        path: str,
        *,
        json: Any = None,
        params: dict[str, Any] | None = None,
        language: str | None = None,
        if_match: int | None = None,
    ) -> Any:
        headers = self._headers(token, language)
        if if_match is not None:
            # The version the person's form was read at: a change made since is 412, not overwritten.
            headers["If-Match"] = f'"{int(if_match)}"'
        resp = self._send(method, service, path, json=json, params=params, headers=headers)
        if resp.status_code == 204:
            return None
        try:
            body = resp.json()
        except ValueError:
            body = None
        if resp.status_code >= 400:
            raise _problem(resp, body, service)
        return body

    def stream(
        self, token: str, service: str, path: str, *, params: dict[str, Any] | None = None, language: str | None = None
    ) -> Download:
        """A GET whose answer is passed on as it arrives (an export), never held whole in memory.

        A refusal is a :class:`ServiceProblem`, as for :meth:`call`, before anything is passed on.
        """
        headers = self._headers(token, language)
        headers["Accept"] = "*/*"
        resp = self._send("GET", service, path, params=params, headers=headers, stream=True)
        if resp.status_code >= 400:
            try:
                body = resp.json()
            except ValueError:
                body = None
            finally:
                resp.close()
            raise _problem(resp, body, service)
        return Download(
            resp.headers.get("Content-Type") or "application/octet-stream",
            resp.headers.get("Content-Disposition"),
            _chunks(resp),
        )

    def event_stream(self, token: str, service: str, path: str, *, read_timeout: float) -> requests.Response:
        """An open ``text/event-stream`` response (the caller closes it), or :class:`ServiceProblem`.

        The token goes in the header, as on every call: it never reaches the browser.
        """
        headers = {"Authorization": f"Bearer {token}", "Accept": "text/event-stream"}
        try:
            resp = self._http.get(
                self._bases[service] + path, headers=headers, stream=True, timeout=(self._timeout, read_timeout)
            )
        except requests.RequestException:
            raise ServiceProblem(
                503,
                msg("Service unavailable"),
                msg("The %(service)s service did not answer. Try again in a moment.", service=service),
                None,
            ) from None
        if resp.status_code != 200:
            resp.close()
            raise ServiceProblem(
                resp.status_code,
                msg("Error"),
                msg("The %(service)s service answered %(status)s.", service=service, status=resp.status_code),
                resp.headers.get("X-Request-ID"),
            )
        return resp

    @staticmethod
    def _headers(token: str, language: str | None) -> dict[str, str]:
        headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
        if language:
            headers["Accept-Language"] = language
        return headers

    def _send(self, method: str, service: str, path: str, **kw: Any) -> requests.Response:
        try:
            return self._http.request(method, self._bases[service] + path, timeout=self._timeout, **kw)
        except requests.RequestException:
            raise ServiceProblem(
                503,
                msg("Service unavailable"),
                msg("The %(service)s service did not answer. Try again in a moment.", service=service),
                None,
            ) from None


@dataclass(frozen=True)
class Download:
    """A streamed answer: its media type, its ``Content-Disposition`` and its bytes as they come."""

    content_type: str
    disposition: str | None
    chunks: Iterator[bytes]


#: What an export is passed on in: large enough to keep per-chunk overhead low, small enough for memory.
CHUNK_BYTES = 64 * 1024


def _chunks(resp: requests.Response) -> Iterator[bytes]:
    try:
        yield from resp.iter_content(CHUNK_BYTES)
    finally:
        resp.close()


def _problem(resp: requests.Response, body: Any, service: str) -> ServiceProblem:
    problem = body if isinstance(body, dict) else {}
    return ServiceProblem(
        resp.status_code,
        # The service's own words are already in the person's language (Accept-Language).
        str(problem.get("title") or "") or msg("Error"),
        str(problem.get("detail") or "")
        or msg("The %(service)s service answered %(status)s.", service=service, status=resp.status_code),
        problem.get("request_id") or resp.headers.get("X-Request-ID"),
        problem.get("code"),
        [e for e in problem.get("errors") or () if isinstance(e, dict)],
    )
