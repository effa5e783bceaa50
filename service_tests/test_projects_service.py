"""The projects service under uWSGI beside the real tenants service: tokens, suspension, cascade."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import requests
from conftest import REPO, SVC_ID, SVC_SECRET, Http, vcap_services

from aerie.local.redis_server import RedisServer, free_port
from aerie.testing.polling import wait_for
from aerie.testing.process import UwsgiService


def projects_env(server: RedisServer, tenants_url: str) -> dict[str, str]:
    return {
        "VCAP_SERVICES": vcap_services(server),
        "AERIE_TENANTS_URL": tenants_url,
        "AERIE_CLIENT_ID": SVC_ID,
        "AERIE_CLIENT_SECRET": SVC_SECRET,
    }


@pytest.fixture(scope="module")
def projects_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("logs") / "projects.log"


@pytest.fixture(scope="module")
def projects(redis_server: RedisServer, tenants: UwsgiService, projects_log: Path) -> Iterator[UwsgiService]:
    service = UwsgiService(
        REPO / "services" / "projects", free_port(), projects_env(redis_server, tenants.url), log_path=projects_log
    )
    service.start()
    yield service
    service.stop()


@pytest.fixture
def http(tenants: UwsgiService) -> Http:
    return Http(tenants.url)


def new_tenant(http: Http) -> tuple[dict, dict[str, str]]:
    """A fresh tenant and the headers of a projects client of it, from the real tenants service."""
    admin = http.bearer()
    r = http.request("POST", "/v1/tenants", json={"slug": f"p-{uuid.uuid4().hex[:12]}", "name": "P"}, headers=admin)
    assert r.status_code == 201, r.text
    tenant = r.json()
    r = http.request(
        "POST",
        f"/v1/tenants/{tenant['id']}/clients",
        json={"name": "app", "scopes": ["projects:read", "projects:write"]},
        headers=admin,
    )
    assert r.status_code == 201, r.text
    created = r.json()
    return tenant, http.bearer(http.token(created["client_id"], created["client_secret"]))


def project_keys(server: RedisServer, tenant_id: str) -> list[str]:
    r = redis.Redis.from_url(server.url, decode_responses=True)
    return [k for k in r.scan_iter(match=f"projects:{{{tenant_id}}}:*") if not k.endswith(":deleted")]


def test_create_and_get_with_a_real_tenant_token(http: Http, projects: UwsgiService):
    tenant, headers = new_tenant(http)
    r = requests.post(f"{projects.url}/v1/projects", json={"name": "Launch Plan"}, headers=headers, timeout=5)
    assert r.status_code == 201, r.text
    project = r.json()
    assert project["tenant_id"] == tenant["id"] and project["slug"] == "launch-plan"
    assert r.headers["Location"] == f"/v1/projects/{project['id']}" and r.headers["ETag"] == '"1"'
    got = requests.get(f"{projects.url}{r.headers['Location']}", headers=headers, timeout=5)
    assert got.status_code == 200 and got.json() == project
    _other, other_headers = new_tenant(http)
    assert (
        requests.get(f"{projects.url}/v1/projects/{project['id']}", headers=other_headers, timeout=5).status_code == 404
    )


def test_suspension_bites_within_a_second(http: Http, projects: UwsgiService):
    tenant, headers = new_tenant(http)

    def create() -> int:  # a new connection each time, so requests spread over the workers
        return requests.post(
            f"{projects.url}/v1/projects", json={"name": "x" + uuid.uuid4().hex[:6]}, headers=headers, timeout=5
        ).status_code

    assert all(create() == 201 for _ in range(10))  # every worker has cached "active"
    r = http.request("POST", f"/v1/tenants/{tenant['id']}/suspend", headers=http.bearer())
    assert r.status_code == 200
    suspended_at = time.monotonic()
    while True:
        statuses = [create() for _ in range(10)]
        if set(statuses) == {403}:
            break
        assert time.monotonic() - suspended_at < 1.0, statuses
    reads = requests.get(f"{projects.url}/v1/projects", headers=headers, timeout=5)
    assert reads.status_code == 200 and len(reads.json()["items"]) == 10
    r = requests.post(f"{projects.url}/v1/projects", json={"name": "no"}, headers=headers, timeout=5)
    assert r.json()["code"] == "tenant_suspended"
    http.request("POST", f"/v1/tenants/{tenant['id']}/reactivate", headers=http.bearer())
    assert wait_for(lambda: create() == 201, 2.0)


def test_cascade_after_tenant_deletion(http: Http, projects: UwsgiService, redis_server: RedisServer):
    tenant, headers = new_tenant(http)
    _keep, keep_headers = new_tenant(http)
    for name in ("One", "Two"):
        assert (
            requests.post(f"{projects.url}/v1/projects", json={"name": name}, headers=headers, timeout=5).status_code
            == 201
        )
    kept = requests.post(f"{projects.url}/v1/projects", json={"name": "Kept"}, headers=keep_headers, timeout=5).json()
    assert project_keys(redis_server, tenant["id"])
    assert http.request("DELETE", f"/v1/tenants/{tenant['id']}", headers=http.bearer()).status_code == 204
    assert wait_for(lambda: not project_keys(redis_server, tenant["id"]), 5.0)
    assert requests.get(f"{projects.url}/v1/projects/{kept['id']}", headers=keep_headers, timeout=5).status_code == 200


def test_cascade_when_projects_was_stopped(
    http: Http, tenants: UwsgiService, redis_server: RedisServer, projects: UwsgiService
):
    tenant, headers = new_tenant(http)
    assert (
        requests.post(f"{projects.url}/v1/projects", json={"name": "Orphan"}, headers=headers, timeout=5).status_code
        == 201
    )
    projects.stop()
    try:
        assert http.request("DELETE", f"/v1/tenants/{tenant['id']}", headers=http.bearer()).status_code == 204
        time.sleep(0.5)
        assert project_keys(redis_server, tenant["id"])  # nobody removed them while projects was down
    finally:
        projects.start()
    assert wait_for(lambda: not project_keys(redis_server, tenant["id"]), 10.0)


def test_writes_are_503_when_tenants_is_down_and_nothing_cached(
    http: Http, tenants: UwsgiService, projects: UwsgiService
):
    _tenant, headers = new_tenant(http)
    # Reads only: workers fetch the JWKS, but none asks for this tenant's status.
    assert all(requests.get(f"{projects.url}/v1/projects", headers=headers, timeout=5).ok for _ in range(10))
    tenants.stop()
    try:
        r = requests.post(f"{projects.url}/v1/projects", json={"name": "Blind"}, headers=headers, timeout=10)
        assert r.status_code == 503 and r.json()["code"] == "unavailable" and r.headers["Retry-After"]
        # Reads keep working where the worker holds the JWKS; a worker that never fetched it
        # (which worker takes a request is not ours to choose) answers 503, never 500.
        reads = [requests.get(f"{projects.url}/v1/projects", headers=headers, timeout=10) for _ in range(8)]
        assert all(r.status_code == 200 or r.json()["code"] == "unavailable" for r in reads)
        assert any(r.status_code == 200 for r in reads)
    finally:
        tenants.start()


def test_event_stream_delivers_live_and_leaves_threads_for_the_api(http: Http, projects: UwsgiService):
    _tenant, headers = new_tenant(http)
    streams = [
        requests.get(f"{projects.url}/v1/projects/events", headers=headers, stream=True, timeout=30) for _ in range(3)
    ]
    try:
        assert all(s.status_code == 200 for s in streams)
        started = time.monotonic()
        for _ in range(10):  # the API still answers while streams are open
            assert requests.get(f"{projects.url}/v1/projects", headers=headers, timeout=5).status_code == 200
        assert time.monotonic() - started < 3
        r = requests.post(f"{projects.url}/v1/projects", json={"name": "Streamed"}, headers=headers, timeout=5)
        assert r.status_code == 201
        lines = streams[0].iter_lines(chunk_size=1, decode_unicode=True)
        data = next(line for line in lines if line.startswith("data: "))
        assert json.loads(data[len("data: ") :])["data"]["project"]["id"] == r.json()["id"]
    finally:
        for s in streams:
            s.close()


def test_abandoned_streams_free_their_slots(http: Http, projects: UwsgiService):
    """More streams than the 2 workers x 4 slots, each dropped: hang-ups free slots within a second."""
    _tenant, headers = new_tenant(http)
    for _ in range(3):
        opened = [
            requests.get(f"{projects.url}/v1/projects/events", headers=headers, stream=True, timeout=30)
            for _ in range(4)
        ]
        assert all(s.status_code == 200 for s in opened), [s.status_code for s in opened]
        for s in opened:
            s.raw.read(1)
            s.close()
        time.sleep(1.5)
    r = requests.get(f"{projects.url}/v1/projects", headers=headers, timeout=5)
    assert r.status_code == 200
