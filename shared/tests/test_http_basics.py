"""What every service does at the HTTP level, through a real app built by ``create_service_app``."""

from __future__ import annotations

import io
import json
import logging
import os
import re
from collections.abc import Iterator
from typing import Any

import falcon
import falcon.testing
import pytest

from aerie.app import Infrastructure, create_service_app
from aerie.auth.tokens import StaticKeySource
from aerie.config import Settings
from aerie.endpoints import PUBLIC, endpoint
from aerie.errors import Problem
from aerie.json_input import NOT_TEXT, OUT_OF_RANGE, NotStorable, loads_json
from aerie.local.redis_server import free_port
from aerie.logs import LineWriter, configure_logging
from aerie.middleware import MAX_BODY_BYTES, BodyMiddleware
from aerie.pagination import decode_cursor, encode_cursor
from aerie.redis import RedisProvider
from aerie.testing.http import assert_problem
from aerie.testing.keys import TestKey, make_claims
from aerie.validation import LIST_QUERY, MAX_REPORTED_ERRORS, validate
from aerie_client.http.context import current_request_id

ISSUER = "http://issuer.test"
REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._-]{1,128}$")
SECRET_TEXT = "s3cr3t-detail-from-the-database"

ITEM_BODY = {
    "name": {"type": "string", "required": True, "empty": False, "maxlength": 40},
    "size": {"type": "integer", "min": 0, "max": 100},
    "tags": {"type": "list", "schema": {"type": "string"}},
}


class ItemsResource:
    def __init__(self) -> None:
        self.created = 0
        self.fail_next = 0

    @endpoint("List items", scopes=("projects:read",), tenant=True, query=LIST_QUERY)
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        query = req.context.query
        after = decode_cursor(query["cursor"], "after") if query.get("cursor") else None
        resp.media = {"limit": query["limit"], "after": after}

    @endpoint("Create an item", scopes=("projects:write",), tenant=True, body=ITEM_BODY, status=201, idempotent=True)
    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        if self.fail_next:
            self.fail_next -= 1
            raise RuntimeError(SECRET_TEXT)
        self.created += 1
        item_id = f"itm_{self.created}"
        resp.status = falcon.HTTP_201
        resp.location = f"/items/{item_id}"
        resp.media = {"id": item_id, "owner": req.context.principal.client_id, **req.context.body}


class CounterResource:
    """A public route whose responder talks to Redis."""

    def __init__(self, redis: RedisProvider) -> None:
        self._redis = redis

    @endpoint("Count", scopes=PUBLIC)
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = {"n": self._redis.client.incr("demo:counter")}


class RequestIdResource:
    """What code far from the resource (an outgoing call's headers, a log line) sees as the request's id."""

    @endpoint("The current request id", scopes=PUBLIC)
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        logging.getLogger("demo.deep").warning("something worth a line")
        resp.media = {"current": current_request_id()}


class BoomResource:
    @endpoint("Fails", scopes=PUBLIC)
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        raise KeyError(SECRET_TEXT)


class HTTPBoomResource:
    @endpoint("Fails with Falcon's own 500", scopes=PUBLIC)
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        raise falcon.HTTPInternalServerError(description=SECRET_TEXT)


def settings_for(redis_url: str, **extra: str) -> Settings:
    env = {"REDIS_URL": redis_url, "AERIE_ISSUER": ISSUER, "AERIE_JWKS_URL": "http://unused.test/jwks", **extra}
    return Settings.from_env("demo", env)


@pytest.fixture(scope="module")
def key() -> TestKey:
    return TestKey("k1")


class LabelResource:
    @endpoint(
        "Label an item",
        scopes=("projects:write",),
        tenant=True,
        path={"label": {"type": "string", "regex": "[a-z]{1,8}"}},
    )
    def on_put(self, req: falcon.Request, resp: falcon.Response, item_id: str, label: str) -> None:
        resp.media = {"item_id": item_id, "label": label}


def build(redis_url: str, key: TestKey, **extra: str) -> tuple[Infrastructure, ItemsResource, falcon.App]:
    infra = Infrastructure.from_settings(
        settings_for(redis_url, **extra), keys=StaticKeySource({"keys": [key.public_jwk()]})
    )
    items = ItemsResource()
    routes = [
        ("/items", items),
        ("/counter", CounterResource(infra.redis)),
        ("/boom", BoomResource()),
        ("/boom-http", HTTPBoomResource()),
        ("/request-id", RequestIdResource()),
        ("/items/{item_id}/labels/{label}", LabelResource()),
    ]
    return infra, items, create_service_app(infra, routes)


