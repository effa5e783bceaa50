"""Tenant isolation (another tenant's ids behave as missing ones) and races on one resource."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

TEN_A, TEN_B = "ten_A", "ten_B"  # as in conftest.py


def _routes(project_id: str) -> list[tuple[str, str, dict | None]]:
    return [
        ("GET", f"/v1/projects/{project_id}", None),
        ("PATCH", f"/v1/projects/{project_id}", {"name": "Hijacked"}),
        ("PATCH", f"/v1/projects/{project_id}", {"slug": "hijacked", "status": "archived"}),
        ("DELETE", f"/v1/projects/{project_id}", None),
    ]


def _strip(resp) -> tuple[int, str | None, dict]:
    body = resp.json if resp.content else {}
    return resp.status_code, resp.headers.get("content-type"), {k: body.get(k) for k in ("code", "title", "detail")}


@pytest.mark.parametrize("index", range(4))
def test_foreign_ids_answer_like_missing_ones(api, client, index):
    mine = api.create("A project", tenant_id=TEN_A, slug="shared-slug")
    before = client.simulate_get(f"/v1/projects/{mine['id']}", headers=api.headers(TEN_A)).json
    b = api.headers(TEN_B)
    method, path, body = _routes(mine["id"])[index]
    _m, missing_path, _b = _routes("prj_01HZZZZZZZZZZZZZZZZZZZZZZZ")[index]
    foreign = client.simulate_request(method, path, json=body, headers=b)
    missing = client.simulate_request(method, missing_path, json=body, headers=b)
    assert foreign.status_code == 404
    assert _strip(foreign) == _strip(missing)
    for h in ({**b, "If-Match": '"1"'}, {**b, "If-Match": '"7"'}):
        assert client.simulate_request(method, path, json=body, headers=h).status_code == 404
    after = client.simulate_get(f"/v1/projects/{mine['id']}", headers=api.headers(TEN_A)).json
    assert after == before


def test_foreign_ids_in_lists_and_batches(api, client):
    mine = api.create("Mine", tenant_id=TEN_A)
    r = client.simulate_post(
        "/v1/projects/batch-update", json={"ids": [mine["id"]], "changes": {"name": "X"}}, headers=api.headers(TEN_B)
    )
    assert r.json == {"updated": [], "not_found": [mine["id"]]}
    assert client.simulate_get("/v1/projects", headers=api.headers(TEN_B)).json["items"] == []
    assert client.simulate_get(f"/v1/projects/{mine['id']}", headers=api.headers(TEN_A)).json == mine
    # The same slug in tenant B is free: slugs are per tenant.
    assert api.create("Mine", tenant_id=TEN_B)["slug"] == mine["slug"]


def test_storage_has_no_unscoped_reader(redis_provider):
    """The repository takes the tenant at construction; no method accepts a tenant id."""
    import inspect

    from projects.storage import ProjectRepository

    for name, fn in inspect.getmembers(ProjectRepository, inspect.isfunction):
        if name != "__init__":
            assert "tenant_id" not in inspect.signature(fn).parameters, name
    with pytest.raises(ValueError):
        ProjectRepository(redis_provider, "ten_*", None)  # type: ignore[arg-type]


def test_parallel_creates_with_one_slug_exactly_one_wins(api, client):
    h = api.headers()

    def create(i: int) -> int:
        return client.simulate_post(
            "/v1/projects", json={"name": f"Racer {i}", "slug": "the-slug"}, headers=h
        ).status_code

    with ThreadPoolExecutor(16) as pool:
        codes = list(pool.map(create, range(32)))
    assert sorted(codes) == [201] + [409] * 31
    assert len(client.simulate_get("/v1/projects", headers=h).json["items"]) == 1


def test_parallel_patches_with_one_if_match_exactly_one_wins(api, client):
    p = api.create("Contended")
    h = {**api.headers(), "If-Match": '"1"'}

    def patch(i: int) -> int:
        return client.simulate_patch(f"/v1/projects/{p['id']}", json={"name": f"Writer {i}"}, headers=h).status_code

    with ThreadPoolExecutor(16) as pool:
        codes = list(pool.map(patch, range(32)))
    assert sorted(codes) == [200] + [412] * 31
    assert client.simulate_get(f"/v1/projects/{p['id']}", headers=api.headers()).json["version"] == 2


def test_parallel_slug_renames_exactly_one_wins(api, client):
    ids = [api.create(f"R{i}")["id"] for i in range(8)]
    h = api.headers()

    def rename(pid: str) -> int:
        return client.simulate_patch(f"/v1/projects/{pid}", json={"slug": "wanted"}, headers=h).status_code

    with ThreadPoolExecutor(8) as pool:
        codes = list(pool.map(rename, ids))
    assert sorted(codes) == [200] + [409] * 7
