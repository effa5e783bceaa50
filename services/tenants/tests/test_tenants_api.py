"""The tenants and clients API: lifecycle, access rules, bad input, events."""

from __future__ import annotations

import json
import time

import falcon.inspect
import pytest
import redis


def stream_types(redis_url: str) -> list[str]:
    r = redis.Redis.from_url(redis_url, decode_responses=True)
    return [f["type"] for _id, f in r.xrange("aerie:events")]


def test_create_get_and_list_tenants(api, client, redis_url):
    admin = api.admin()
    r = client.simulate_post("/v1/tenants", json={"slug": "acme", "name": "Acme Corp"}, headers=admin)
    assert r.status_code == 201
    tenant = r.json
    assert r.headers["location"] == f"/v1/tenants/{tenant['id']}"
    assert r.headers["etag"] == '"1"'
    assert tenant["status"] == "active" and tenant["plan"] == "free" and tenant["language"] == "en"
    assert tenant["version"] == 1 and tenant["created_at"].endswith("Z")
    assert client.simulate_get(f"/v1/tenants/{tenant['id']}", headers=admin).json == tenant
    listed = client.simulate_get("/v1/tenants", headers=admin).json
    assert listed == {"items": [tenant], "next_cursor": None}
    assert "tenant.created" in stream_types(redis_url)


def test_slug_is_unique(api, client):
    api.create_tenant("acme")
    r = client.simulate_post("/v1/tenants", json={"slug": "acme", "name": "Other"}, headers=api.admin())
    assert r.status_code == 409 and r.json["code"] == "conflict"


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        ({"slug": "A-bad-slug", "name": "x"}, ["slug"]),
        ({"slug": "a", "name": "x"}, ["slug"]),
        ({"slug": "-leading", "name": "x"}, ["slug"]),
        ({"slug": "a" * 64, "name": "x"}, ["slug"]),
        ({"slug": "ok-slug"}, ["name"]),
        ({"slug": "ok-slug", "name": ""}, ["name"]),
        ({"slug": "ok-slug", "name": "x", "plan": "gold"}, ["plan"]),
        ({"slug": "ok-slug", "name": "x", "language": "not a language"}, ["language"]),
        ({"slug": "ok-slug", "name": "x", "status": "active"}, ["status"]),
        ({"slug": 5, "name": ["x"]}, ["name", "slug"]),
    ],
)
def test_tenant_validation_names_each_field(api, client, body, fields):
    r = client.simulate_post("/v1/tenants", json=body, headers=api.admin())
    assert r.status_code == 422 and r.json["code"] == "validation_error"
    assert sorted({e["field"] for e in r.json["errors"]}) == fields