@pytest.fixture
def service(redis_url: str, key: TestKey) -> Iterator[tuple[falcon.testing.TestClient, ItemsResource]]:
    infra, items, app = build(redis_url, key)
    yield falcon.testing.TestClient(app), items
    infra.subscriber.stop()


@pytest.fixture
def client(service: tuple[falcon.testing.TestClient, ItemsResource]) -> falcon.testing.TestClient:
    return service[0]


@pytest.fixture
def items(service: tuple[falcon.testing.TestClient, ItemsResource]) -> ItemsResource:
    return service[1]


def auth(key: TestKey, client_id: str = "cli_a", **headers: str) -> dict[str, str]:
    claims = make_claims(ISSUER, client_id=client_id, sub=client_id, scope="projects:read projects:write")
    return {"Authorization": f"Bearer {key.sign(claims)}", **headers}


def error_fields(body: dict[str, Any]) -> list[str]:
    for entry in body["errors"]:
        assert set(entry) == {"field", "message"}
        assert isinstance(entry["message"], str) and entry["message"]
    return sorted(e["field"] for e in body["errors"])


def post_json(client: falcon.testing.TestClient, key: TestKey, body: bytes | str, **headers: str) -> Any:
    headers = {"Content-Type": "application/json", **auth(key), **headers}
    return client.simulate_post("/items", body=body, headers=headers)


# --- Falcon's own errors as problem+json ------------------------------------------------------------


def test_unknown_route_is_a_problem(client) -> None:
    resp = client.simulate_get("/no/such/thing", headers={"X-Request-ID": "lost-1"})
    assert_problem(resp, 404, "not_found", request_id="lost-1")


def test_wrong_method_is_a_problem_with_allow(client, key: TestKey) -> None:
    resp = client.simulate_delete("/items", headers=auth(key))
    assert_problem(resp, 405, "method_not_allowed")
    allowed = {m.strip() for m in resp.headers["Allow"].split(",")}
    assert {"GET", "POST"} <= allowed
    assert "DELETE" not in allowed
    resp = client.simulate_post("/health")
    assert_problem(resp, 405, "method_not_allowed")
    assert "GET" in resp.headers["Allow"]


@pytest.mark.parametrize("path", ["/health", "/info", "/openapi.json", "/docs", "/counter"])
def test_head_answers_what_get_answers_without_the_body(client, path: str) -> None:
    get = client.simulate_get(path)
    head = client.simulate_head(path)
    assert head.status_code == get.status_code == 200
    assert head.content == b""
    assert head.headers["Content-Length"] == str(len(get.content))
    assert head.headers["Content-Type"] == get.headers["Content-Type"]


def test_head_is_authorized_and_validated_like_get(client, key: TestKey) -> None:
    assert_head = client.simulate_head
    assert assert_head("/items").status_code == 401
    assert assert_head("/items", headers=auth(key)).status_code == 200
    assert assert_head("/items", query_string="limit=0", headers=auth(key)).status_code == 422


@pytest.mark.parametrize("path", ["/health", "/items", "/items/itm_1/labels/x"])
def test_options_and_405_agree_on_allow(client, key: TestKey, path: str) -> None:
    options = client.simulate_options(path)
    assert options.status_code == 200
    wrong = client.simulate_request("TRACE", path, headers=auth(key))
    assert_problem(wrong, 405, "method_not_allowed")
    assert options.headers["Allow"] == wrong.headers["Allow"]
    allowed = [m.strip() for m in options.headers["Allow"].split(",")]
    assert "OPTIONS" in allowed
    assert ("HEAD" in allowed) == ("GET" in allowed)


def test_success_is_json_utf8(client) -> None:
    resp = client.simulate_get("/health")
    assert resp.status_code == 200
    assert resp.headers["Content-Type"] == "application/json; charset=utf-8"
    assert resp.json == {"status": "ok"}


# --- X-Request-ID -----------------------------------------------------------------------------------


@pytest.mark.parametrize("incoming", ["abc-123", "A.b_C-9", "x" * 128, "01HZX3K4V5"])
def test_valid_request_id_is_kept(client, incoming: str) -> None:
    assert client.simulate_get("/health", headers={"X-Request-ID": incoming}).headers["X-Request-ID"] == incoming
    assert_problem(client.simulate_get("/nope", headers={"X-Request-ID": incoming}), 404, "not_found", incoming)


@pytest.mark.parametrize("incoming", ["x" * 129, "has space", "semi;colon", "ünï", "a/b", "<script>"])
def test_invalid_request_id_is_replaced(client, incoming: str) -> None:
    resp = client.simulate_get("/nope", headers={"X-Request-ID": incoming})
    made = resp.headers["X-Request-ID"]
    assert made != incoming
    assert REQUEST_ID_RE.match(made)
    assert_problem(resp, 404, "not_found", request_id=made)


