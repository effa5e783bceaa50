"""The OpenAPI document is generated from ``@endpoint`` declarations and must say what the
middleware does; the docs routes serve Swagger UI from the package, under a strict CSP."""

from __future__ import annotations

import json
from typing import Any

import falcon
import falcon.testing
import jsonschema
import pytest

import aerie.docs
from aerie.docs import CSP, DocsAssetResource, DocsResource
from aerie.endpoints import PUBLIC, endpoint, responders_of
from aerie.openapi import OpenAPIResource, build_openapi, cerberus_pattern, object_schema, rule_schema
from aerie.validation import RFC3339, Validator

ITEM_CREATE: dict[str, Any] = {
    # Unanchored on purpose: Cerberus anchors it, the document must too.
    "slug": {"type": "string", "required": True, "regex": r"[a-z][a-z0-9-]{1,30}"},
    "name": {"type": "string", "required": True, "empty": False, "maxlength": 20},
    "plan": {"type": "string", "allowed": ["free", "pro"], "default": "free"},
    "due": {"type": "string", **RFC3339, "nullable": True},
    "priority": {"type": "integer", "min": 1, "max": 5, "nullable": True},
    "tags": {"type": "list", "maxlength": 3, "schema": {"type": "string", "allowed": ["a", "b", "c"]}},
    "owner": {
        "type": "dict",
        "schema": {
            "email": {"type": "string", "required": True, "regex": r"^[^@\s]+@[^@\s]+$"},
            "age": {"type": "integer", "min": 0, "max": 150},
        },
    },
    "labels": {
        "type": "list",
        "empty": False,
        "schema": {"type": "dict", "schema": {"key": {"type": "string", "required": True, "maxlength": 8}}},
    },
    "colour": {"type": "string", "nullable": True, "allowed": ["red", "blue"]},
}
ITEM_PATCH: dict[str, Any] = {
    "name": {"type": "string", "empty": False, "maxlength": 20},
    "plan": {"type": "string", "allowed": ["free", "pro"]},
}
ITEM: dict[str, Any] = {
    "id": {"type": "string"},
    "name": {"type": "string"},
    "created_at": {"type": "string", **RFC3339},
    "version": {"type": "integer"},
}
LIST_QUERY: dict[str, Any] = {
    "limit": {"type": "integer", "coerce": int, "min": 1, "max": 200, "default": 50},
    "cursor": {"type": "string", "maxlength": 512},
    "status": {"type": "string", "allowed": ["active", "archived"], "meta": {"description": "Only these"}},
}


class ItemsResource:
    @endpoint(
        "Create an item",
        scopes=("items:write", "platform:admin"),
        tenant=True,
        body=ITEM_CREATE,
        status=201,
        response=ITEM,
        idempotent=True,
    )
    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.status = 201

    @endpoint("List items", scopes=("items:read",), query=LIST_QUERY, response={"items": {"type": "list"}})
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = {"items": []}


class ItemResource:
    @endpoint("Get an item", scopes=("items:read",), response=ITEM)
    def on_get(self, req: falcon.Request, resp: falcon.Response, item_id: str) -> None:
        resp.media = {}

    @endpoint("Update an item", scopes=("items:write",), body=ITEM_PATCH, response=ITEM, responses={409: "Archived"})
    def on_patch(self, req: falcon.Request, resp: falcon.Response, item_id: str) -> None:
        resp.media = {}

    @endpoint("Delete an item", scopes=("items:write",), status=204)
    def on_delete(self, req: falcon.Request, resp: falcon.Response, item_id: str) -> None:
        resp.status = 204


class PingResource:
    @endpoint("Liveness", scopes=PUBLIC, response={"status": {"type": "string"}}, responses={503: "Down"})
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = {"status": "ok"}


class UploadResource:
    @endpoint("Upload raw bytes", scopes=PUBLIC, media="raw", responses={400: "Own error format"})
    def on_post(self, req: falcon.Request, resp: falcon.Response, number: int) -> None:
        resp.media = {}


class TagResource:
    @endpoint(
        "Tag an item",
        scopes=("items:write",),
        path={"tag": {"type": "string", "regex": "[a-z]{1,20}"}},
        status=201,
        response={"tag": {"type": "string"}},
        responses={200: "Already tagged"},
    )
    def on_put(self, req: falcon.Request, resp: falcon.Response, item_id: str, tag: str) -> None:
        resp.media = {}


class EventsResource:
    @endpoint("Item events", scopes=("items:read",), response_media="text/event-stream")
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.text = ""


