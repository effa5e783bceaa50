"""Journeys through the projects service, as a tenant's own application would make them."""

from __future__ import annotations

import time

import pytest

pytestmark = pytest.mark.projects


def _tenant_token(aerie, scopes: list[str] | None = None) -> tuple[dict, str]:
    tenant = aerie.create_tenant()
    client = aerie.create_client(tenant["id"], scopes or ["projects:read", "projects:write"])
    return tenant, aerie.token(client["client_id"], client["client_secret"])


@pytest.mark.smoke
def test_a_tenant_manages_its_projects(aerie):
    tenant, token = _tenant_token(aerie)
    r = aerie.call("POST", "projects", "/v1/projects", token=token, json={"name": "Website Relaunch"})
    assert r.status_code == 201, r.text
    project = r.json()
    assert project["tenant_id"] == tenant["id"] and project["slug"] == "website-relaunch"
    path = r.headers["Location"]
    r = aerie.call("GET", "projects", path, token=token)
    assert r.status_code == 200 and r.json() == project
    r = aerie.call(
        "PATCH", "projects", path, token=token, json={"status": "archived"}, headers={"If-Match": r.headers["ETag"]}
    )
    assert r.status_code == 200 and r.json()["version"] == 2
    r = aerie.call("PATCH", "projects", path, token=token, json={"name": "Stale"}, headers={"If-Match": '"1"'})
    assert r.status_code == 412 and r.json()["code"] == "precondition_failed"
    listed = aerie.call("GET", "projects", "/v1/projects", token=token, params={"status": "archived"}).json()
    assert [p["id"] for p in listed["items"]] == [project["id"]]
    second = aerie.call("POST", "projects", "/v1/projects", token=token, json={"name": "Second"}).json()
    r = aerie.call(
        "POST",
        "projects",
        "/v1/projects/batch-update",
        token=token,
        json={"ids": [project["id"], second["id"], "prj_nope"], "changes": {"status": "invisible"}},
    )
    assert r.status_code == 200 and r.json()["not_found"] == ["prj_nope"]
    assert aerie.call("DELETE", "projects", path, token=token).status_code == 204
    assert aerie.call("GET", "projects", path, token=token).status_code == 404


def test_another_tenant_sees_nothing(aerie):
    _a, token_a = _tenant_token(aerie)
    _b, token_b = _tenant_token(aerie)
    project = aerie.call("POST", "projects", "/v1/projects", token=token_a, json={"name": "Secret"}).json()
    path = f"/v1/projects/{project['id']}"
    for method, body in (("GET", None), ("PATCH", {"name": "Mine now"}), ("DELETE", None)):
        r = aerie.call(method, "projects", path, token=token_b, json=body)
        assert r.status_code == 404 and r.json()["code"] == "not_found"
    assert aerie.call("GET", "projects", "/v1/projects", token=token_b).json()["items"] == []
    assert aerie.call("GET", "projects", path, token=token_a).json() == project


def test_suspended_tenant_reads_but_cannot_write(aerie):
    tenant, token = _tenant_token(aerie)
    project = aerie.call("POST", "projects", "/v1/projects", token=token, json={"name": "Before"}).json()
    r = aerie.call("POST", "tenants", f"/v1/tenants/{tenant['id']}/suspend", token=aerie.admin_token)
    assert r.status_code == 200
    deadline = time.monotonic() + 2
    while True:
        r = aerie.call("POST", "projects", "/v1/projects", token=token, json={"name": "During"})
        if r.status_code == 403 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert r.status_code == 403 and r.json()["code"] == "tenant_suspended"
    assert aerie.call("GET", "projects", f"/v1/projects/{project['id']}", token=token).status_code == 200
    aerie.call("POST", "tenants", f"/v1/tenants/{tenant['id']}/reactivate", token=aerie.admin_token)


def test_platform_token_needs_a_tenant(aerie):
    r = aerie.call("GET", "projects", "/v1/projects", token=aerie.admin_token)
    assert r.status_code == 403 and r.json()["code"] == "tenant_required"


def test_project_events_stream_live_and_resume(aerie):
    _tenant, token = _tenant_token(aerie)
    url = aerie.url("projects") + "/v1/projects/events"
    headers = {"Authorization": f"Bearer {token}"}
    with aerie.http.get(url, headers=headers, stream=True, timeout=30) as stream:
        assert stream.status_code == 200 and stream.headers["Content-Type"].startswith("text/event-stream")
        created = aerie.call("POST", "projects", "/v1/projects", token=token, json={"name": "Watched"}).json()
        frame: dict[str, str] = {}
        for line in stream.iter_lines(chunk_size=1, decode_unicode=True):
            if line.startswith(("id: ", "event: ", "data: ")):
                name, _, value = line.partition(": ")
                frame[name] = value
            if "data" in frame:
                break
    assert frame["event"] == "project.created" and created["id"] in frame["data"]
    # Resume after that event: the next one, and only it, comes from the durable stream.
    aerie.call("DELETE", "projects", f"/v1/projects/{created['id']}", token=token)
    with aerie.http.get(url, headers={**headers, "Last-Event-ID": frame["id"]}, stream=True, timeout=30) as again:
        data = next(line for line in again.iter_lines(chunk_size=1, decode_unicode=True) if line.startswith("data: "))
    assert '"type":"project.deleted"' in data and created["id"] in data
