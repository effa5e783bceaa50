"""The standard middleware stack, in the order the app factory installs it.

1. :class:`RequestContextMiddleware`: request id, timing, one JSON access-log line.
2. :class:`AuthMiddleware`: verifies the bearer token and the route's declared scopes.
3. :class:`BodyMiddleware`: media type, size limit, JSON parsing, Cerberus validation of
   the body and query string.

Each needs the responder's :class:`~aerie.endpoints.Endpoint` declaration; routes use no
suffixes, so the responder is always ``on_<method>``. :func:`spec_for` looks it up once per
request and keeps it on ``req.context.endpoint``.
"""

from __future__ import annotations

import os
import re
import threading
import time
from typing import Any

import falcon
from cachetools import LRUCache

from aerie import errors
from aerie.auth.tokens import InvalidToken, KeysUnavailable, TokenVerifier
from aerie.endpoints import Endpoint, endpoint_of
from aerie.i18n import msg
from aerie.json_input import NotStorable, NotUTF8, loads_json
from aerie.logs import AccessLog
from aerie.metrics import UNMATCHED, Metrics
from aerie.pubsub import Subscriber
from aerie.validation import validate
from aerie_client.http.context import set_request_id

__all__ = ["MAX_BODY_BYTES", "AuthMiddleware", "BodyMiddleware", "RequestContextMiddleware", "spec_for"]

MAX_BODY_BYTES = 1024 * 1024
MAX_CACHED_QUERY = 256
REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._-]{1,128}$")


_UNSET: Any = object()


def spec_for(req: falcon.Request, resource: object) -> Endpoint | None:
    """The responder's declaration, looked up once per request and kept on ``req.context``."""
    if resource is None:
        return None
    spec = getattr(req.context, "endpoint", _UNSET)
    if spec is _UNSET:
        spec = endpoint_of(getattr(resource, "on_" + req.method.lower(), None))
        req.context.endpoint = spec
    return spec


class RequestContextMiddleware:
    def __init__(self, access_log: AccessLog, metrics: Metrics | None = None) -> None:
        self._access_log = access_log
        self._metrics = metrics

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        # Headers come straight from the WSGI environ on the hot path: Falcon's get_header raises
        # and catches a KeyError for each absent one (most requests send no X-Request-ID).
        incoming = req.env.get("HTTP_X_REQUEST_ID")
        # 128 random bits as 32 hex digits, as uuid4().hex gave, without building a UUID.
        request_id = incoming if incoming and REQUEST_ID_RE.match(incoming) else os.urandom(16).hex()
        req.context.request_id = request_id
        req.context.started = time.perf_counter()
        # Cloud Foundry's router names each request in its own log lines (`cf logs` RTR) and
        # sends that id along: logged beside ours, the two lines join.
        vcap = req.env.get("HTTP_X_VCAP_REQUEST_ID")
        if vcap is not None and not REQUEST_ID_RE.match(vcap):
            vcap = None
        req.context.vcap_request_id = vcap
        set_request_id(request_id, vcap)
        resp.set_header("X-Request-ID", request_id)

    def process_response(
        self, req: falcon.Request, resp: falcon.Response, resource: object, req_succeeded: bool
    ) -> None:
        resp.set_header("X-Request-ID", req.context.request_id)
        principal = getattr(req.context, "principal", None)
        seconds = time.perf_counter() - req.context.started
        if self._metrics is not None:
            self._metrics.observe_request(req.uri_template or UNMATCHED, req.method, resp.status_code, seconds)
        self._access_log.write(
            {
                "request_id": req.context.request_id,
                "vcap_request_id": req.context.vcap_request_id,
                "tenant_id": principal.tenant_id if principal else None,
                "client_id": principal.client_id if principal else None,
                "method": req.method,
                "path": req.path,
                "status": resp.status_code,
                # Hundredths of a millisecond, without round(x, 2), which goes through a decimal string.
                "duration_ms": round(seconds * 100_000) / 100,
            }
        )
        set_request_id(None)


def _bearer_challenge(error: str | None = None, description: str | None = None, scope: str | None = None) -> str:
    parts = ['Bearer realm="aerie"']
    if error:
        parts.append(f'error="{error}"')
    if description:
        parts.append('error_description="{}"'.format(description.replace('"', "'")))
    if scope:
        parts.append(f'scope="{scope}"')
    return ", ".join(parts)


