"""aerie.wsgi_guard on its own: the limits' exact edges and the de-chunked input's reads.

The behaviour over the real uWSGI (what its parser drops, chunked bodies end to end) is in
service_tests/test_transport.py; these pin what a raw socket test cannot measure finely.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from typing import Any

import pytest

from aerie.wsgi_guard import MAX_HEADER_BYTES, MAX_HEADER_FIELDS, MAX_TARGET_BYTES, ChunkedBody, guarded


class Reached:
    """The wrapped app: records that it ran and with what environ."""

    def __init__(self) -> None:
        self.environ: dict[str, Any] | None = None

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        self.environ = environ
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]


def call(app: Callable[..., Iterable[bytes]], environ: dict[str, Any]) -> tuple[str, dict[str, str], bytes]:
    seen: list[Any] = []
    body = b"".join(app(environ, lambda status, headers: seen.extend([status, dict(headers)])))
    return seen[0], seen[1], body


def environ(target: str = "/v1/things?limit=5", **headers: str) -> dict[str, Any]:
    path, _, query = target.partition("?")
    return {
        "REQUEST_METHOD": "GET",
        "REQUEST_URI": target,
        "PATH_INFO": path,
        "QUERY_STRING": query,
        "SERVER_PROTOCOL": "HTTP/1.1",
        **{f"HTTP_{name.upper().replace('-', '_')}": value for name, value in headers.items()},
    }


def test_an_ordinary_request_reaches_the_app_untouched() -> None:
    app = Reached()
    env = environ(Host="test", Authorization="Bearer abc")
    status, _, body = call(guarded(app), env)
    assert (status, body) == ("200 OK", b"ok")
    assert app.environ is env and "wsgi.input_terminated" not in env


@pytest.mark.parametrize("dropped", ["QUERY_STRING", "PATH_INFO", "REQUEST_URI"])
def test_a_request_uwsgi_could_not_fit_is_414_with_the_request_id(dropped: str) -> None:
    app = Reached()
    env = environ("/v1/projects?status=archived", **{"X-Request-ID": "cut-1"})
    del env[dropped]
    status, headers, body = call(guarded(app), env)
    assert status == "414 URI Too Long" and app.environ is None
    assert headers["Content-Type"] == "application/problem+json" and headers["X-Request-ID"] == "cut-1"
    problem = json.loads(body)
    assert problem["code"] == "bad_request" and problem["status"] == 414 and problem["request_id"] == "cut-1"
    assert int(headers["Content-Length"]) == len(body)


def test_the_target_limit_is_inclusive() -> None:
    target = "/x?q=" + "a" * (MAX_TARGET_BYTES - 5)
    assert len(target) == MAX_TARGET_BYTES
    assert call(guarded(Reached()), environ(target))[0] == "200 OK"
    assert call(guarded(Reached()), environ(target + "a"))[0] == "414 URI Too Long"


def test_the_header_byte_limit_counts_each_line_as_sent() -> None:
    # "X-Pad: <value>\r\n" is 5 + 2 + len(value) + 2 bytes, beside "Host: test\r\n" (12).
    value = "a" * (MAX_HEADER_BYTES - 12 - 9)
    assert call(guarded(Reached()), environ(Host="test", **{"X-Pad": value}))[0] == "200 OK"
    refused = call(guarded(Reached()), environ(Host="test", **{"X-Pad": value + "a"}))
    assert refused[0] == "431 Request Header Fields Too Large"


def test_the_header_field_limit() -> None:
    fields = {f"X-F{i}": "v" for i in range(MAX_HEADER_FIELDS)}
    assert call(guarded(Reached()), environ(**fields))[0] == "200 OK"
    fields["X-One-More"] = "v"
    assert call(guarded(Reached()), environ(**fields))[0] == "431 Request Header Fields Too Large"


def test_a_chunked_request_gets_the_de_chunked_body_as_its_input() -> None:
    app = Reached()
    chunks = iter([b'{"na', b'me": ', b'"x"}', b""])
    env = environ(**{"Transfer-Encoding": "chunked"})
    assert call(guarded(app, chunked_read=lambda: next(chunks)), env)[0] == "200 OK"
    assert app.environ is not None and app.environ["wsgi.input_terminated"] is True
    assert app.environ["wsgi.input"].read(1024) == b'{"name": "x"}'


def test_without_a_de_chunker_a_chunked_input_is_left_unterminated() -> None:
    """Outside uWSGI nothing de-chunks: the input is not marked as ending at the body's end,
    so ``read_body`` refuses it (411) instead of reading framing bytes as the body."""
    app = Reached()
    env = environ(**{"Transfer-Encoding": "chunked"})
    assert call(guarded(app, chunked_read=None), env)[0] == "200 OK"
    assert app.environ is not None and "wsgi.input_terminated" not in app.environ


def test_chunked_body_reads_only_what_is_asked_across_chunk_edges() -> None:
    pulled: list[bytes] = []
    chunks = iter([b"abc", b"defg", b"hi", b""])

    def read_chunk() -> bytes:
        pulled.append(chunk := next(chunks))
        return chunk

    body = ChunkedBody(read_chunk)
    assert body.read(5) == b"abcde"
    assert pulled == [b"abc", b"defg"]  # the third chunk is not pulled for five bytes
    assert body.read(2) == b"fg"
    assert body.read() == b"hi"
    assert body.read(10) == b"" and body.read() == b""


def test_chunked_body_passes_on_the_de_chunkers_error() -> None:
    def broken() -> bytes:
        raise OSError("unable to receive chunked part")

    with pytest.raises(OSError, match="chunked part"):
        ChunkedBody(broken).read(100)
