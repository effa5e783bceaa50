"""A tenant's whole life across the four services: onboarded, used, offboarded, remembered.

Onboarding is what a customer's platform team does on day one (a tenant, an API client, a
token, a project, a flag the tenant overrides) and what they must then be able to prove
afterwards: the audit trail holds every step exactly once, with the request id they sent,
in a hash chain they can recompute themselves. Offboarding is the other end: the tenant's
data goes from every service, its clients stop working, and the trail stays readable and
intact for platform:admin, because "who did what" must outlive the tenant.
"""

from __future__ import annotations

from typing import Any

import pytest

pytestmark = [pytest.mark.tenants, pytest.mark.projects, pytest.mark.flags, pytest.mark.audit]

SCOPES = ["tenants:read", "projects:read", "projects:write", "flags:read", "flags:write", "audit:read"]
#: Bounds for what travels asynchronously (pub/sub to other instances, the durable stream to
#: audit and to the tenant-deletion cascades). Generous: staging may be busy; the checks poll
#: and pass as soon as the thing happened.
PROPAGATION_S = 5.0
AUDIT_S = 15.0
CASCADE_S = 15.0


def _evaluate(aerie: Any, token: str, key: str, **context: Any) -> dict[str, Any]:
    """One flag's evaluation, without its ``revision`` (checked here: the flag's version, a number)."""
    r = aerie.call("POST", "flags", "/v1/evaluate", token=token, json={"context": context, "keys": [key]})
    assert r.status_code == 200, r.text[:300]
    evaluation = dict(r.json()["flags"][key])
    revision = evaluation.pop("revision")
    # A flag this flags process has not heard of yet (it was created a moment ago) is an ERROR
    # without a revision: returned as it is, so an eventually() polling for it asks again.
    if evaluation["reason"] != "ERROR":
        assert isinstance(revision, int) and revision >= 1, evaluation
    return evaluation


def _actions(entries: list[dict[str, Any]]) -> list[tuple[str, str | None]]:
    return [(e["action"], e["target"]["id"]) for e in entries]


@pytest.mark.smoke
def test_onboarding_a_tenant_across_every_service(aerie):
    tenant = aerie.create_tenant(plan="team")
    client = aerie.create_client(tenant["id"], SCOPES)
    token = aerie.token(client["client_id"], client["client_secret"])

    r = aerie.call("POST", "projects", "/v1/projects", token=token, json={"name": "Launch"})
    assert r.status_code == 201, r.text
    project, project_request_id = r.json(), r.headers["X-Request-ID"]
    assert project["tenant_id"] == tenant["id"]

    # A flag for team-plan tenants: the plan reaches flags from the tenants service.
    team = [{"conditions": [{"attribute": "tenant.plan", "op": "eq", "values": ["team"]}], "serve": True}]
    key = aerie.create_flag("onboarding", default=False, rules=team, allow_overrides="tenant")["key"]
    aerie.eventually(
        lambda: _evaluate(aerie, token, key, user_id="u-1")["rule"] == "rules[0]",
        PROPAGATION_S,
        "the new flag's team-plan rule serving the new tenant",
    )
    assert _evaluate(aerie, token, key, user_id="u-1") == {
        "value": True,
        "variant": None,
        "reason": "TARGETING_MATCH",
        "rule": "rules[0]",
    }
    # The tenant opts out: its override beats the rule.
    r = aerie.call("PUT", "flags", f"/v1/flags/{key}/overrides/tenant", token=token, json={"value": False})
    assert r.status_code == 200, r.text
    aerie.eventually(
        lambda: (
            _evaluate(aerie, token, key, user_id="u-1")
            == {
                "value": False,
                "variant": None,
                "reason": "TARGETING_MATCH",
                "rule": "override:tenant",
            }
        ),
        PROPAGATION_S,
        "the tenant's override answering its evaluations",
    )

    # Every step is in the tenant's trail, once, in a chain anyone can recompute.
    wanted = [
        ("tenant.created", tenant["id"]),
        ("client.created", client["client_id"]),
        ("project.created", project["id"]),
        ("flag.override.set", key),
    ]

    def recorded() -> bool:
        return set(wanted) <= set(_actions(aerie.audit_trail(token)))

    aerie.eventually(recorded, AUDIT_S, "the onboarding steps reaching the tenant's audit trail", interval=0.25)
    trail = aerie.audit_trail(token)
    steps = _actions(trail)
    assert all(steps.count(step) == 1 for step in wanted), steps
    assert any(e["action"] == "token.issued" and e["actor"]["client_id"] == client["client_id"] for e in trail)
    assert [e["seq"] for e in trail] == list(range(1, len(trail) + 1)), "seq must be gapless from 1"
    assert {e["tenant_id"] for e in trail} == {tenant["id"]}
    created = next(e for e in trail if e["action"] == "project.created")
    assert created["request_id"] == project_request_id, "the trail must name the request that did it"
    assert created["actor"] == {"type": "client", "id": client["client_id"], "client_id": client["client_id"]}
    assert aerie.first_broken_link(trail) is None, "the exported chain does not recompute"
    r = aerie.call("GET", "audit", "/v1/audit/verify", token=token)
    assert r.status_code == 200, r.text
    verdict = r.json()
    assert verdict["valid"] is True and verdict["first_invalid_seq"] is None, verdict
    assert verdict["entries"] >= len(trail) and verdict["head"]["seq"] >= trail[-1]["seq"], (verdict, len(trail))

    # The definition itself is a platform action: it is in the platform trail, not the tenant's.
    def defined() -> bool:
        platform = aerie.audit_trail(aerie.admin_token, action="flag.created", target_id=key)
        return [e["target"]["id"] for e in platform] == [key]

    aerie.eventually(defined, AUDIT_S, "flag.created reaching the platform trail", interval=0.25)


