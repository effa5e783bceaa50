"""A deleted tenant's projects are removed, from the durable stream, whenever projects runs."""

from __future__ import annotations

import pytest
import redis

from aerie.events import EventContext, EventPublisher, new_event
from aerie.testing.polling import wait_for
from projects.cascade import GROUP, TenantCascade
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

    svc = build(settings, infra, tenant_status)
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


def test_purge_is_idempotent_and_ignores_other_events(redis_provider, redis_url):
    repo = ProjectRepository(redis_provider, TEN_A, EventPublisher())
    repo.create({"name": "X"}, EventContext.system("test"))
    cascade = TenantCascade(redis_provider)
    cascade({"type": "tenant.suspended", "tenant_id": TEN_A})
    assert _keys(redis_url, TEN_A)
    cascade({"type": "tenant.deleted", "tenant_id": TEN_A})
    cascade({"type": "tenant.deleted", "tenant_id": TEN_A})
    assert not _keys(redis_url, TEN_A)
    assert UnsafeAllTenants(redis_provider).purge_tenant(TEN_A) == 0


def test_no_create_slips_in_after_a_purge(redis_provider, redis_url):
    """A worker that has not heard of the deletion yet still cannot recreate the tenant's data."""
    from aerie.errors import Problem

    repo = ProjectRepository(redis_provider, TEN_A, EventPublisher())
    repo.create({"name": "Before"}, EventContext.system("test"))
    TenantCascade(redis_provider)({"type": "tenant.deleted", "tenant_id": TEN_A})
    with pytest.raises(Problem) as refused:
        repo.create({"name": "After"}, EventContext.system("test"))
    assert refused.value.problem_code == "tenant_suspended"
    assert not _keys(redis_url, TEN_A)