def test_the_request_id_is_current_while_the_request_is_served_and_only_then(client) -> None:
    assert client.simulate_get("/request-id", headers={"X-Request-ID": "req-7"}).json == {"current": "req-7"}
    made = client.simulate_get("/request-id")
    assert made.json == {"current": made.headers["X-Request-ID"]}
    assert current_request_id() is None


def test_every_log_line_of_a_request_names_it_and_the_routers_id(client, tmp_path) -> None:
    path = tmp_path / "out.log"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    writer = LineWriter(fd)
    try:
        configure_logging("demo", 0, "INFO", writer=writer)
        client.simulate_get("/request-id", headers={"X-Request-ID": "req-8", "X-Vcap-Request-Id": "3f1c-9a2e"})
        client.simulate_get("/request-id", headers={"X-Request-ID": "req-9", "X-Vcap-Request-Id": "not a vcap id"})
        logging.getLogger("demo.deep").warning("between requests")
    finally:
        writer.close()
        os.close(fd)
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    deep = [(line.get("request_id"), line.get("vcap_request_id")) for line in lines if line["logger"] == "demo.deep"]
    assert deep == [("req-8", "3f1c-9a2e"), ("req-9", None), (None, None)]


def test_request_id_is_made_when_absent_and_differs_per_request(client, key: TestKey) -> None:
    first = client.simulate_get("/health").headers["X-Request-ID"]
    second = client.simulate_get("/health").headers["X-Request-ID"]
    assert REQUEST_ID_RE.match(first) and REQUEST_ID_RE.match(second)
    assert first != second
    # also on authenticated successes and auth failures
    authed = client.simulate_get("/items", headers=auth(key, **{"X-Request-ID": "ok-1"}))
    assert authed.status_code == 200
    assert authed.headers["X-Request-ID"] == "ok-1"
    assert_problem(client.simulate_get("/items", headers={"X-Request-ID": "anon-1"}), 401, "unauthorized", "anon-1")


# --- bodies -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", "application/xml"])
def test_non_json_body_is_415(client, key: TestKey, content_type: str) -> None:
    resp = client.simulate_post("/items", body="name=x", headers={**auth(key), "Content-Type": content_type})
    assert_problem(resp, 415, "unsupported_media_type")
    assert_problem(
        client.simulate_post("/items", body='{"name": "x"}', headers=auth(key)), 415, "unsupported_media_type"
    )


def test_json_with_charset_is_accepted(client, key: TestKey) -> None:
    resp = post_json(client, key, '{"name": "x"}', **{"Content-Type": "application/json; charset=utf-8"})
    assert resp.status_code == 201, resp.text


@pytest.mark.parametrize("body", [b"{", b'{"name": "x",}', b"\xff\xfe{}", b"{'name': 'x'}"])
def test_malformed_json_is_400(client, key: TestKey, body: bytes) -> None:
    assert_problem(post_json(client, key, body), 400, "bad_request")


def test_declared_path_parameters_are_validated(client, key: TestKey) -> None:
    assert client.simulate_put("/items/i%201/labels/red", headers=auth(key)).json == {"item_id": "i 1", "label": "red"}
    body = assert_problem(client.simulate_put("/items/i1/labels/Red%20", headers=auth(key)), 422, "validation_error")
    assert [e["field"] for e in body["errors"]] == ["label"]
    assert body["detail"] == "The request path has invalid fields."


@pytest.mark.parametrize("body", ["[1, 2]", '"name"', "42", "null"])
def test_json_that_is_not_an_object_is_422(client, key: TestKey, body: str) -> None:
    problem = assert_problem(post_json(client, key, body), 422, "validation_error")
    assert problem["errors"] == [{"field": "", "message": "must be a JSON object"}]


JSON_EDGES = [
    b'{"n": 9223372036854775807, "m": -9223372036854775808}',  # the 64-bit bounds: orjson would make floats
    b'{"n": 123456789012345678, "f": 0.1234567890123456789}',
    b"[" * 1100 + b"]" * 1100,  # deeper than orjson's limit
    b'{"s": "x\x01y"}',  # a raw control character: both refuse
    b'{"a": 1,}',
    b'{"f": 0.1, "e": 5e-324, "z": -0.0, "u": "\xc3\xa9\\u00e9", "pair": "\\ud83d\\ude00"}',
]


@pytest.mark.parametrize("raw", JSON_EDGES)
def test_bodies_parse_exactly_as_the_json_module_parses_them(raw: bytes) -> None:
    import json

    def outcome(loads: Any) -> tuple[str, Any]:
        try:
            value = loads(raw)
        except (ValueError, RecursionError) as exc:
            return "refused", isinstance(exc, RecursionError)
        return "parsed", repr(value)

    assert outcome(loads_json) == outcome(json.loads)