class AuthMiddleware:
    """Authenticates with the token verifier and authorizes by the route's declaration."""

    def __init__(
        self, verifier: TokenVerifier, subscriber: Subscriber | None = None, metrics: Metrics | None = None
    ) -> None:
        self._verifier = verifier
        self._subscriber = subscriber
        self._metrics = metrics

    def process_resource(
        self, req: falcon.Request, resp: falcon.Response, resource: object, params: dict[str, Any]
    ) -> None:
        spec = spec_for(req, resource)
        if spec is None or spec.scopes is None:
            return
        if self._subscriber is not None:
            self._subscriber.ensure_started()
        header = req.env.get("HTTP_AUTHORIZATION")
        if not header:
            raise errors.Problem(
                401,
                "unauthorized",
                msg("This route needs a bearer token."),
                headers={"WWW-Authenticate": _bearer_challenge()},
            )
        scheme, _, token = header.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise errors.Problem(
                401,
                "unauthorized",
                msg("Use the Bearer authorization scheme."),
                headers={"WWW-Authenticate": _bearer_challenge()},
            )
        try:
            principal = self._verifier.verify(token)
        except InvalidToken as exc:
            if self._metrics is not None:
                self._metrics.token("invalid")
            # The detail is translatable (a Message); the challenge header stays English.
            raise errors.Problem(
                401,
                "invalid_token",
                exc.args[0] if exc.args else str(exc),
                headers={"WWW-Authenticate": _bearer_challenge("invalid_token", str(exc))},
            ) from None
        except KeysUnavailable:
            if self._metrics is not None:
                self._metrics.token("unavailable")
            raise errors.unavailable(msg("The token issuer's keys cannot be fetched right now.")) from None
        if self._metrics is not None:
            self._metrics.token("ok")
        if spec.scopes and not principal.has_any(spec.scopes):
            needed = " ".join(spec.scopes)
            raise errors.Problem(
                403,
                "insufficient_scope",
                msg("This route needs one of these scopes: %(scopes)s.", scopes=needed),
                headers={"WWW-Authenticate": _bearer_challenge("insufficient_scope", scope=needed)},
            )
        if spec.tenant and principal.is_platform:
            raise errors.Problem(403, "tenant_required", msg("This route acts on a tenant; use a tenant-bound token."))
        req.context.principal = principal


def _is_json(content_type: str | None) -> bool:
    """Whether ``content_type`` is JSON, in UTF-8: the only charset JSON has (RFC 8259)."""
    if not content_type:
        return False
    media, _, params = content_type.partition(";")
    media = media.strip().lower()
    if not (media == "application/json" or (media.startswith("application/") and media.endswith("+json"))):
        return False
    if "charset" in params.lower():
        for param in params.split(";"):
            name, _, value = param.partition("=")
            if name.strip().lower() == "charset" and value.strip().strip('"').lower() not in ("utf-8", "utf8"):
                return False
    return True


def _parse_body(raw: bytes) -> Any:
    try:
        return loads_json(raw)
    except NotUTF8:
        raise errors.bad_request(msg("JSON bodies must be UTF-8, without a byte order mark (RFC 8259).")) from None
    except NotStorable as exc:
        if exc.errors:
            raise errors.validation_error(exc.errors, detail=msg("The request body has invalid fields.")) from None
        raise errors.bad_request(
            msg("The body holds a number out of range or text that is not Unicode (an unpaired surrogate).")
        ) from None
    except (ValueError, UnicodeDecodeError, RecursionError):  # nesting deeper than json allows
        raise errors.bad_request(msg("The body is not valid JSON.")) from None


#: No body was sent (as opposed to a JSON ``null``).
_NO_BODY = object()


def read_body(req: falcon.Request, limit: int = MAX_BODY_BYTES) -> bytes:
    """The request body, refusing more than ``limit`` bytes (413) whatever the framing, a body
    that stops short of its ``Content-Length`` or last chunk (400), and a chunked body the
    server cannot de-chunk (411): a body that was sent is never taken for an empty one."""
    length = req.content_length
    if length is not None and length > limit:
        raise errors.Problem(413, "payload_too_large", msg("Bodies are limited to %(limit)s bytes.", limit=limit))
    if length is not None:
        # Exactly the declared length, as Falcon's own form parser reads it (bounded_stream
        # would build a wrapper per request to do the same).
        data = _read(req, length) if length else b""
        if len(data) < length:
            raise _body_cut_short()
        return data
    # Without a Content-Length the body is chunked, or there is none. A server that de-chunks
    # says so with wsgi.input_terminated (under uWSGI, aerie.wsgi_guard), and the input then
    # ends at the body's end.
    if not req.env.get("wsgi.input_terminated"):
        if req.env.get("HTTP_TRANSFER_ENCODING"):
            raise errors.Problem(
                411,
                "bad_request",
                msg("This server cannot read a chunked body here; send it with a Content-Length."),
            )
        return b""
    data = _read(req, limit + 1, chunked=True)
    if len(data) > limit:
        raise errors.Problem(413, "payload_too_large", msg("Bodies are limited to %(limit)s bytes.", limit=limit))
    return data