def test_offboarding_removes_the_tenant_everywhere_but_its_audit_trail(aerie):
    tenant, token = aerie.tenant_with_token(SCOPES)
    # Made before the deletion and not one of the tenant's clients, so it is not revoked:
    # through it the journey sees what each service still holds for the tenant.
    bound = aerie.platform_token_for(tenant["id"])
    project = aerie.call("POST", "projects", "/v1/projects", token=token, json={"name": "Doomed"}).json()
    key = aerie.create_flag("offboarding", default=False, allow_overrides="user")["key"]
    for path in (f"/v1/flags/{key}/overrides/tenant", f"/v1/flags/{key}/overrides/users/u-1"):
        r = aerie.call("PUT", "flags", path, token=token, json={"value": True})
        assert r.status_code == 200, r.text
    aerie.eventually(
        lambda: _evaluate(aerie, bound, key, user_id="u-1")["rule"] == "override:user",
        PROPAGATION_S,
        "the overrides answering before the deletion",
    )

    r = aerie.call("DELETE", "tenants", f"/v1/tenants/{tenant['id']}", token=aerie.admin_token)
    assert r.status_code == 204, r.text

    # The tenant's own client is refused by every service.
    for service, path in [
        ("tenants", f"/v1/tenants/{tenant['id']}"),
        ("projects", "/v1/projects"),
        ("flags", "/v1/flags/snapshot"),
        ("audit", "/v1/audit/events"),
    ]:

        def refused(service: str = service, path: str = path) -> bool:
            return aerie.call("GET", service, path, token=token).status_code == 401

        aerie.eventually(refused, PROPAGATION_S, f"{service} refusing the deleted tenant's client")

    # Its data is gone from every service: what is left answers as if it never existed.
    def projects_gone() -> bool:
        r = aerie.call("GET", "projects", "/v1/projects", token=bound)
        return r.status_code in (401, 403, 404) or (r.status_code == 200 and r.json()["items"] == [])

    aerie.eventually(projects_gone, CASCADE_S, "projects removing the deleted tenant's projects", interval=0.25)
    r = aerie.call("GET", "projects", f"/v1/projects/{project['id']}", token=bound)
    assert r.status_code in (401, 403, 404), r.text[:300]

    left: dict[str, Any] = {}

    def overrides_gone() -> bool:
        r = aerie.call("GET", "flags", "/v1/flags/snapshot", token=bound)
        if r.status_code in (401, 403, 404):
            return True
        assert r.status_code == 200, r.text[:300]
        left["snapshot overrides"] = r.json()["overrides"]
        left["evaluation"] = _evaluate(aerie, bound, key, user_id="u-1")
        return left["snapshot overrides"] == {"tenant": {}, "users": {}} and left["evaluation"]["reason"] == "DEFAULT"

    aerie.eventually(
        overrides_gone, CASCADE_S, "flags dropping the deleted tenant's overrides", interval=0.25, detail=lambda: left
    )
    r = aerie.call("PUT", "flags", f"/v1/flags/{key}/overrides/tenant", token=bound, json={"value": True})
    assert r.status_code in (401, 403), r.text[:300]

    # The trail outlives the tenant: platform:admin reads it whole, and it verifies.
    def deletion_recorded() -> bool:
        entries = aerie.audit_trail(aerie.admin_token, tenant_id=tenant["id"])
        return ("tenant.deleted", tenant["id"]) in _actions(entries)

    aerie.eventually(deletion_recorded, AUDIT_S, "tenant.deleted reaching the deleted tenant's trail", interval=0.25)
    trail = aerie.audit_trail(aerie.admin_token, tenant_id=tenant["id"])
    steps = _actions(trail)
    for step, times in [
        (("tenant.created", tenant["id"]), 1),
        (("project.created", project["id"]), 1),
        (("flag.override.set", key), 2),  # the tenant's override and u-1's
        (("tenant.deleted", tenant["id"]), 1),
    ]:
        assert steps.count(step) == times, (step, steps)
    assert [e["seq"] for e in trail] == list(range(1, len(trail) + 1))
    assert aerie.first_broken_link(trail) is None, "the deleted tenant's chain does not recompute"
    r = aerie.call("GET", "audit", "/v1/audit/verify", token=aerie.admin_token, params={"tenant_id": tenant["id"]})
    assert r.status_code == 200 and r.json()["valid"] is True, r.text[:300]