ROUTES: list[tuple[str, object]] = [
    ("/v1/items", ItemsResource()),
    ("/health", PingResource()),
    ("/v1/items/{item_id}", ItemResource()),
    ("/v1/items/{item_id}/tags/{tag}", TagResource()),
    ("/v1/items/events", EventsResource()),
    ("/v1/uploads/{number:int}", UploadResource()),
]


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    return build_openapi(title="Aerie test", version="1.2.3", description="Test API", routes=ROUTES)


def _op(document: dict[str, Any], path: str, method: str) -> dict[str, Any]:
    return document["paths"][path][method]


# --- the document as a whole -------------------------------------------------------------


def test_document_validates_against_the_openapi_31_schema(document):
    validator = pytest.importorskip("openapi_spec_validator")
    validator.validate(document)
    assert document["openapi"] == "3.1.0"
    assert document["info"] == {"title": "Aerie test", "version": "1.2.3", "description": "Test API"}


def test_every_declared_route_and_method_appears(document):
    for template, resource in ROUTES:
        path = template.replace("{number:int}", "{number}")
        assert set(document["paths"][path]) == set(responders_of(resource))


def test_paths_are_sorted_and_output_is_stable(document):
    assert list(document["paths"]) == sorted(document["paths"])
    again = build_openapi(title="Aerie test", version="1.2.3", description="Test API", routes=list(reversed(ROUTES)))
    assert json.dumps(again, sort_keys=False) == json.dumps(document, sort_keys=False)


def test_operation_ids_are_unique_and_tags_follow_the_version_segment(document):
    ops = [op for item in document["paths"].values() for op in item.values()]
    ids = [op["operationId"] for op in ops]
    assert len(ids) == len(set(ids))
    assert _op(document, "/v1/items/{item_id}", "get")["operationId"] == "get_v1_items_item_id"
    assert _op(document, "/v1/items", "post")["tags"] == ["items"]
    assert _op(document, "/health", "get")["tags"] == ["system"]
    assert [t["name"] for t in document["tags"]] == ["items", "system", "uploads"]


def test_slug_collisions_get_distinct_operation_ids():
    doc = build_openapi(
        title="t", version="1", description="", routes=[("/v1/a-b", PingResource()), ("/v1/a_b", PingResource())]
    )
    assert {op["get"]["operationId"] for op in doc["paths"].values()} == {"get_v1_a_b", "get_v1_a_b_2"}


def test_undeclared_responder_is_refused():
    class Naked:
        def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
            pass

    with pytest.raises(TypeError, match=r"Naked\.on_get"):
        build_openapi(title="t", version="1", description="", routes=[("/x", Naked())])


# --- operations ----------------------------------------------------------------------------


def test_security_and_scopes(document):
    create = _op(document, "/v1/items", "post")
    assert create["security"] == [{"bearerAuth": []}]
    assert "Scopes: any of items:write, platform:admin" in create["description"]
    assert "tenant_required" in create["description"]
    assert _op(document, "/health", "get")["security"] == []
    scheme = document["components"]["securitySchemes"]["bearerAuth"]
    assert scheme["type"] == "http" and scheme["scheme"] == "bearer" and scheme["bearerFormat"] == "JWT"


def test_path_parameters_are_required_and_typed_by_converter(document):
    (item_id,) = _op(document, "/v1/items/{item_id}", "get")["parameters"]
    assert item_id == {"name": "item_id", "in": "path", "required": True, "schema": {"type": "string"}}
    (number,) = _op(document, "/v1/uploads/{number}", "post")["parameters"]
    assert number["schema"] == {"type": "integer"} and number["required"] is True


def test_declared_path_parameters_carry_their_rules_and_a_422(document):
    tag_op = _op(document, "/v1/items/{item_id}/tags/{tag}", "put")
    params = {p["name"]: p for p in tag_op["parameters"] if p["in"] == "path"}
    assert params["item_id"]["schema"] == {"type": "string"}
    assert params["tag"] == {
        "name": "tag",
        "in": "path",
        "required": True,
        "schema": {"type": "string", "pattern": "^(?:[a-z]{1,20}$)"},
    }
    assert "422" in tag_op["responses"]


def test_a_response_of_another_media_type_is_documented_as_such(document):
    ok = _op(document, "/v1/items/events", "get")["responses"]["200"]
    assert ok["content"] == {"text/event-stream": {"schema": {"type": "string"}}}


def test_another_success_answers_the_declared_body(document):
    responses = _op(document, "/v1/items/{item_id}/tags/{tag}", "put")["responses"]
    assert responses["200"]["description"] == "Already tagged"
    assert responses["200"]["content"] == responses["201"]["content"]


