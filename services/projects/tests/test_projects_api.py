"""The projects API: CRUD, validation, versions, batches, events."""

from __future__ import annotations

import json

import pytest
import redis

from aerie.pagination import encode_cursor
from aerie.testing.http import assert_problem

TEN_A, TEN_B = "ten_A", "ten_B"  # as in conftest.py


def stream(redis_url: str) -> list[dict]:
    r = redis.Redis.from_url(redis_url, decode_responses=True)
    return [json.loads(f["event"]) for _id, f in r.xrange("aerie:events")]


def test_create_get_list_patch_delete(api, client, redis_url):
    h = api.headers()
    r = client.simulate_post("/v1/projects", json={"name": "Café Roadmap 2026"}, headers=h)
    assert r.status_code == 201
    p = r.json
    assert r.headers["location"] == f"/v1/projects/{p['id']}" and r.headers["etag"] == '"1"'
    assert p["slug"] == "cafe-roadmap-2026" and p["tenant_id"] == TEN_A and p["status"] == "active"
    assert p["description"] == "" and p["version"] == 1 and p["created_at"].endswith("Z")
    assert client.simulate_get(f"/v1/projects/{p['id']}", headers=h).json == p
    assert client.simulate_get("/v1/projects", headers=h).json == {"items": [p], "next_cursor": None}

    r = client.simulate_patch(
        f"/v1/projects/{p['id']}", json={"status": "archived", "description": "old"}, headers={**h, "If-Match": '"1"'}
    )
    assert r.status_code == 200 and r.json["version"] == 2 and r.headers["etag"] == '"2"'
    r = client.simulate_patch(f"/v1/projects/{p['id']}", json={"name": "x"}, headers={**h, "If-Match": '"1"'})
    assert_problem(r, 412, "precondition_failed")
    assert client.simulate_get("/v1/projects", params={"status": "active"}, headers=h).json["items"] == []
    archived = client.simulate_get("/v1/projects", params={"status": "archived"}, headers=h).json["items"]
    assert [a["id"] for a in archived] == [p["id"]]

    assert client.simulate_delete(f"/v1/projects/{p['id']}", headers=h).status_code == 204
    assert_problem(client.simulate_get(f"/v1/projects/{p['id']}", headers=h), 404, "not_found")
    types = [e["type"] for e in stream(redis_url)]
    assert types == ["project.created", "project.updated", "project.deleted"]
    assert all(e["tenant_id"] == TEN_A for e in stream(redis_url))


def test_slug_unique_per_tenant_and_reusable_after_rename(api, client):
    a = api.create("Alpha", slug="alpha")
    assert_problem(
        client.simulate_post("/v1/projects", json={"name": "Other", "slug": "alpha"}, headers=api.headers()),
        409,
        "conflict",
    )
    api.create("Alpha", tenant_id=TEN_B, slug="alpha")  # another tenant: no clash
    b = api.create("Beta")
    r = client.simulate_patch(f"/v1/projects/{b['id']}", json={"slug": "alpha"}, headers=api.headers())
    assert_problem(r, 409, "conflict")
    r = client.simulate_patch(f"/v1/projects/{a['id']}", json={"slug": "alpha-2"}, headers=api.headers())
    assert r.status_code == 200 and r.json["slug"] == "alpha-2"
    assert api.create("New Alpha", slug="alpha")["slug"] == "alpha"


def test_unchanged_patch_keeps_version(api, client):
    p = api.create("Same")
    r = client.simulate_patch(f"/v1/projects/{p['id']}", json={"name": "Same"}, headers=api.headers())
    assert r.status_code == 200 and r.json["version"] == 1