def _read(req: falcon.Request, size: int, *, chunked: bool = False) -> bytes:
    try:
        return req.stream.read(size)
    except OSError:
        # uWSGI raises when the client goes quiet for its socket-timeout, or goes away,
        # before the body's end, and on chunked framing it cannot parse: the client's doing,
        # not a fault of ours.
        raise _body_cut_short(chunked=chunked) from None


def _body_cut_short(*, chunked: bool = False) -> errors.Problem:
    if chunked:
        return errors.bad_request(
            msg(
                "The chunked body is malformed, has a chunk larger than the server buffers, "
                "or stopped arriving before its last chunk."
            )
        )
    return errors.bad_request(msg("The body ended before its Content-Length, or stopped arriving."))


class BodyMiddleware:
    """Parses and validates JSON bodies, query strings and path parameters per the route's declaration.

    The validated body is ``req.context.body``, the validated, coerced query is
    ``req.context.query`` and declared path parameters reach the responder validated;
    resources never parse input themselves.
    """

    def __init__(self, max_body_bytes: int = MAX_BODY_BYTES) -> None:
        self._max = max_body_bytes
        # Validated queries by route and query string: most requests repeat one of a few
        # (``?limit=50``), and Cerberus spends ~50 us on even a two-field query. Only short
        # strings are kept, so the cache stays small whatever clients send.
        self._queries: LRUCache[tuple[int, str], dict[str, Any]] = LRUCache(maxsize=512)
        self._queries_lock = threading.Lock()

    def _validated_query(self, req: falcon.Request, spec: Endpoint) -> dict[str, Any]:
        assert spec.query is not None
        raw = req.query_string
        if len(raw) > MAX_CACHED_QUERY:
            return validate(spec.query, _query_document(req), location="query")
        key = (id(spec), raw)
        with self._queries_lock:
            known = self._queries.get(key)
        if known is None:
            known = validate(spec.query, _query_document(req), location="query")
            with self._queries_lock:
                self._queries[key] = known
        return known.copy()

    def process_resource(
        self, req: falcon.Request, resp: falcon.Response, resource: object, params: dict[str, Any]
    ) -> None:
        spec = spec_for(req, resource)
        if spec is None:
            return
        if spec.path is not None:
            params.update(validate(spec.path, {name: params[name] for name in spec.path}, location="path"))
        if spec.query is not None:
            req.context.query = self._validated_query(req, spec)
        if req.method not in ("POST", "PUT", "PATCH") or spec.media != "json":
            return
        has_body = bool(req.content_length) or "HTTP_TRANSFER_ENCODING" in req.env
        body: Any = _NO_BODY
        if has_body:
            if not _is_json(req.content_type):
                raise errors.Problem(415, "unsupported_media_type", msg("Send the body as application/json, in UTF-8."))
            raw = read_body(req, self._max)
            if raw.strip():
                body = _parse_body(raw)
        if spec.body is None:
            if body is not _NO_BODY and body not in (None, {}):
                raise errors.bad_request(msg("This route takes no body."))
            return
        if body is _NO_BODY:
            body = {}
        # Valid JSON that is not an object (a list, a number, a JSON null) is a body of the
        # wrong shape, not malformed JSON: 422, with the whole body as the field ("").
        if not isinstance(body, dict):
            raise errors.validation_error(
                [{"field": "", "message": msg("must be a JSON object")}], detail=msg("The body must be a JSON object.")
            )
        req.context.body = spec.check(body) if spec.check is not None else validate(spec.body, body, location="body")


def _query_document(req: falcon.Request) -> dict[str, Any]:
    doc: dict[str, Any] = {}
    for key, value in req.params.items():
        if isinstance(value, list):
            raise errors.validation_error([{"field": key, "message": msg("may be given only once")}])
        doc[key] = value
    return doc