def test_query_parameters(document):
    params = {p["name"]: p for p in _op(document, "/v1/items", "get")["parameters"]}
    assert params["limit"]["in"] == "query" and params["limit"]["required"] is False
    assert params["limit"]["schema"] == {"type": "integer", "minimum": 1, "maximum": 200, "default": 50}
    assert params["cursor"]["schema"] == {"type": "string", "maxLength": 512}
    assert params["status"]["schema"] == {"type": "string", "enum": ["active", "archived"]}
    assert params["status"]["description"] == "Only these"


def test_headers_for_idempotent_creates_and_conditional_updates(document):
    create_headers = [p["name"] for p in _op(document, "/v1/items", "post")["parameters"] if p["in"] == "header"]
    assert create_headers == ["Idempotency-Key"]
    patch_headers = [p["name"] for p in _op(document, "/v1/items/{item_id}", "patch")["parameters"]]
    assert "If-Match" in patch_headers and "Idempotency-Key" not in patch_headers


def test_request_body(document):
    body = _op(document, "/v1/items", "post")["requestBody"]
    assert body["required"] is True
    schema = body["content"]["application/json"]["schema"]
    assert schema["additionalProperties"] is False
    assert schema["required"] == ["slug", "name"]  # plan has a default, so it is never missing
    props = schema["properties"]
    assert props["slug"]["pattern"] == "^(?:[a-z][a-z0-9-]{1,30}$)"
    assert props["name"] == {"type": "string", "minLength": 1, "maxLength": 20}
    # Cerberus turns a null into the default, so null is accepted.
    assert props["plan"] == {"type": ["string", "null"], "enum": ["free", "pro", None], "default": "free"}
    assert props["due"] == {"type": ["string", "null"], "format": "date-time"}
    assert props["priority"] == {"type": ["integer", "null"], "minimum": 1, "maximum": 5}
    assert props["tags"] == {"type": "array", "maxItems": 3, "items": {"type": "string", "enum": ["a", "b", "c"]}}
    assert props["owner"]["additionalProperties"] is False and props["owner"]["required"] == ["email"]
    assert props["labels"]["minItems"] == 1
    assert props["labels"]["items"]["properties"]["key"] == {"type": "string", "maxLength": 8}
    assert props["colour"]["enum"] == ["red", "blue", None]
    patch = _op(document, "/v1/items/{item_id}", "patch")["requestBody"]
    assert patch["required"] is False


def _statuses(document: dict[str, Any], path: str, method: str) -> set[str]:
    return set(_op(document, path, method)["responses"])


def test_error_responses_follow_the_declaration(document):
    assert _statuses(document, "/v1/items", "post") == {"201", "400", "401", "403", "409", "413", "415", "422"}
    assert _statuses(document, "/v1/items", "get") == {"200", "401", "403", "422"}
    assert _statuses(document, "/v1/items/{item_id}", "get") == {"200", "401", "403", "404"}
    patch = {"200", "400", "401", "403", "404", "409", "412", "413", "415", "422"}
    assert _statuses(document, "/v1/items/{item_id}", "patch") == patch
    assert _statuses(document, "/v1/items/{item_id}", "delete") == {"204", "401", "403", "404"}
    assert _statuses(document, "/health", "get") == {"200", "503"}


def test_response_bodies(document):
    problem = {"$ref": "#/components/schemas/Problem"}
    create = _op(document, "/v1/items", "post")["responses"]
    assert create["201"]["content"]["application/json"]["schema"]["properties"]["created_at"] == {
        "type": "string",
        "format": "date-time",
    }
    # Responses are descriptive: not closed to fields the declaration does not list.
    assert "additionalProperties" not in create["201"]["content"]["application/json"]["schema"]
    assert create["422"]["content"]["application/problem+json"]["schema"] == problem
    assert "content" not in _op(document, "/v1/items/{item_id}", "delete")["responses"]["204"]
    patch_409 = _op(document, "/v1/items/{item_id}", "patch")["responses"]["409"]
    assert patch_409["content"]["application/problem+json"]["schema"] == problem
    assert "Archived" in patch_409["description"]
    # A raw route's own errors and a 5xx extra are not claimed to be problem documents.
    assert "content" not in _op(document, "/v1/uploads/{number}", "post")["responses"]["400"]
    assert "content" not in _op(document, "/health", "get")["responses"]["503"]
    fields = document["components"]["schemas"]["Problem"]["properties"]
    assert {"type", "title", "status", "detail", "code", "request_id", "errors"} <= set(fields)