NOT_UTF8 = [
    pytest.param(b'\xef\xbb\xbf{"name": "x"}', id="utf-8 with a BOM"),
    pytest.param('{"name": "x"}'.encode("utf-16"), id="utf-16 with a BOM"),
    pytest.param('{"name": "x"}'.encode("utf-16-le"), id="utf-16-le"),
    pytest.param('{"name": "x"}'.encode("utf-16-be"), id="utf-16-be"),
    pytest.param('{"name": "x"}'.encode("utf-32"), id="utf-32 with a BOM"),
    pytest.param('{"name": "x"}'.encode("utf-32-le"), id="utf-32-le"),
    pytest.param('{"name": "\u00e9"}'.encode("latin-1"), id="latin-1"),
]


@pytest.mark.parametrize("raw", NOT_UTF8)
def test_json_in_another_encoding_than_utf8_is_400(client, key: TestKey, items: ItemsResource, raw: bytes) -> None:
    # The json module reads all of these (it detects UTF-16 and UTF-32, and skips a BOM).
    problem = assert_problem(post_json(client, key, raw), 400, "bad_request")
    assert "UTF-8" in problem["detail"]
    assert items.created == 0


@pytest.mark.parametrize("charset", ["utf-16", "iso-8859-1", '"utf-32"'])
def test_json_declared_in_another_charset_is_415(client, key: TestKey, charset: str) -> None:
    resp = post_json(client, key, b'{"name": "x"}', **{"Content-Type": f"application/json; charset={charset}"})
    assert_problem(resp, 415, "unsupported_media_type")


#: What the json module reads but no service can store or answer with (orjson refuses to
#: write it): each used to be a 500, a stored ``null`` or a document that broke later reads.
NOT_STORABLE = [
    (b'{"n": 9223372036854775808}', "n", OUT_OF_RANGE),
    (b'{"n": 18446744073709551616}', "n", OUT_OF_RANGE),
    (b'{"n": -9223372036854775809, "m": 1}', "n", OUT_OF_RANGE),
    (b'{"n": 1e400}', "n", OUT_OF_RANGE),
    (b'{"a": [1, {"b": -1e999}]}', "a.1.b", OUT_OF_RANGE),
    (b'{"n": ' + b"9" * 5000 + b"}", "n", OUT_OF_RANGE),
    (b'{"s": "a\\ud800b"}', "s", NOT_TEXT),
    (b'{"t": ["\\udfff"]}', "t.0", NOT_TEXT),
]


@pytest.mark.parametrize(("raw", "field", "message"), NOT_STORABLE)
def test_values_that_cannot_be_stored_are_refused_by_name(raw: bytes, field: str, message: str) -> None:
    with pytest.raises(NotStorable) as info:
        loads_json(raw)
    assert info.value.errors == [{"field": field, "message": message}]


@pytest.mark.parametrize("raw", [b"1e400", b'"\\ud800"', b'{"\\udc00": 1}'])
def test_a_value_that_cannot_be_stored_or_named_is_refused(raw: bytes) -> None:
    with pytest.raises(NotStorable) as info:
        loads_json(raw)
    assert info.value.errors == []


@pytest.mark.parametrize("raw", [b'{"n": NaN}', b'{"n": Infinity}', b'{"n": -Infinity}'])
def test_nan_and_infinity_are_not_json(raw: bytes) -> None:
    with pytest.raises(ValueError, match="is not JSON"):
        loads_json(raw)


def test_an_unstorable_body_is_422_naming_the_field_and_nothing_is_created(
    client, key: TestKey, items: ItemsResource
) -> None:
    resp = post_json(client, key, b'{"name": "a\\ud800", "size": 1e400, "tags": ["ok", "\\udc00"]}')
    body = assert_problem(resp, 422, "validation_error")
    assert sorted(map(tuple, (e.values() for e in body["errors"]))) == [
        ("name", NOT_TEXT),
        ("size", OUT_OF_RANGE),
        ("tags.1", NOT_TEXT),
    ]
    for raw in (b'{"name": NaN}', b'"\\ud800"', b'{"\\udc00": "x"}'):
        assert_problem(post_json(client, key, raw), 400, "bad_request")
    assert items.created == 0


def padded_body(total: int) -> bytes:
    doc = b'{"name": "big"}'
    return doc + b" " * (total - len(doc))


def test_body_of_exactly_one_mib_is_accepted(client, key: TestKey) -> None:
    resp = post_json(client, key, padded_body(MAX_BODY_BYTES))
    assert resp.status_code == 201, resp.text


def test_body_over_one_mib_is_413(client, key: TestKey, items: ItemsResource) -> None:
    assert_problem(post_json(client, key, padded_body(MAX_BODY_BYTES + 1)), 413, "payload_too_large")
    assert items.created == 0


