"""The request as uWSGI's HTTP parser hands it over, checked before any service code sees it.

:func:`guarded` wraps each service's WSGI callable (``services/<name>/<name>/wsgi.py``), the
outermost layer of every request a worker serves. It covers what uWSGI 2.0's ``http-socket``
does without a word:

- **Heads that do not fit.** uWSGI packs the request line and the headers into one buffer
  (``buffer-size`` in ``shared/uwsgi/base.ini``) and drops any variable that no longer fits,
  logging a warning and serving the request anyway: a long query string left
  ``QUERY_STRING`` out (a filtered list came back unfiltered) and a long path left
  ``PATH_INFO`` out (a ``KeyError`` in Falcon). A request missing one of them, or whose
  target is longer than :data:`MAX_TARGET_BYTES`, is answered 414; headers over
  :data:`MAX_HEADER_BYTES` or :data:`MAX_HEADER_FIELDS` are answered 431. Both limits sit
  well inside the buffer, so every head within them reaches the app whole. A head larger
  than the buffer never reaches Python: uWSGI closes the connection unanswered.
- **Chunked request bodies.** uWSGI 2.0 gives the app no ``Content-Length`` and an empty
  ``wsgi.input`` for them (``wsgi-manage-chunked-input`` exists only in uWSGI's development
  branch, 2.1). Here ``wsgi.input`` becomes the body uWSGI de-chunks
  (``uwsgi.chunked_read``, bounded by ``chunked-input-limit`` and ``chunked-input-timeout``)
  and ``wsgi.input_terminated`` is set, the flag servers that de-chunk give (mod_wsgi,
  gunicorn, uWSGI 2.1), so ``aerie.middleware.read_body`` reads it to its end under the
  same 1 MiB limit as any body. A ``Transfer-Encoding`` other than ``chunked``, or one
  beside a ``Content-Length``, is refused (400): two framings that disagree are how
  requests are smuggled past a proxy.

Refusals are problem documents in the contract's shape (code ``bad_request``: the contract
has no code of its own for 414 or 431), with the request id echoed as everywhere else,
and one log line each (logger ``aerie.http``), since they never reach the access log.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Iterable
from typing import Any

from aerie.errors import PROBLEM_JSON, TITLES
from aerie.middleware import REQUEST_ID_RE

__all__ = ["MAX_HEADER_BYTES", "MAX_HEADER_FIELDS", "MAX_TARGET_BYTES", "ChunkedBody", "guarded"]

#: The longest request target (path and query) served; longer is 414.
MAX_TARGET_BYTES = 8 * 1024
#: The most header bytes served (``Name: value`` lines, as sent); more is 431.
MAX_HEADER_BYTES = 32 * 1024
#: The most header fields served; more is 431. uWSGI itself holds about 118 (``max-vars``).
MAX_HEADER_FIELDS = 100

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]

log = logging.getLogger("aerie.http")

try:
    import uwsgi  # type: ignore[import-not-found]  # present only inside uWSGI processes

    _chunked_read: Callable[[], bytes] | None = uwsgi.chunked_read
except (ImportError, AttributeError):
    _chunked_read = None

#: Status lines of the refusals, in RFC 9110's words (Python's own differ between versions).
_REASONS = {400: "Bad Request", 414: "URI Too Long", 431: "Request Header Fields Too Large"}
# CONTENT_TYPE and CONTENT_LENGTH are headers that reach WSGI without the HTTP_ prefix.
_UNPREFIXED_HEADERS = ("CONTENT_TYPE", "CONTENT_LENGTH")


class ChunkedBody:
    """``wsgi.input`` for a chunked request: the de-chunked body, read up to its end.

    ``read_chunk`` returns the next chunk's data and ``b""`` after the last one, and raises
    ``OSError`` when the framing is broken, a chunk is larger than uWSGI buffers, or the
    client stops sending (what ``uwsgi.chunked_read`` does). Only as much is pulled as a
    ``read`` asks for, so a reader's own limit bounds what is buffered.
    """

    def __init__(self, read_chunk: Callable[[], bytes]) -> None:
        self._read_chunk = read_chunk
        self._buffer = bytearray()
        self._ended = False

    def read(self, size: int | None = -1) -> bytes:
        wanted = -1 if size is None or size < 0 else size
        while not self._ended and (wanted < 0 or len(self._buffer) < wanted):
            chunk = self._read_chunk()
            if chunk:
                self._buffer += chunk
            else:
                self._ended = True
        if wanted < 0 or wanted >= len(self._buffer):
            data = bytes(self._buffer)
            self._buffer.clear()
        else:
            data = bytes(self._buffer[:wanted])
            del self._buffer[:wanted]
        return data


def guarded(app: WSGIApp, *, chunked_read: Callable[[], bytes] | None = None) -> WSGIApp:
    """``app`` behind the checks above. ``chunked_read`` defaults to uWSGI's own (tests pass theirs)."""
    read_chunk = chunked_read or _chunked_read

    def application(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        refusal = _refusal(environ)
        if refusal is None and "HTTP_TRANSFER_ENCODING" in environ:
            refusal = _take_chunked_body(environ, read_chunk)
        if refusal is not None:
            return _problem(environ, start_response, *refusal)
        return app(environ, start_response)

    return application


def _refusal(environ: dict[str, Any]) -> tuple[int, str] | None:
    """Status and detail for a head this app must not serve, or None."""
    uri = environ.get("REQUEST_URI")
    if uri is None or "PATH_INFO" not in environ or "QUERY_STRING" not in environ:
        return 414, f"The request target is longer than {MAX_TARGET_BYTES} bytes."
    if len(uri) > MAX_TARGET_BYTES:
        return 414, f"The request target is longer than {MAX_TARGET_BYTES} bytes."
    fields = size = 0
    for key, value in environ.items():
        if key.startswith("HTTP_"):
            fields += 1
            size += len(key) - 1 + len(value)  # "Name: value\r\n": the key without "HTTP_", plus 4
        elif key in _UNPREFIXED_HEADERS:
            fields += 1
            size += len(key) + 4 + len(value)
    if fields > MAX_HEADER_FIELDS:
        return 431, f"A request may carry at most {MAX_HEADER_FIELDS} header fields."
    if size > MAX_HEADER_BYTES:
        return 431, f"The request headers are larger than {MAX_HEADER_BYTES} bytes."
    return None


def _take_chunked_body(environ: dict[str, Any], read_chunk: Callable[[], bytes] | None) -> tuple[int, str] | None:
    """Give the app a chunked body it can read to its end, or say why the framing is refused."""
    coding = environ["HTTP_TRANSFER_ENCODING"].strip().lower()
    if coding != "chunked":
        return 400, "Request bodies may use only the chunked transfer coding."
    if environ.get("CONTENT_LENGTH"):
        return 400, "A request may not carry both Content-Length and Transfer-Encoding."
    if read_chunk is not None and not environ.get("wsgi.input_terminated"):
        environ["wsgi.input"] = ChunkedBody(read_chunk)
        environ["wsgi.input_terminated"] = True
    return None


def _problem(environ: dict[str, Any], start_response: Callable[..., Any], status: int, detail: str) -> Iterable[bytes]:
    incoming = environ.get("HTTP_X_REQUEST_ID")
    request_id = incoming if incoming and REQUEST_ID_RE.match(incoming) else os.urandom(16).hex()
    body = json.dumps(
        {
            "type": "urn:aerie:problem:bad_request",
            "title": TITLES["bad_request"],
            "status": status,
            "detail": detail,
            "code": "bad_request",
            "request_id": request_id,
        }
    ).encode()
    log.info(
        "request refused before the app",
        extra={"request_id": request_id, "method": environ.get("REQUEST_METHOD"), "status": status, "reason": detail},
    )
    start_response(
        f"{status} {_REASONS[status]}",
        [("Content-Type", PROBLEM_JSON), ("Content-Length", str(len(body))), ("X-Request-ID", request_id)],
    )
    return [body]