# --- Cerberus -> JSON Schema faithfulness --------------------------------------------------

_VALID_BASE = {"slug": "my-item", "name": "Item"}
SAMPLES: list[Any] = [
    _VALID_BASE,
    {**_VALID_BASE, "plan": "pro", "due": "2024-05-01T10:00:00Z", "priority": 3, "tags": ["a", "c"]},
    {**_VALID_BASE, "priority": None, "colour": None},
    {**_VALID_BASE, "due": None},
    {**_VALID_BASE, "owner": {"email": "a@b.example", "age": 40}, "labels": [{"key": "k1"}]},
    {"slug": "my-item"},  # name missing
    {**_VALID_BASE, "slug": "My item"},  # regex
    {**_VALID_BASE, "slug": "my-item!"},  # regex must be anchored at the end
    {**_VALID_BASE, "slug": "!my-item"},  # ... and at the start
    {**_VALID_BASE, "name": ""},  # empty: False
    {**_VALID_BASE, "name": "x" * 21},  # maxlength
    {**_VALID_BASE, "plan": "gold"},  # allowed
    {**_VALID_BASE, "plan": None},  # not nullable, but has a default that replaces null
    {**_VALID_BASE, "name": None},  # not nullable
    {**_VALID_BASE, "priority": 9},  # max
    {**_VALID_BASE, "priority": "3"},  # type
    {**_VALID_BASE, "tags": ["a", "z"]},  # allowed, per member
    {**_VALID_BASE, "tags": ["a", "b", "c", "a"]},  # maxlength on a list
    {**_VALID_BASE, "owner": {"age": 3}},  # nested required
    {**_VALID_BASE, "owner": {"email": "a@b.example", "extra": 1}},  # nested unknown field
    {**_VALID_BASE, "owner": {"email": "not-an-email"}},  # nested regex
    {**_VALID_BASE, "labels": []},  # empty: False on a list
    {**_VALID_BASE, "labels": [{"key": "far-too-long"}]},  # list of dicts
    {**_VALID_BASE, "colour": "green"},
    {**_VALID_BASE, "unknown": True},  # unknown top-level field
    {**_VALID_BASE, "due": 12},  # rfc3339 is a string
]


def _verdicts(schema: dict[str, Any], document: dict[str, Any]) -> tuple[bool, bool]:
    cerberus_ok = Validator(dict(schema), allow_unknown=False).validate(dict(document))
    json_ok = jsonschema.Draft202012Validator(object_schema(schema)).is_valid(document)
    return cerberus_ok, json_ok


@pytest.mark.parametrize("sample", SAMPLES, ids=range(len(SAMPLES)))
def test_converted_schema_agrees_with_cerberus(sample):
    cerberus_ok, json_ok = _verdicts(ITEM_CREATE, sample)
    assert cerberus_ok == json_ok


def test_samples_cover_both_verdicts():
    plain = [s for s in SAMPLES if isinstance(s, dict)]
    verdicts = [_verdicts(ITEM_CREATE, s)[0] for s in plain]
    assert verdicts.count(True) >= 4 and verdicts.count(False) >= 10


def test_date_time_format_agrees_when_jsonschema_checks_it():
    checker = jsonschema.Draft202012Validator.FORMAT_CHECKER
    if "date-time" not in checker.checkers:
        pytest.skip("jsonschema has no date-time checker installed")
    schema = object_schema(ITEM_CREATE)
    bad = {**_VALID_BASE, "due": "yesterday"}
    assert not Validator(ITEM_CREATE, allow_unknown=False).validate(bad)
    assert not jsonschema.Draft202012Validator(schema, format_checker=checker).is_valid(bad)


@pytest.mark.parametrize(
    ("rule", "samples"),
    [
        ({"type": "integer", "forbidden": [0]}, [1, 0, None]),
        ({"type": ["string", "integer"], "minlength": 2}, ["ab", "a", 5, None, 1.5]),
        ({"anyof": [{"type": "string"}, {"type": "integer", "min": 10}], "nullable": True}, ["x", 11, 3, None]),
        ({"type": "dict", "valuesrules": {"type": "integer"}}, [{"a": 1}, {"a": "b"}, {}]),
        ({"type": "list", "items": [{"type": "string"}, {"type": "integer"}]}, [["a", 1], ["a"], [1, "a"]]),
        ({"type": "string", "regex": "a|b"}, ["a", "b", "ab", "ba", "c"]),
        ({"type": "dict", "allow_unknown": True, "schema": {"a": {"type": "integer"}}}, [{"a": 1, "z": 2}]),
    ],
)
def test_other_rules_agree_with_cerberus(rule, samples):
    schema = {"field": rule}
    for value in samples:
        cerberus_ok, json_ok = _verdicts(schema, {"field": value})
        assert cerberus_ok == json_ok, value