def chunked_post(client: falcon.testing.TestClient, key: TestKey, body: bytes) -> Any:
    """A body without Content-Length, as a server that de-chunks hands it to the app."""
    headers = {**auth(key), "Content-Type": "application/json", "Transfer-Encoding": "chunked"}
    extras = {"wsgi.input": io.BytesIO(body), "wsgi.input_terminated": True}
    return client.simulate_request("POST", "/items", headers=headers, extras=extras)


def test_declared_length_over_one_mib_is_413_before_reading(client, key: TestKey, items: ItemsResource) -> None:
    small = b'{"name": "small"}'
    extras = {"wsgi.input": io.BytesIO(small), "CONTENT_LENGTH": str(MAX_BODY_BYTES + 1)}
    headers = {**auth(key), "Content-Type": "application/json"}
    resp = client.simulate_request("POST", "/items", headers=headers, extras=extras)
    assert_problem(resp, 413, "payload_too_large")
    assert items.created == 0


def test_a_body_is_read_to_its_declared_length_and_no_further(client, key: TestKey) -> None:
    doc = b'{"name": "exact", "size": 2}'
    extras = {"wsgi.input": io.BytesIO(doc + b"garbage the server must not read"), "CONTENT_LENGTH": str(len(doc))}
    headers = {**auth(key), "Content-Type": "application/json"}
    resp = client.simulate_request("POST", "/items", headers=headers, extras=extras)
    assert resp.status_code == 201, resp.text
    assert resp.json["name"] == "exact"


class _StalledInput(io.RawIOBase):
    """wsgi.input as uWSGI gives it when the client stops sending before the body's end."""

    def read(self, size: int = -1) -> bytes:
        raise OSError("Timeout reading 8 bytes. Content-Length: 10 consumed: 2 left: 8")


@pytest.mark.parametrize(
    "stream", [io.BytesIO(b'{"name": "x"}'), _StalledInput()], ids=["ended early", "stopped arriving"]
)
def test_a_body_short_of_its_declared_length_is_400_not_500(
    client, key: TestKey, items: ItemsResource, stream: io.RawIOBase
) -> None:
    extras = {"wsgi.input": stream, "CONTENT_LENGTH": "40"}
    headers = {**auth(key), "Content-Type": "application/json"}
    resp = client.simulate_request("POST", "/items", headers=headers, extras=extras)
    body = assert_problem(resp, 400, "bad_request")
    assert "Content-Length" in body["detail"]
    assert items.created == 0


def test_a_chunked_body_nothing_de_chunked_is_refused_not_read_as_empty(
    client, key: TestKey, items: ItemsResource
) -> None:
    headers = {**auth(key), "Content-Type": "application/json", "Transfer-Encoding": "chunked"}
    extras = {"wsgi.input": io.BytesIO(b'{"name": "never"}')}
    resp = client.simulate_request("POST", "/items", headers=headers, extras=extras)
    assert_problem(resp, 411, "bad_request")
    assert items.created == 0


def test_chunked_body_is_read(client, key: TestKey) -> None:
    resp = chunked_post(client, key, b'{"name": "chunky", "size": 3}')
    assert resp.status_code == 201, resp.text
    assert resp.json["name"] == "chunky"
    assert resp.json["size"] == 3


def test_chunked_body_over_one_mib_is_413(client, key: TestKey, items: ItemsResource) -> None:
    assert_problem(chunked_post(client, key, padded_body(MAX_BODY_BYTES + 1)), 413, "payload_too_large")
    assert items.created == 0


def test_invalid_fields_are_422_one_entry_per_field(client, key: TestKey, items: ItemsResource) -> None:
    resp = post_json(client, key, '{"name": "", "size": -1, "colour": "red", "tags": ["a", 7]}')
    body = assert_problem(resp, 422, "validation_error")
    assert error_fields(body) == ["colour", "name", "size", "tags.1"]
    assert items.created == 0


def test_missing_required_field_is_422(client, key: TestKey) -> None:
    body = assert_problem(post_json(client, key, '{"size": 1}'), 422, "validation_error")
    assert error_fields(body) == ["name"]


def test_unknown_field_alone_is_rejected(client, key: TestKey) -> None:
    body = assert_problem(post_json(client, key, '{"name": "x", "is_admin": true}'), 422, "validation_error")
    assert error_fields(body) == ["is_admin"]


