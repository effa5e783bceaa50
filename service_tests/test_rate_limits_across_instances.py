"""Rate limits per tenant and plan, held across two projects instances under uWSGI sharing one Redis."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest
import requests
from conftest import Http, start_service, tenant_with_token

from aerie.local.redis_server import RedisServer
from aerie.testing.process import UwsgiService

pytestmark = pytest.mark.projects

LIMITS = json.dumps({"free": 5, "team": 40, "enterprise": None})


@pytest.fixture(scope="module")
def two_projects(
    redis_server: RedisServer, tenants: UwsgiService, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[list[UwsgiService]]:
    logs = tmp_path_factory.mktemp("rate-logs")
    instances = []
    try:
        for index in range(2):
            instances.append(
                start_service(
                    "projects", redis_server, tenants.url, logs, AERIE_RATE_LIMITS=LIMITS, CF_INSTANCE_INDEX=str(index)
                )
            )
        yield instances
    finally:
        for instance in instances:
            instance.stop()


def burst(instances: list[UwsgiService], token: str, n: int) -> tuple[list[requests.Response], bool]:
    """``n`` reads spread over the instances, started just after a second begins: the answers,
    and whether they all fell in that one second.

    One read per instance first, a second before: a process that has not seen the tenant
    yet fetches its plan aside and serves that read unlimited."""
    for instance in instances:
        requests.get(f"{instance.url}/v1/projects", headers={"Authorization": f"Bearer {token}"}, timeout=5)
    time.sleep(1.1)
    while time.time() % 1 > 0.05:
        time.sleep(0.01)
    second = int(time.time())
    session = requests.Session()
    headers = {"Authorization": f"Bearer {token}"}
    answers = [session.get(f"{instances[i % 2].url}/v1/projects", headers=headers, timeout=5) for i in range(n)]
    return answers, int(time.time()) == second


def test_a_tenant_gets_its_plans_limit_across_instances_and_no_other_tenant_pays(http: Http, two_projects):
    _, free_token = tenant_with_token(http, ["projects:read"])
    _, other_token = tenant_with_token(http, ["projects:read"])
    answers, one_second = burst(two_projects, free_token, 30)
    served = [a for a in answers if a.status_code == 200]
    refused = [a for a in answers if a.status_code == 429]
    assert len(served) + len(refused) == 30
    assert len(served) == 5 if one_second else len(served) <= 10
    assert served[0].headers["RateLimit-Policy"] == '"tenant";q=5;w=1'
    assert refused, "30 reads in a second from a free tenant were all served"
    problem = refused[0]
    assert problem.headers["Content-Type"].startswith("application/problem+json")
    assert problem.json()["code"] == "rate_limited" and problem.json()["status"] == 429
    assert problem.headers["Retry-After"] == "1" and problem.headers["RateLimit"] == '"tenant";r=0;t=1'
    # Refused by both instances, not only the one that spent the limit.
    assert {a.url.split("/v1")[0] for a in refused} == {i.url for i in two_projects}
    # Another tenant, in the same second: its own limit, whole.
    others, _ = burst(two_projects, other_token, 5)
    assert [a.status_code for a in others] == [200] * 5


def test_a_plan_change_moves_the_limit_within_seconds(http: Http, two_projects):
    tenant, token = tenant_with_token(http, ["projects:read"])
    r = http.request("PATCH", f"/v1/tenants/{tenant['id']}", json={"plan": "team"}, headers=http.bearer())
    assert r.status_code == 200, r.text
    time.sleep(5.5)  # the limiter trusts a plan it looked up for 5 s
    answers, one_second = burst(two_projects, token, 30)
    assert [a.status_code for a in answers].count(200) == 30 or not one_second
