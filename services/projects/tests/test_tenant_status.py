"""Suspended tenants may read but not write; an unknown status never lets a write through."""

from __future__ import annotations

import pytest

from aerie.testing.http import assert_problem

TEN_A = "ten_A"


def _writes(project_id: str) -> list[tuple[str, str, dict | None]]:
    return [
        ("POST", "/v1/projects", {"name": "New"}),
        ("PATCH", f"/v1/projects/{project_id}", {"name": "Changed"}),
        ("DELETE", f"/v1/projects/{project_id}", None),
        ("POST", "/v1/projects/batch-update", {"ids": [project_id], "changes": {"status": "archived"}}),
    ]


@pytest.mark.parametrize("status", ["suspended", "deleted"])
def test_suspended_tenant_reads_but_cannot_write(api, client, tenant_status, status):
    p = api.create("Before")
    tenant_status.set(TEN_A, status=status)
    h = api.headers()
    for method, path, body in _writes(p["id"]):
        assert_problem(client.simulate_request(method, path, json=body, headers=h), 403, "tenant_suspended")
    assert client.simulate_get(f"/v1/projects/{p['id']}", headers=h).json == p
    assert client.simulate_get("/v1/projects", headers=h).status_code == 200
    tenant_status.set(TEN_A, status="active")
    assert client.simulate_patch(f"/v1/projects/{p['id']}", json={"name": "After"}, headers=h).status_code == 200


def test_unknown_status_is_503_and_reads_go_on(api, client, tenant_status):
    p = api.create("Before")
    tenant_status.unreachable(TEN_A)
    h = api.headers()
    for method, path, body in _writes(p["id"]):
        r = client.simulate_request(method, path, json=body, headers=h)
        assert_problem(r, 503, "unavailable")
        assert r.headers["retry-after"]
    assert client.simulate_get(f"/v1/projects/{p['id']}", headers=h).json == p
