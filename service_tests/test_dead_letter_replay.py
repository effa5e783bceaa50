"""Dead letters through the real tenants service, with audit under uWSGI beside it.

A consumer group (a real ``StreamConsumer`` whose handler fails, as a bug would make it)
gives up on an event, which audit has already recorded. An operator lists it and replays it
over HTTP once the bug is fixed: the group handles it, audit does not record it twice, and a
second replay finds nothing.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from conftest import KEYSPACE, Http, redis_provider, start_service, tenant_with_token

from aerie.events import EventContext, EventPublisher, StreamConsumer, new_event
from aerie.local.redis_server import RedisServer
from aerie.testing.polling import wait_for
from aerie.testing.process import UwsgiService

pytestmark = [pytest.mark.tenants, pytest.mark.audit]

LETTERS = "/v1/platform/dead-letters"


@pytest.fixture(scope="module")
def audit(
    redis_server: RedisServer, tenants: UwsgiService, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[UwsgiService]:
    service = start_service("audit", redis_server, tenants.url, tmp_path_factory.mktemp("logs"))
    yield service
    service.stop()


@pytest.fixture
def http(tenants: UwsgiService) -> Http:
    return Http(tenants.url)


def trail(audit: UwsgiService, token: str) -> list[dict[str, Any]]:
    r = requests.get(f"{audit.url}/v1/audit/events", headers={"Authorization": f"Bearer {token}"}, timeout=5)
    assert r.status_code == 200, r.text
    return r.json()["items"]


def test_an_event_a_group_gave_up_on_is_replayed_once_and_audit_keeps_it_once(
    http: Http, audit: UwsgiService, redis_server: RedisServer
):
    tenant, token = tenant_with_token(http, ["audit:read"])
    provider = redis_provider(redis_server)
    # The buggy group starts at each stream's end, not behind every earlier test's events.
    for stream in KEYSPACE.streams:
        provider.client.xgroup_create(stream, "svc-test-buggy", id="$", mkstream=True)
    evt = new_event("project.created", tenant["id"], {"id": "prj_poison", "name": "p"}, EventContext.system("test"))
    EventPublisher(KEYSPACE).publish(provider.client, evt)
    assert wait_for(lambda: evt["id"] in {e["id"] for e in trail(audit, token)}, 15)

    fixed = False
    handled: list[str] = []

    def handler(event: dict[str, Any]) -> None:
        if event["id"] == evt["id"] and not fixed:
            raise RuntimeError("a bug in this group's handler")
        handled.append(event["id"])

    group = StreamConsumer(
        provider, group="svc-test-buggy", handler=handler, block_ms=10, min_idle_ms=10, max_deliveries=3
    )
    admin = http.bearer()

    def buried() -> list[dict[str, Any]]:
        group.poll_once()
        time.sleep(0.02)
        r = http.request("GET", LETTERS, params={"group": "svc-test-buggy"}, headers=admin)
        assert r.status_code == 200, r.text
        return r.json()["items"]

    assert wait_for(buried, 15)
    (letter,) = buried()
    assert letter["event"]["id"] == evt["id"] and letter["deliveries"] >= 3 and letter["raw"] is None
    assert evt["id"] not in handled

    # Not an operator: a tenant's token is refused.
    assert http.request("GET", LETTERS, headers={"Authorization": f"Bearer {token}"}).status_code == 403
    fixed = True
    r = http.request("POST", f"{LETTERS}/{letter['id']}/replay", headers=admin)
    assert r.status_code == 200, r.text
    assert r.json()["id"] == letter["id"] and r.json()["replayed_as"]
    assert wait_for(lambda: group.poll_once() is not None and evt["id"] in handled, 10)
    assert handled.count(evt["id"]) == 1

    again = http.request("POST", f"{LETTERS}/{letter['id']}/replay", headers=admin)
    assert again.status_code == 404 and again.json()["code"] == "not_found"
    assert http.request("GET", f"{LETTERS}/{letter['id']}", headers=admin).status_code == 404
    # audit saw the replayed entry too, and recorded nothing twice.
    time.sleep(2)
    assert [e["id"] for e in trail(audit, token)].count(evt["id"]) == 1
    for stream in KEYSPACE.streams:
        provider.client.xgroup_destroy(stream, "svc-test-buggy")


@pytest.mark.parametrize("letter_id", ["x", "1-2-3", "+", "%2B", "9" * 30 + "-0"])
def test_an_id_that_is_no_letter_is_404_for_every_method(http: Http, letter_id: str):
    admin = http.bearer()
    for method, path in (("GET", ""), ("DELETE", ""), ("POST", "/replay")):
        r = http.request(method, f"{LETTERS}/{letter_id}{path}", headers=admin)
        assert r.status_code == 404, (method, letter_id, r.text)
        assert r.headers["Content-Type"].startswith("application/problem+json")