def test_pagination(api, client):
    ids = [api.create(f"P {i}")["id"] for i in range(5)]
    seen, cursor = [], None
    while True:
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = client.simulate_get("/v1/projects", params=params, headers=api.headers()).json
        seen += [p["id"] for p in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == ids


def test_batch_update(api, client, redis_url):
    a, b = api.create("A"), api.create("B")
    other = api.create("Theirs", tenant_id=TEN_B)
    body = {"ids": [a["id"], "prj_missing", other["id"], b["id"], a["id"]], "changes": {"status": "invisible"}}
    r = client.simulate_post("/v1/projects/batch-update", json=body, headers=api.headers())
    assert r.status_code == 200, r.text
    assert r.json["updated"] == [a["id"], b["id"]]
    for project_id in (a["id"], b["id"]):
        project = client.simulate_get(f"/v1/projects/{project_id}", headers=api.headers()).json
        assert project["status"] == "invisible" and project["version"] == 2
    assert r.json["not_found"] == ["prj_missing", other["id"]]
    theirs = client.simulate_get(f"/v1/projects/{other['id']}", headers=api.headers(TEN_B)).json
    assert theirs == other


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        ({}, ["name"]),
        ({"name": ""}, ["name"]),
        ({"name": " padded"}, ["name"]),
        ({"name": "x" * 201}, ["name"]),
        ({"name": 5}, ["name"]),
        ({"name": "ok", "slug": "Bad Slug"}, ["slug"]),
        ({"name": "ok", "slug": "a"}, ["slug"]),
        ({"name": "ok", "description": "d" * 2001}, ["description"]),
        ({"name": "ok", "description": 3}, ["description"]),
        ({"name": "ok", "status": "active"}, ["status"]),
        ({"name": "ok", "tenant_id": TEN_B}, ["tenant_id"]),
    ],
)
def test_create_validation(api, client, body, fields):
    r = client.simulate_post("/v1/projects", json=body, headers=api.headers())
    assert_problem(r, 422, "validation_error")
    assert sorted({e["field"] for e in r.json["errors"]}) == fields


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        ({"status": "deleted"}, ["status"]),
        ({"name": ""}, ["name"]),
        ({"slug": "-x"}, ["slug"]),
        ({"description": None}, ["description"]),
        ({"version": 3}, ["version"]),
        ({"id": "prj_x"}, ["id"]),
    ],
)
def test_patch_validation(api, client, body, fields):
    p = api.create("Valid")
    r = client.simulate_patch(f"/v1/projects/{p['id']}", json=body, headers=api.headers())
    assert_problem(r, 422, "validation_error")
    assert sorted({e["field"] for e in r.json["errors"]}) == fields


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"ids": [f"prj_{i}" for i in range(101)], "changes": {"status": "active"}}, "ids"),
        ({"ids": [], "changes": {"status": "active"}}, "ids"),
        ({"changes": {"status": "active"}}, "ids"),
        ({"ids": ["prj_1"], "changes": {}}, "changes"),
        ({"ids": ["prj_1"]}, "changes"),
        ({"ids": ["prj_1"], "changes": {"status": "gone"}}, "changes.status"),
        ({"ids": ["prj_1"], "changes": {"slug": "same-for-all"}}, "changes.slug"),
        ({"ids": [1], "changes": {"status": "active"}}, "ids.0"),
    ],
)
def test_batch_validation(api, client, body, field):
    r = client.simulate_post("/v1/projects/batch-update", json=body, headers=api.headers())
    assert_problem(r, 422, "validation_error")
    assert field in {e["field"] for e in r.json["errors"]}


def test_batch_of_100_is_fine(api, client):
    ids = [f"prj_{i}" for i in range(100)]
    r = client.simulate_post(
        "/v1/projects/batch-update", json={"ids": ids, "changes": {"status": "active"}}, headers=api.headers()
    )
    assert r.status_code == 200 and r.json == {"updated": [], "not_found": ids}