def test_cerberus_pattern_anchors_like_cerberus():
    assert cerberus_pattern("^[a-z]+$") == "^[a-z]+$"
    assert cerberus_pattern("[a-z]+") == "^(?:[a-z]+$)"
    assert cerberus_pattern("^a|b$") == "^(?:^a|b$)"


def test_rfc3339_type_and_check_are_date_times():
    expected = {"type": "string", "format": "date-time"}
    assert rule_schema({"type": "rfc3339"}) == expected
    assert rule_schema({"type": "string", "check_with": "rfc3339"}) == expected


def test_unknown_cerberus_type_is_left_open():
    assert rule_schema({"type": "binary", "nullable": True}) == {"x-cerberus-type": "binary"}


# --- serving -------------------------------------------------------------------------------


@pytest.fixture
def client(document) -> falcon.testing.TestClient:
    app = falcon.App()
    app.add_route("/openapi.json", OpenAPIResource(document))
    app.add_route("/docs", DocsResource(title="Aerie <test> API", openapi_url="/openapi.json"))
    app.add_route("/docs/assets/{name}", DocsAssetResource())
    return falcon.testing.TestClient(app)


def test_openapi_json_is_served(client, document):
    r = client.simulate_get("/openapi.json")
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/json; charset=utf-8"
    assert r.json == document


def test_docs_routes_are_public_declarations():
    for resource in (OpenAPIResource({}), DocsResource("t", "/openapi.json"), DocsAssetResource()):
        spec = responders_of(resource)["get"]
        assert spec is not None and spec.public


def test_docs_page(client):
    r = client.simulate_get("/docs")
    assert r.status_code == 200
    assert r.headers["content-type"] == "text/html; charset=utf-8"
    assert r.headers["content-security-policy"] == CSP
    assert "script-src 'self'" in CSP and "unsafe-eval" not in CSP
    for asset in ("swagger-ui.css", "swagger-ui-bundle.js", "swagger-ui-standalone-preset.js", "init.js"):
        assert f"/docs/assets/{asset}" in r.text
    assert 'data-openapi-url="/openapi.json"' in r.text
    assert "<title>Aerie &lt;test&gt; API</title>" in r.text
    assert "<script>" not in r.text  # no inline script: CSP needs none


@pytest.mark.parametrize(
    ("name", "content_type"),
    [
        ("swagger-ui-bundle.js", "text/javascript; charset=utf-8"),
        ("swagger-ui-standalone-preset.js", "text/javascript; charset=utf-8"),
        ("swagger-ui.css", "text/css; charset=utf-8"),
        ("favicon-32x32.png", "image/png"),
        ("init.js", "text/javascript; charset=utf-8"),
    ],
)
def test_assets_are_served(client, name, content_type):
    r = client.simulate_get(f"/docs/assets/{name}")
    assert r.status_code == 200
    assert r.headers["content-type"] == content_type
    assert r.headers["cache-control"] == "public, max-age=86400"
    assert len(r.content) > 100


def test_init_js_points_at_the_data_attribute(client):
    r = client.simulate_get("/docs/assets/init.js")
    assert "data-openapi-url" in r.text and "SwaggerUIBundle(" in r.text


def test_assets_are_read_once(client, monkeypatch):
    assert client.simulate_get("/docs/assets/swagger-ui.css").status_code == 200

    def fail() -> None:
        raise AssertionError("read from disk again")

    monkeypatch.setattr(aerie.docs, "_bundle_dir", fail)
    r = client.simulate_get("/docs/assets/swagger-ui.css")
    assert r.status_code == 200 and len(r.content) > 1000


@pytest.mark.parametrize(
    "path",
    [
        "/docs/assets/nope.js",
        "/docs/assets/swagger-ui.js.map",  # a real file of the package, but not on the list
        "/docs/assets/index.html",
        "/docs/assets/..%2F..%2F__init__.py",
        "/docs/assets/..%2Fswagger-ui.css",
        "/docs/assets/%2e%2e%2f%2e%2e%2fpyvenv.cfg",
    ],
)
def test_unknown_assets_and_traversal_are_404(client, path):
    assert client.simulate_get(path).status_code == 404
