"""RFC 9457 problem documents for every error a service can answer.

Falcon has no problem+json of its own (falconry/falcon#157), so this module gives one
serializer for everything: our own :class:`Problem` errors, Falcon's 404/405/413/415 and
media errors, Redis being away or full (503 with ``Retry-After``), and anything unexpected
(500, logged with its traceback, answered without detail).

Titles and details are written in the request's language (:mod:`aerie.i18n`) with
``Content-Language``: a detail made with :func:`aerie.i18n.msg` is translated when the
document is written, a plain ``str`` is sent as it is.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping
from typing import Any

import falcon
import redis

from aerie.i18n.catalogs import SOURCE_LANGUAGE
from aerie.i18n.messages import msg, translate
from aerie.redis import REDIS_DOWN, REDIS_FULL, is_redis_full
from aerie_client.http.errors import CredentialsRejected, PeerUnavailable

__all__ = [
    "PROBLEM_JSON",
    "FieldError",
    "Problem",
    "bad_request",
    "conflict",
    "forbidden",
    "install_error_handling",
    "not_found",
    "precondition_failed",
    "unavailable",
    "validation_error",
]

PROBLEM_JSON = "application/problem+json"
log = logging.getLogger("aerie.errors")
#: Seconds a client waits before retrying a write Redis refused as full: freeing memory
#: takes an operator or a retention sweep, not a second.
REDIS_FULL_RETRY_AFTER_S = 30
#: Endpoints that take a form body are OAuth 2.0 ones (the token endpoint): their clients read
#: RFC 6749 section 5.2 errors, ``{"error": ...}``, not problem documents.
OAUTH_FORM_MEDIA = "application/x-www-form-urlencoded"

#: The contract's code for each status, used for errors raised without one (Falcon's own).
CODES_BY_STATUS: Mapping[int, str] = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    412: "precondition_failed",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    429: "rate_limited",
    500: "internal_error",
    503: "unavailable",
}

TITLES: Mapping[str, str] = {
    "bad_request": msg("Bad request"),
    "unauthorized": msg("Authentication required"),
    "invalid_token": msg("Invalid token"),
    "insufficient_scope": msg("Insufficient scope"),
    "forbidden": msg("Forbidden"),
    "tenant_required": msg("Tenant token required"),
    "tenant_suspended": msg("Tenant suspended"),
    "not_found": msg("Not found"),
    "method_not_allowed": msg("Method not allowed"),
    "conflict": msg("Conflict"),
    "precondition_failed": msg("Precondition failed"),
    "payload_too_large": msg("Payload too large"),
    "unsupported_media_type": msg("Unsupported media type"),
    "validation_error": msg("Validation failed"),
    "rate_limited": msg("Too many requests"),
    "internal_error": msg("Internal error"),
    "unavailable": msg("Service unavailable"),
}

FieldError = dict[str, str]


class Problem(falcon.HTTPError):
    """An error with one of the contract's codes; rendered as problem+json."""

    def __init__(
        self,
        status: int,
        code: str,
        detail: str | None = None,
        *,
        errors: Iterable[FieldError] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(status, title=TITLES.get(code, code), description=detail, headers=dict(headers or {}))
        self.problem_code = code
        self.errors = list(errors) if errors is not None else None


def bad_request(detail: str) -> Problem:
    return Problem(400, "bad_request", detail)


def forbidden(detail: str, code: str = "forbidden") -> Problem:
    return Problem(403, code, detail)


def not_found(detail: str | None = None) -> Problem:
    return Problem(404, "not_found", msg("The resource does not exist.") if detail is None else detail)


def conflict(detail: str) -> Problem:
    return Problem(409, "conflict", detail)


def precondition_failed(detail: str | None = None) -> Problem:
    return Problem(
        412, "precondition_failed", msg("The resource has changed; fetch it again.") if detail is None else detail
    )


def validation_error(errors: Iterable[FieldError], detail: str | None = None) -> Problem:
    return Problem(
        422, "validation_error", msg("The request has invalid fields.") if detail is None else detail, errors=errors
    )


def unavailable(detail: str, retry_after: int = 1) -> Problem:
    return Problem(503, "unavailable", detail, headers={"Retry-After": str(retry_after)})


def problem_body(
    req: falcon.Request, status: int, code: str, title: str, detail: str | None, errors: Any
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "type": f"urn:aerie:problem:{code}",
        "title": title,
        "status": status,
        "detail": detail or title,
        "code": code,
        "request_id": getattr(req.context, "request_id", None),
    }
    if errors is not None:
        body["errors"] = errors
    return body


def _language(req: falcon.Request, status: int) -> tuple[str, bool]:
    """The problem's language and whether ``Accept-Language`` had a say in it.

    A 5xx does not ask the tenants service for the tenant's language: it may be the very
    outage being reported. Negotiation never fails the response: English is the fallback.
    """
    negotiated = getattr(req.context, "negotiated_language", None)
    if negotiated is None:
        return SOURCE_LANGUAGE, False
    try:
        language, used_header = negotiated(ask_tenant=status < 500)
    except Exception:
        log.exception("language negotiation failed")
        return SOURCE_LANGUAGE, False
    return language or SOURCE_LANGUAGE, used_header


def _translated_errors(errors: Any, gettext: Any) -> Any:
    """``errors[]`` with each translatable ``message`` in the request's language."""
    if gettext is None or not isinstance(errors, list):
        return errors
    return [
        {**entry, "message": translate(entry["message"], gettext)}
        if isinstance(entry, dict) and isinstance(entry.get("message"), str)
        else entry
        for entry in errors
    ]


def _serialize(req: falcon.Request, resp: falcon.Response, exc: falcon.HTTPError) -> None:
    status = exc.status_code
    code = (
        getattr(exc, "problem_code", None)
        or CODES_BY_STATUS.get(status)
        or ("internal_error" if status >= 500 else "bad_request")
    )
    language, used_header = _language(req, status)
    gettext = _gettext(req, language)
    title = translate(TITLES.get(code, exc.title or code), gettext) or code
    detail = exc.description
    if status >= 500 and code == "internal_error":
        detail = None  # never leak an exception's text
    body = problem_body(
        req, status, code, title, translate(detail, gettext), _translated_errors(getattr(exc, "errors", None), gettext)
    )
    resp.content_type = PROBLEM_JSON
    resp.set_header("Content-Language", language if gettext is not None else SOURCE_LANGUAGE)
    if used_header:
        resp.append_header("Vary", "Accept-Language")
    resp.data = json.dumps(body, ensure_ascii=False).encode()


def _gettext(req: falcon.Request, language: str) -> Any:
    """The translation function of ``language`` (None for English, or when no catalog loads)."""
    if language == SOURCE_LANGUAGE:
        return None
    languages = getattr(req.context, "languages", None)
    if languages is None:
        return None
    try:
        return languages.catalogs.gettext(language)
    except Exception:
        log.exception("catalog unavailable", extra={"language": language})
        return None


def _handle_unexpected(req: falcon.Request, resp: falcon.Response, ex: Exception, params: dict[str, Any]) -> None:
    log.exception(
        "unhandled exception",
        extra={"method": req.method, "path": req.path, "error_type": type(ex).__name__},
    )
    raise Problem(500, "internal_error")


def _handle_redis_down(req: falcon.Request, resp: falcon.Response, ex: Exception, params: dict[str, Any]) -> None:
    log.warning("redis unavailable", extra={"error_type": type(ex).__name__, "path": req.path})
    raise unavailable(msg("A backing service (Redis) is not answering; try again shortly."))


def _handle_redis_full(req: falcon.Request, resp: falcon.Response, ex: Exception, params: dict[str, Any]) -> None:
    """A write refused with ``-OOM``: nothing of it was applied (Redis refuses a command, and a
    ``MULTI`` with a refused command, before running any of it), so the client may simply
    retry later. Not a 500: the request was fine, the store is full."""
    log.warning("redis is full: write refused", extra={"error_type": type(ex).__name__, "path": req.path})
    retry_after = str(REDIS_FULL_RETRY_AFTER_S)
    spec = getattr(req.context, "endpoint", None)
    if getattr(spec, "media", None) == OAUTH_FORM_MEDIA:
        resp.status = 503
        resp.set_header("Retry-After", retry_after)
        resp.set_header("Cache-Control", "no-store")
        resp.content_type = "application/json"
        resp.data = json.dumps(
            {"error": "temporarily_unavailable", "error_description": "The data store is full; try again later."}
        ).encode()
        return
    raise unavailable(msg("The data store (Redis) is full; try again later."), retry_after=REDIS_FULL_RETRY_AFTER_S)


def _handle_redis_error(req: falcon.Request, resp: falcon.Response, ex: Exception, params: dict[str, Any]) -> None:
    """A script's refused write is a full Redis too; any other error reply is a bug (500)."""
    if is_redis_full(ex):
        _handle_redis_full(req, resp, ex, params)
    else:
        _handle_unexpected(req, resp, ex, params)


def _handle_peer_unavailable(req: falcon.Request, resp: falcon.Response, ex: Exception, params: dict[str, Any]) -> None:
    assert isinstance(ex, PeerUnavailable)
    if isinstance(ex, CredentialsRejected):
        detail = msg("This service could not authenticate to the %(peer)s service; try again later.", peer=ex.peer)
    elif ex.slow:
        detail = msg("The %(peer)s service is slow to answer; try again shortly.", peer=ex.peer)
    else:
        detail = msg("The %(peer)s service is not answering; try again shortly.", peer=ex.peer)
    raise unavailable(detail, retry_after=ex.retry_after) from ex


def install_error_handling(app: falcon.App) -> None:
    """Route every error of ``app`` through the problem+json serializer."""
    app.set_error_serializer(_serialize)
    app.add_error_handler(Exception, _handle_unexpected)
    for exc_type in REDIS_DOWN:
        app.add_error_handler(exc_type, _handle_redis_down)
    app.add_error_handler(redis.exceptions.ResponseError, _handle_redis_error)
    app.add_error_handler(PeerUnavailable, _handle_peer_unavailable)
    for exc_type in REDIS_FULL:
        app.add_error_handler(exc_type, _handle_redis_full)