def test_media_type_malformed_json_and_size(api, client):
    h = api.headers()
    r = client.simulate_post("/v1/projects", body='{"name": "x"}', headers={**h, "Content-Type": "text/plain"})
    assert_problem(r, 415, "unsupported_media_type")
    r = client.simulate_post("/v1/projects", body='{"name": ', headers={**h, "Content-Type": "application/json"})
    assert_problem(r, 400, "bad_request")
    big = json.dumps({"name": "x", "description": "d" * (1024 * 1024)})
    r = client.simulate_post("/v1/projects", body=big, headers={**h, "Content-Type": "application/json"})
    assert_problem(r, 413, "payload_too_large")
    p = api.create("Y")
    r = client.simulate_patch(f"/v1/projects/{p['id']}", body="[1,", headers={**h, "Content-Type": "application/json"})
    assert_problem(r, 400, "bad_request")


@pytest.mark.parametrize(
    "params", [{"limit": 0}, {"limit": 201}, {"limit": "x"}, {"status": "gone"}, {"cursor": "%%%"}]
)
def test_list_query_validation(api, client, params):
    r = client.simulate_get("/v1/projects", params=params, headers=api.headers())
    assert_problem(r, 422, "validation_error")
    assert r.json["errors"][0]["field"] == next(iter(params))


def test_forged_cursor_stays_in_own_tenant(api, client):
    theirs = [api.create(f"T{i}", tenant_id=TEN_B)["id"] for i in range(3)]
    mine = api.create("Mine")
    for cursor in (encode_cursor({"after": ""}), encode_cursor({"after": theirs[0]}), encode_cursor({"after": "0"})):
        page = client.simulate_get("/v1/projects", params={"cursor": cursor}, headers=api.headers()).json
        assert {p["tenant_id"] for p in page["items"]} <= {TEN_A}
        assert all(p["id"] not in theirs for p in page["items"])
    # A cursor B was handed is only a position: used by A it shows A's projects after it.
    b_page = client.simulate_get("/v1/projects", params={"limit": 1}, headers=api.headers(TEN_B)).json
    r = client.simulate_get("/v1/projects", params={"cursor": b_page["next_cursor"]}, headers=api.headers())
    assert [p["id"] for p in r.json["items"]] == [mine["id"]]
    r = client.simulate_get("/v1/projects", params={"cursor": encode_cursor({"x": 1})}, headers=api.headers())
    assert_problem(r, 422, "validation_error")


def test_auth_rules(api, client):
    p = api.create("Auth")
    assert_problem(client.simulate_get("/v1/projects"), 401, "unauthorized")
    platform = api.headers(tenant_id=None, scope="platform:admin")
    assert_problem(client.simulate_get("/v1/projects", headers=platform), 403, "tenant_required")
    read_only = api.headers(scope="projects:read")
    assert client.simulate_get(f"/v1/projects/{p['id']}", headers=read_only).status_code == 200
    r = client.simulate_delete(f"/v1/projects/{p['id']}", headers=read_only)
    assert_problem(r, 403, "insufficient_scope")
    r = client.simulate_get("/v1/projects", headers=api.headers(scope="tenants:read"))
    assert_problem(r, 403, "insufficient_scope")


def test_idempotent_create(api, client):
    h = {**api.headers(), "Idempotency-Key": "k-1"}
    first = client.simulate_post("/v1/projects", json={"name": "Once"}, headers=h)
    again = client.simulate_post("/v1/projects", json={"name": "Once"}, headers=h)
    assert first.status_code == again.status_code == 201 and first.json == again.json
    assert len(client.simulate_get("/v1/projects", headers=api.headers()).json["items"]) == 1


def test_openapi_document_is_valid_and_lists_routes(client):
    from openapi_spec_validator import validate

    document = client.simulate_get("/openapi.json").json
    validate(document)
    expected = {"/v1/projects", "/v1/projects/{project_id}", "/v1/projects/batch-update", "/v1/projects/events"}
    assert expected <= set(document["paths"])


def test_health_and_ready(client):
    assert client.simulate_get("/health").json == {"status": "ok"}
    r = client.simulate_get("/ready")
    assert r.status_code == 200 and r.json["checks"] == {"redis": "ok", "background": "ok", "events": "ok"}