def test_thousands_of_unknown_fields_report_the_first_twenty(client, key: TestKey, items: ItemsResource) -> None:
    # Cerberus re-sorts its error list on every error: without a cap, 5,000 unknown keys took
    # 26 s of one worker thread, and 10,000 outlived harakiri.
    body = {f"k{i:05}": 1 for i in range(5000)} | {"name": "x"}
    problem = assert_problem(post_json(client, key, json.dumps(body)), 422, "validation_error")
    assert len(problem["errors"]) == MAX_REPORTED_ERRORS
    assert all(e["message"] == "unknown field" for e in problem["errors"])
    assert problem["detail"] == f"The request body has invalid fields; the first {MAX_REPORTED_ERRORS} are listed."
    assert items.created == 0


def test_errors_in_thousands_of_list_items_are_capped_too() -> None:
    document = {"name": "x", "tags": list(range(5000))}
    with pytest.raises(Problem) as caught:
        validate(ITEM_BODY, document)
    assert len(caught.value.errors) == MAX_REPORTED_ERRORS
    assert caught.value.errors[0]["field"] == "tags.0"


def test_a_few_errors_are_all_listed_with_the_plain_detail() -> None:
    with pytest.raises(Problem) as caught:
        validate(ITEM_BODY, {f"k{i}": 1 for i in range(MAX_REPORTED_ERRORS - 1)} | {"name": "x"})
    assert len(caught.value.errors) == MAX_REPORTED_ERRORS - 1
    assert caught.value.description == "The request body has invalid fields."


# --- query strings ---------------------------------------------------------------------------------


def test_limit_defaults_to_50(client, key: TestKey) -> None:
    resp = client.simulate_get("/items", headers=auth(key))
    assert resp.status_code == 200, resp.text
    assert resp.json == {"limit": 50, "after": None}


@pytest.mark.parametrize("limit", [1, 200])
def test_limit_bounds_are_accepted(client, key: TestKey, limit: int) -> None:
    assert client.simulate_get("/items", params={"limit": str(limit)}, headers=auth(key)).json["limit"] == limit


def test_a_remembered_query_is_the_same_answer_every_time(client, key: TestKey) -> None:
    """Validated queries are kept per route and query string: a repeat must not differ, a
    responder changing its copy must not change the next one, and refusals are not kept."""
    middleware = BodyMiddleware()
    resource = ItemsResource()
    for _ in range(3):
        req = falcon.testing.create_req(path="/items", query_string="limit=7")
        middleware.process_resource(req, falcon.Response(), resource, {})
        assert req.context.query == {"limit": 7}
        req.context.query["limit"] = 999  # the responder's own copy
    for _ in range(2):
        resp = client.simulate_get("/items", query_string="limit=0", headers=auth(key))
        assert resp.status_code == 422 and error_fields(resp.json) == ["limit"]
    assert client.simulate_get("/items", query_string="limit=7&limit=8", headers=auth(key)).status_code == 422


@pytest.mark.parametrize(
    ("limit", "message"),
    [
        ("0", "min value is 1"),
        ("201", "max value is 200"),
        ("-3", "min value is 1"),
        # Said in the API's words, not Python's ("invalid literal for int() with base 10").
        ("abc", "must be of integer type"),
        ("1.5", "must be of integer type"),
    ],
)
def test_bad_limit_is_422(client, key: TestKey, limit: str, message: str) -> None:
    resp = client.simulate_get("/items", query_string=f"limit={limit}", headers=auth(key))
    body = assert_problem(resp, 422, "validation_error")
    assert body["errors"] == [{"field": "limit", "message": message}]


def test_a_failed_coercion_without_a_type_rule_still_names_the_field() -> None:
    with pytest.raises(Problem) as info:
        validate({"n": {"coerce": int}}, {"n": "x"}, location="query")
    assert info.value.errors == [{"field": "n", "message": "has an invalid value"}]


def test_repeated_query_parameter_is_422(client, key: TestKey) -> None:
    resp = client.simulate_get("/items", query_string="limit=5&limit=6", headers=auth(key))
    body = assert_problem(resp, 422, "validation_error")
    assert error_fields(body) == ["limit"]


def test_unknown_query_parameter_is_422(client, key: TestKey) -> None:
    resp = client.simulate_get("/items", query_string="sort=name", headers=auth(key))
    assert error_fields(assert_problem(resp, 422, "validation_error")) == ["sort"]


def test_thousands_of_unknown_query_parameters_report_the_first_twenty(client, key: TestKey) -> None:
    query = "&".join(f"p{i}=1" for i in range(5000))
    resp = client.simulate_get("/items", query_string=query, headers=auth(key))
    problem = assert_problem(resp, 422, "validation_error")
    assert len(problem["errors"]) == MAX_REPORTED_ERRORS


# --- cursors -----------------------------------------------------------------------------------------


