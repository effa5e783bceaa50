"""A deleted tenant's projects are removed, from the durable stream, whenever projects runs."""

from __future__ import annotations

import json

import pytest
import redis

from aerie.events import EventContext, EventPublisher, new_event
from aerie.testing.polling import wait_for
from projects.cascade import GROUP, projects_cascade
from projects.event_positions import PositionedPublisher
from projects.storage import ProjectRepository, UnsafeAllTenants

TEN_A, TEN_B = "ten_A", "ten_B"


def _delete_tenant(redis_url: str, tenant_id: str) -> None:
    event = new_event(
        "tenant.deleted", tenant_id, {"tenant": {"id": tenant_id, "status": "deleted"}}, EventContext.system("tenants")
    )
    EventPublisher().publish(redis.Redis.from_url(redis_url, decode_responses=True), event)


def _keys(redis_url: str, tenant_id: str) -> list[str]:
    """The tenant's project keys (the deletion tombstone is not project data)."""
    r = redis.Redis.from_url(redis_url, decode_responses=True)
    return [k for k in r.scan_iter(match=f"projects:{{{tenant_id}}}:*") if not k.endswith(":deleted")]


def test_deletion_published_before_the_consumer_started_is_handled(settings, signing_key, tenant_status, redis_url):
    from aerie.app import Infrastructure
    from aerie.auth.tokens import StaticKeySource
    from projects.app import build

    events = EventPublisher()
    infra = Infrastructure.from_settings(settings, keys=StaticKeySource({"keys": [signing_key.public_jwk()]}))
    repo_a = ProjectRepository(infra.redis, TEN_A, events)
    repo_b = ProjectRepository(infra.redis, TEN_B, events)
    ctx = EventContext.system("test")
    for i in range(3):
        repo_a.create({"name": f"A{i}"}, ctx)
    kept = repo_b.create({"name": "B"}, ctx)
    _delete_tenant(redis_url, TEN_A)  # nobody consumes yet: projects is "down"
    assert _keys(redis_url, TEN_A)

    svc = build(settings, infra=infra, tenants=tenant_status)
    try:
        svc.infra.background.ensure_started()  # what the worker does on start, /ready and any request
        assert wait_for(lambda: not _keys(redis_url, TEN_A))
        assert repo_b.require(kept["id"]) == kept
        groups = redis.Redis.from_url(redis_url, decode_responses=True).xinfo_groups("aerie:events")
        assert [g["name"] for g in groups] == [GROUP]
    finally:
        svc.close()


def test_live_deletion_via_first_request(api, client, service, redis_url):
    api.create("Doomed")
    client.simulate_get("/v1/projects", headers=api.headers())  # first request starts the consumer
    _delete_tenant(redis_url, TEN_A)
    assert wait_for(lambda: not _keys(redis_url, TEN_A))
    assert client.simulate_get("/v1/projects", headers=api.headers()).json["items"] == []


def _project_events(redis_url: str) -> list[dict]:
    r = redis.Redis.from_url(redis_url, decode_responses=True)
    return [json.loads(f["event"]) for _id, f in r.xrange("aerie:events") if f["type"].startswith("project.")]


def test_each_removed_project_gets_its_deleted_event_once(redis_provider, redis_url):
    events = PositionedPublisher()
    repo = ProjectRepository(redis_provider, TEN_A, events)
    made = [repo.create({"name": f"P{i}"}, EventContext.system("test")) for i in range(5)]
    other = ProjectRepository(redis_provider, TEN_B, events).create({"name": "B"}, EventContext.system("test"))
    deletion = {
        "id": "evt_01JD0000000000000000000000",
        "type": "tenant.deleted",
        "tenant_id": TEN_A,
        "actor": {"type": "client", "id": "admin", "client_id": "admin"},
        "request_id": "req-1",
    }
    cascade = projects_cascade(redis_provider, events)
    cascade({"type": "tenant.suspended", "tenant_id": TEN_A})
    assert _keys(redis_url, TEN_A)
    UnsafeAllTenants(redis_provider, events, batch=2).purge_tenant(
        TEN_A, EventContext.system("test"), {"type": "tenant.deleted"}
    )  # batches smaller than the tenant: every batch is handled
    assert not _keys(redis_url, TEN_A)
    deleted = [e for e in _project_events(redis_url) if e["type"] == "project.deleted"]
    assert sorted(e["data"]["project"]["id"] for e in deleted) == sorted(p["id"] for p in made)
    assert {e["tenant_id"] for e in deleted} == {TEN_A}
    cascade(deletion)  # redelivered: the projects are gone, so nothing more is published
    cascade(deletion)
    assert len([e for e in _project_events(redis_url) if e["type"] == "project.deleted"]) == 5
    assert ProjectRepository(redis_provider, TEN_B, events).require(other["id"]) == other


def test_cascade_events_carry_the_deletion(redis_provider, redis_url):
    events = PositionedPublisher()
    kept = ProjectRepository(redis_provider, TEN_A, events).create({"name": "X"}, EventContext.system("test"))
    actor = {"type": "client", "id": "admin", "client_id": "admin"}
    deletion = {"id": "evt_01JD0000000000000000000001", "type": "tenant.deleted", "tenant_id": TEN_A}
    projects_cascade(redis_provider, events)({**deletion, "actor": actor, "request_id": "req-1"})
    [event] = [e for e in _project_events(redis_url) if e["type"] == "project.deleted"]
    assert event["data"] == {"project": kept, "cause": {"type": "tenant.deleted", "event_id": deletion["id"]}}
    assert event["actor"] == actor and event["request_id"] == "req-1"
    assert UnsafeAllTenants(redis_provider, events).purge_tenant(TEN_A, EventContext.system("t"), {}) == 0


def test_no_create_slips_in_after_a_purge(redis_provider, redis_url):
    """A worker that has not heard of the deletion yet still cannot recreate the tenant's data."""
    from aerie.errors import Problem

    repo = ProjectRepository(redis_provider, TEN_A, EventPublisher())
    repo.create({"name": "Before"}, EventContext.system("test"))
    projects_cascade(redis_provider, EventPublisher())({"type": "tenant.deleted", "tenant_id": TEN_A})
    with pytest.raises(Problem) as refused:
        repo.create({"name": "After"}, EventContext.system("test"))
    assert refused.value.problem_code == "tenant_suspended"
    assert not _keys(redis_url, TEN_A)