def test_list_paginates_and_filters_by_status(api, client):
    admin = api.admin()
    ids = [api.create_tenant(f"tenant-{i}")["id"] for i in range(5)]
    client.simulate_post(f"/v1/tenants/{ids[1]}/suspend", headers=admin)
    seen, cursor = [], None
    while True:
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = client.simulate_get("/v1/tenants", params=params, headers=admin).json
        seen += [t["id"] for t in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == ids
    suspended = client.simulate_get("/v1/tenants", params={"status": "suspended"}, headers=admin).json
    assert [t["id"] for t in suspended["items"]] == [ids[1]]
    for bad in ({"limit": 0}, {"limit": 201}, {"limit": "x"}, {"status": "gone"}, {"cursor": "%%%"}):
        r = client.simulate_get("/v1/tenants", params=bad, headers=admin)
        assert r.status_code == 422, bad
        assert r.json["errors"][0]["field"] == next(iter(bad))


def test_patch_with_if_match(api, client, redis_url):
    admin = api.admin()
    tenant = api.create_tenant("acme")
    path = f"/v1/tenants/{tenant['id']}"
    r = client.simulate_patch(path, json={"name": "Acme 2", "plan": "team"}, headers={**admin, "If-Match": '"1"'})
    assert r.status_code == 200 and r.json["version"] == 2 and r.json["plan"] == "team"
    assert r.headers["etag"] == '"2"'
    r = client.simulate_patch(path, json={"name": "Stale"}, headers={**admin, "If-Match": '"1"'})
    assert r.status_code == 412 and r.json["code"] == "precondition_failed"
    assert client.simulate_get(path, headers=admin).json["name"] == "Acme 2"
    r = client.simulate_patch(path, json={"name": "Same"}, headers={**admin, "If-Match": "garbage"})
    assert r.status_code == 412
    r = client.simulate_patch(path, json={"slug": "renamed"}, headers=admin)
    assert r.status_code == 422 and r.json["errors"][0]["field"] == "slug"
    assert stream_types(redis_url).count("tenant.updated") == 1


def test_tenant_token_reads_and_renames_its_own_tenant_only(api, client):
    mine, other = api.create_tenant("mine"), api.create_tenant("other")
    headers = api.tenant_headers(mine["id"], ["tenants:read", "tenants:write"])
    assert client.simulate_get(f"/v1/tenants/{mine['id']}", headers=headers).status_code == 200
    foreign = client.simulate_get(f"/v1/tenants/{other['id']}", headers=headers)
    missing = client.simulate_get("/v1/tenants/ten_does_not_exist", headers=headers)
    assert foreign.status_code == missing.status_code == 404
    assert foreign.json["detail"] == missing.json["detail"]
    r = client.simulate_patch(f"/v1/tenants/{mine['id']}", json={"name": "Renamed"}, headers=headers)
    assert r.status_code == 200 and r.json["name"] == "Renamed"
    r = client.simulate_patch(f"/v1/tenants/{mine['id']}", json={"plan": "enterprise"}, headers=headers)
    assert r.status_code == 403 and r.json["code"] == "forbidden"
    r = client.simulate_patch(f"/v1/tenants/{other['id']}", json={"name": "Hijack"}, headers=headers)
    assert r.status_code == 404
    assert client.simulate_get(f"/v1/tenants/{other['id']}", headers=api.admin()).json["name"] == "Other"
    for method, path in [
        ("GET", "/v1/tenants"),
        ("POST", "/v1/tenants"),
        ("POST", f"/v1/tenants/{mine['id']}/suspend"),
        ("DELETE", f"/v1/tenants/{mine['id']}"),
    ]:
        r = client.simulate_request(
            method, path, headers=headers, json={"slug": "zz", "name": "z"} if method == "POST" else None
        )
        assert r.status_code == 403 and r.json["code"] == "insufficient_scope", (method, path)


def test_read_only_tenant_token_cannot_write(api, client):
    mine = api.create_tenant("mine")
    headers = api.tenant_headers(mine["id"], ["tenants:read"])
    r = client.simulate_patch(f"/v1/tenants/{mine['id']}", json={"name": "x"}, headers=headers)
    assert r.status_code == 403 and r.json["code"] == "insufficient_scope"
    assert r.headers["www-authenticate"].startswith("Bearer")


def test_suspend_reactivate_delete_lifecycle(api, client, redis_url):
    admin = api.admin()
    tenant = api.create_tenant("acme")
    path = f"/v1/tenants/{tenant['id']}"
    headers = api.tenant_headers(tenant["id"], ["tenants:read", "tenants:write"])
    assert client.simulate_post(f"{path}/suspend", headers=admin).json["status"] == "suspended"
    assert client.simulate_post(f"{path}/suspend", headers=admin).json["status"] == "suspended"  # idempotent
    # a suspended tenant reads but does not write
    assert client.simulate_get(path, headers=headers).status_code == 200
    r = client.simulate_patch(path, json={"name": "x"}, headers=headers)
    assert r.status_code == 403 and r.json["code"] == "tenant_suspended"
    r = client.simulate_post(f"{path}/clients", json={"name": "x", "scopes": ["tenants:read"]}, headers=headers)
    assert r.status_code == 403 and r.json["code"] == "tenant_suspended"
    assert client.simulate_post(f"{path}/reactivate", headers=admin).json["status"] == "active"
    assert client.simulate_patch(path, json={"name": "Back"}, headers=headers).status_code == 200
    assert client.simulate_delete(path, headers=admin).status_code == 204
    assert client.simulate_get(path, headers=admin).json["status"] == "deleted"
    assert client.simulate_delete(path, headers=admin).status_code == 204
    r = client.simulate_post(f"{path}/reactivate", headers=admin)
    assert r.status_code == 409 and r.json["code"] == "conflict"
    assert client.simulate_patch(path, json={"name": "x"}, headers=admin).status_code == 409
    types = stream_types(redis_url)
    for t in ("tenant.suspended", "tenant.reactivated", "tenant.deleted", "client.revoked"):
        assert types.count(t) == 1, t


def test_deleting_a_tenant_revokes_its_clients_tokens(api, client):
    tenant = api.create_tenant("acme")
    headers = api.tenant_headers(tenant["id"], ["tenants:read"])
    assert client.simulate_get(f"/v1/tenants/{tenant['id']}", headers=headers).status_code == 200
    assert client.simulate_delete(f"/v1/tenants/{tenant['id']}", headers=api.admin()).status_code == 204
    deadline = time.monotonic() + 1.0  # revocations travel over pub/sub: within a second
    while (r := client.simulate_get(f"/v1/tenants/{tenant['id']}", headers=headers)).status_code != 401:
        assert time.monotonic() < deadline
    assert r.json["code"] == "invalid_token"


def test_unknown_tenant_ids_are_404_everywhere(api, client):
    admin = api.admin()
    for method, suffix in [
        ("GET", ""),
        ("PATCH", ""),
        ("DELETE", ""),
        ("POST", "/suspend"),
        ("POST", "/reactivate"),
        ("GET", "/clients"),
        ("POST", "/clients"),
        ("DELETE", "/clients/cli_x"),
    ]:
        body = {"name": "x", "scopes": ["tenants:read"]} if suffix == "/clients" and method == "POST" else None
        if method == "PATCH":
            body = {"name": "x"}
        r = client.simulate_request(method, f"/v1/tenants/ten_nope{suffix}", headers=admin, json=body)
        assert r.status_code == 404 and r.json["code"] == "not_found", (method, suffix)


def test_clients_are_listed_without_secrets_and_revoked(api, client):
    tenant = api.create_tenant("acme")
    created = api.create_client(tenant["id"], ["projects:read"])
    listed = client.simulate_get(f"/v1/tenants/{tenant['id']}/clients", headers=api.admin()).json["items"]
    assert [c["client_id"] for c in listed] == [created["client_id"]]
    assert "client_secret" not in listed[0] and "secret_hash" not in listed[0]
    path = f"/v1/tenants/{tenant['id']}/clients/{created['client_id']}"
    assert client.simulate_delete(path, headers=api.admin()).status_code == 204
    listed = client.simulate_get(f"/v1/tenants/{tenant['id']}/clients", headers=api.admin()).json["items"]
    assert listed[0]["status"] == "revoked"


def test_tenant_cannot_touch_another_tenants_clients(api, client):
    mine, other = api.create_tenant("mine"), api.create_tenant("other")
    theirs = api.create_client(other["id"], ["projects:read"])
    headers = api.tenant_headers(mine["id"], ["tenants:read", "tenants:write"])
    assert client.simulate_get(f"/v1/tenants/{other['id']}/clients", headers=headers).status_code == 404
    # their client id under my tenant's path is not mine either
    r = client.simulate_delete(f"/v1/tenants/{mine['id']}/clients/{theirs['client_id']}", headers=headers)
    assert r.status_code == 404
    r = client.simulate_delete(f"/v1/tenants/{other['id']}/clients/{theirs['client_id']}", headers=headers)
    assert r.status_code == 404
    assert api.token(theirs["client_id"], theirs["client_secret"])  # still works


def test_client_scopes_validated_and_never_escalated(api, client):
    tenant = api.create_tenant("acme")
    path = f"/v1/tenants/{tenant['id']}/clients"
    for bad in (
        {"name": "x", "scopes": ["platform:admin"]},
        {"name": "x", "scopes": []},
        {"name": "x"},
        {"name": "x", "scopes": "tenants:read"},
    ):
        r = client.simulate_post(path, json=bad, headers=api.admin())
        assert r.status_code == 422 and r.json["errors"][0]["field"].startswith("scopes"), bad
    headers = api.tenant_headers(tenant["id"], ["tenants:write"])
    r = client.simulate_post(path, json={"name": "x", "scopes": ["audit:read"]}, headers=headers)
    assert r.status_code == 403 and r.json["code"] == "forbidden"
    r = client.simulate_post(path, json={"name": "x", "scopes": ["tenants:write"]}, headers=headers)
    assert r.status_code == 201


def test_platform_token_is_not_a_tenant(api, client):
    r = client.simulate_get("/v1/tenants", headers={"Authorization": f"Bearer {api.token(api.SVC_ID, api.SVC_SECRET)}"})
    assert r.status_code == 200
    r = client.simulate_post(
        "/v1/tenants",
        json={"slug": "nope", "name": "x"},
        headers={"Authorization": f"Bearer {api.token(api.SVC_ID, api.SVC_SECRET)}"},
    )
    assert r.status_code == 403 and r.json["code"] == "insufficient_scope"


def test_idempotent_tenant_create(api, client, redis_url):
    headers = {**api.admin(), "Idempotency-Key": "create-acme-1"}
    first = client.simulate_post("/v1/tenants", json={"slug": "acme", "name": "Acme"}, headers=headers)
    again = client.simulate_post("/v1/tenants", json={"slug": "acme", "name": "Acme"}, headers=headers)
    assert first.status_code == again.status_code == 201
    assert first.json == again.json and again.headers["idempotent-replayed"] == "true"
    assert again.headers["location"] == first.headers["location"]
    other = client.simulate_post("/v1/tenants", json={"slug": "acme-2", "name": "Acme"}, headers=headers)
    assert other.status_code == 409
    assert stream_types(redis_url).count("tenant.created") == 1


def test_events_carry_the_request_context(api, client, redis_url):
    client.simulate_post(
        "/v1/tenants",
        json={"slug": "acme", "name": "Acme"},
        headers={**api.admin(), "X-Request-ID": "req-123", "User-Agent": "pytest-agent", "X-Forwarded-For": "1.2.3.4"},
    )
    r = redis.Redis.from_url(redis_url, decode_responses=True)
    event = next(json.loads(f["event"]) for _id, f in r.xrange("aerie:events") if f["type"] == "tenant.created")
    assert event["request_id"] == "req-123" and event["user_agent"] == "pytest-agent" and event["ip"] == "1.2.3.4"
    assert event["actor"] == {"type": "platform", "id": api.BOOT_ID, "client_id": api.BOOT_ID}
    assert event["tenant_id"] == event["data"]["tenant"]["id"] and event["version"] == 1


def test_openapi_documents_every_route_the_app_serves(client, app):
    doc = client.simulate_get("/openapi.json").json
    assert doc["openapi"].startswith("3.1")
    served = {route.path for route in falcon.inspect.inspect_routes(app)}
    undocumented = served - set(doc["paths"]) - {"/openapi.json", "/docs", "/docs/assets/{name}"}
    assert not undocumented
    for route in falcon.inspect.inspect_routes(app):
        if route.path in doc["paths"]:
            methods = {m.method.lower() for m in route.methods if m.internal is False}
            # HEAD (wherever GET is) and OPTIONS (everywhere) follow from HTTP, not from a declaration.
            assert methods - {"head", "options"} == set(doc["paths"][route.path]), route.path
    assert "/v1/tenants/{tenant_id}/clients/{client_id}" in doc["paths"]
    assert client.simulate_get("/docs").status_code == 200