def test_cursor_round_trip() -> None:
    position = {"after": "itm_42", "created_at": "2024-05-01T12:00:00.000Z", "n": 3}
    cursor = encode_cursor(position)
    assert re.fullmatch(r"[A-Za-z0-9_-]+", cursor)  # URL-safe, no padding
    assert decode_cursor(cursor) == position
    assert decode_cursor(cursor, "after") == "itm_42"
    assert decode_cursor(cursor, "after", "created_at") == position


@pytest.mark.parametrize(
    ("cursor", "required"),
    [
        ("!!!not-base64!!!", ()),
        ("bm90IGpzb24", ()),  # "not json"
        (encode_cursor({"after": 5}), ("after",)),
        (encode_cursor({"other": "x"}), ("after",)),
        ("WzEsMl0", ()),  # "[1,2]"
        ("", ()),
    ],
)
def test_bad_cursor_is_422_on_cursor(cursor: str, required: tuple[str, ...]) -> None:
    with pytest.raises(Problem) as info:
        decode_cursor(cursor, *required)
    assert info.value.status_code == 422
    assert info.value.problem_code == "validation_error"
    assert info.value.errors == [{"field": "cursor", "message": info.value.errors[0]["message"]}]


def test_cursor_through_the_app(client, key: TestKey) -> None:
    cursor = encode_cursor({"after": "itm_7"})
    resp = client.simulate_get("/items", params={"cursor": cursor, "limit": "2"}, headers=auth(key))
    assert resp.json == {"limit": 2, "after": "itm_7"}
    resp = client.simulate_get("/items", params={"cursor": "garbage%%"}, headers=auth(key))
    assert error_fields(assert_problem(resp, 422, "validation_error")) == ["cursor"]


# --- failures: 500 and Redis down ------------------------------------------------------------------------


def test_unexpected_exception_is_a_bare_500_and_logged(client, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR, logger="aerie.errors")
    resp = client.simulate_get("/boom", headers={"X-Request-ID": "boom-1"})
    body = assert_problem(resp, 500, "internal_error", request_id="boom-1")
    assert SECRET_TEXT not in resp.text
    assert "Traceback" not in resp.text
    assert "KeyError" not in resp.text
    logged = [r for r in caplog.records if r.name == "aerie.errors" and r.exc_info]
    assert len(logged) == 1
    assert logged[0].exc_info[0] is KeyError
    assert "Traceback" in caplog.text and SECRET_TEXT in caplog.text
    assert body["detail"] == body["title"]


def test_a_500_with_a_description_still_hides_it(client) -> None:
    resp = client.simulate_get("/boom-http")
    assert_problem(resp, 500, "internal_error")
    assert SECRET_TEXT not in resp.text


def test_redis_down_is_503_and_not_ready(key: TestKey) -> None:
    infra, _items, app = build(f"redis://127.0.0.1:{free_port()}/0", key)
    client = falcon.testing.TestClient(app)
    try:
        resp = client.simulate_get("/counter")
        assert_problem(resp, 503, "unavailable")
        assert int(resp.headers["Retry-After"]) >= 1
        # an authenticated route needs Redis too (revocations): still 503, never 500
        resp = client.simulate_get("/items", headers=auth(key))
        assert_problem(resp, 503, "unavailable")
        assert "Retry-After" in resp.headers

        ready = client.simulate_get("/ready")
        assert ready.status_code == 503
        assert "redis" in ready.json["failed"]
        assert "Retry-After" in ready.headers
        assert client.simulate_get("/health").status_code == 200
    finally:
        infra.subscriber.stop()


def test_ready_when_redis_answers(client) -> None:
    resp = client.simulate_get("/ready")
    assert resp.status_code == 200, resp.text
    assert resp.json["checks"]["redis"] == "ok"
    assert client.simulate_get("/counter").json == {"n": 1}


def test_ready_names_a_failing_service_check(redis_url: str, key: TestKey) -> None:
    infra = Infrastructure.from_settings(settings_for(redis_url), keys=StaticKeySource({"keys": [key.public_jwk()]}))

    def tenants_down() -> None:
        raise ConnectionError("tenants is away")

    app = create_service_app(infra, [], ready_checks={"tenants": tenants_down})
    resp = falcon.testing.TestClient(app).simulate_get("/ready")
    assert resp.status_code == 503
    assert resp.json["failed"] == ["tenants"]
    assert resp.json["checks"]["redis"] == "ok"
    assert "tenants is away" not in resp.text


# --- declarations and /info ---------------------------------------------------------------------------


class Undeclared:
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = {}


class HalfDeclared:
    @endpoint("Read", scopes=PUBLIC)
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = {}

    def on_delete(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.status = falcon.HTTP_204


@pytest.mark.parametrize(
    ("resource", "named"), [(Undeclared(), "Undeclared.on_get"), (HalfDeclared(), "HalfDeclared.on_delete")]
)
def test_responder_without_endpoint_refuses_to_build(
    redis_url: str, key: TestKey, resource: object, named: str
) -> None:
    infra = Infrastructure.from_settings(settings_for(redis_url), keys=StaticKeySource({"keys": [key.public_jwk()]}))
    with pytest.raises(TypeError, match=re.escape(named)):
        create_service_app(infra, [("/open", resource)])


def test_endpoint_needs_scopes_or_public() -> None:
    with pytest.raises(ValueError, match="scope"):
        endpoint("Nothing", scopes=())


def test_info(redis_url: str, key: TestKey) -> None:
    _infra, _items, app = build(
        redis_url,
        key,
        VERSION="1.4.2",
        AERIE_COMMIT="0a1b2c3",
        CF_INSTANCE_INDEX="2",
        AERIE_CLIENT_SECRET="very-secret-value",
    )
    resp = falcon.testing.TestClient(app).simulate_get("/info")
    assert resp.status_code == 200
    assert resp.json == {"name": "demo", "version": "1.4.2", "commit": "0a1b2c3", "instance_index": 2}
    assert "very-secret-value" not in resp.text


# --- Idempotency-Key ------------------------------------------------------------------------------------


def create(
    client: falcon.testing.TestClient, key: TestKey, body: str, idem: str | None, client_id: str = "cli_a"
) -> Any:
    headers = {**auth(key, client_id), "Content-Type": "application/json"}
    if idem is not None:
        headers["Idempotency-Key"] = idem
    return client.simulate_post("/items", body=body, headers=headers)


def test_same_key_same_body_replays_the_first_response(client, key: TestKey, items: ItemsResource) -> None:
    first = create(client, key, '{"name": "a", "size": 1}', "key-1")
    assert first.status_code == 201, first.text
    assert "Idempotent-Replayed" not in first.headers
    # the same document with its fields in another order is the same request
    again = create(client, key, '{"size": 1, "name": "a"}', "key-1")
    assert again.status_code == 201
    assert again.json == first.json
    assert again.headers["Location"] == first.headers["Location"] == "/items/itm_1"
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.headers["Content-Type"].startswith("application/json")
    assert again.headers["X-Request-ID"] != first.headers["X-Request-ID"]
    assert items.created == 1


def test_without_a_key_every_post_creates(client, key: TestKey, items: ItemsResource) -> None:
    assert create(client, key, '{"name": "a"}', None).json["id"] == "itm_1"
    assert create(client, key, '{"name": "a"}', None).json["id"] == "itm_2"
    assert items.created == 2


def test_same_key_different_body_is_409(client, key: TestKey, items: ItemsResource) -> None:
    assert create(client, key, '{"name": "a"}', "key-2").status_code == 201
    assert_problem(create(client, key, '{"name": "b"}', "key-2"), 409, "conflict")
    assert items.created == 1


def test_keys_of_different_clients_do_not_collide(client, key: TestKey, items: ItemsResource) -> None:
    mine = create(client, key, '{"name": "a"}', "shared-key", client_id="cli_a")
    theirs = create(client, key, '{"name": "a"}', "shared-key", client_id="cli_b")
    assert mine.status_code == theirs.status_code == 201
    assert "Idempotent-Replayed" not in theirs.headers
    assert (mine.json["owner"], theirs.json["owner"]) == ("cli_a", "cli_b")
    assert mine.json["id"] != theirs.json["id"]
    assert items.created == 2


def test_a_5xx_is_not_stored(client, key: TestKey, items: ItemsResource) -> None:
    items.fail_next = 1
    assert_problem(create(client, key, '{"name": "a"}', "key-3"), 500, "internal_error")
    retry = create(client, key, '{"name": "a"}', "key-3")
    assert retry.status_code == 201, retry.text
    assert "Idempotent-Replayed" not in retry.headers
    assert items.created == 1
    assert create(client, key, '{"name": "a"}', "key-3").headers["Idempotent-Replayed"] == "true"
    assert items.created == 1


def test_invalid_idempotency_key_is_400(client, key: TestKey, items: ItemsResource) -> None:
    assert_problem(create(client, key, '{"name": "a"}', "k" * 256), 400, "bad_request")
    assert_problem(create(client, key, '{"name": "a"}', "has space"), 400, "bad_request")
    assert items.created == 0


def test_dumps_json_writes_what_the_media_handler_would() -> None:
    import json

    from aerie.app import dumps_json

    doc = {"a": [1, None, "é"], "b": {"c": 1.5}}
    assert dumps_json(doc) == json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode()
    assert dumps_json({1: "one"}) == b'{"1":"one"}'  # a key that is not a string, as json.dumps writes it
