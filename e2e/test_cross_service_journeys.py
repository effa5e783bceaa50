"""Journeys that cross tenants and projects: what one service decides must hold in the other.

A suspension, a revoked client and a tenant boundary are decided by tenants and enforced by
every service; these journeys check the effect where the customer meets it.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Callable
from typing import Any

import pytest
import requests

from aerie.testing.http import basic_auth

pytestmark = [pytest.mark.tenants, pytest.mark.projects]

ALL_SCOPES = ["tenants:read", "tenants:write", "projects:read", "projects:write"]
#: The contract: "Writes of a suspended tenant get 403"; it reaches projects by pub/sub.
PROPAGATION_S = 2.0


def _problem_code(r: requests.Response) -> str | None:
    try:
        body = r.json()
    except ValueError:
        return None
    return body.get("code") if isinstance(body, dict) else None


def test_suspension_and_reactivation_across_services(aerie):
    tenant, token = aerie.tenant_with_token(ALL_SCOPES)
    project = aerie.call("POST", "projects", "/v1/projects", token=token, json={"name": "Before"}).json()
    path = f"/v1/projects/{project['id']}"
    r = aerie.call("POST", "tenants", f"/v1/tenants/{tenant['id']}/suspend", token=aerie.admin_token)
    assert r.status_code == 200 and r.json()["status"] == "suspended"

    def writes_refused() -> bool:
        r = aerie.call("POST", "projects", "/v1/projects", token=token, json={"name": "During"})
        return r.status_code == 403 and _problem_code(r) == "tenant_suspended"

    aerie.eventually(writes_refused, PROPAGATION_S, "projects refusing the suspended tenant's writes")
    for method, body in (("PATCH", {"name": "Nope"}), ("DELETE", None)):
        r = aerie.call(method, "projects", path, token=token, json=body)
        assert r.status_code == 403 and _problem_code(r) == "tenant_suspended", (method, r.text)
    r = aerie.call("PATCH", "tenants", f"/v1/tenants/{tenant['id']}", token=token, json={"name": "Nope"})
    assert r.status_code == 403 and _problem_code(r) == "tenant_suspended"
    # Reads still work, and nothing changed.
    assert aerie.call("GET", "projects", path, token=token).json() == project
    assert [p["id"] for p in aerie.call("GET", "projects", "/v1/projects", token=token).json()["items"]] == [
        project["id"]
    ]
    assert aerie.call("GET", "tenants", f"/v1/tenants/{tenant['id']}", token=token).json()["status"] == "suspended"

    r = aerie.call("POST", "tenants", f"/v1/tenants/{tenant['id']}/reactivate", token=aerie.admin_token)
    assert r.status_code == 200 and r.json()["status"] == "active"

    def writes_accepted() -> bool:
        return aerie.call("POST", "projects", "/v1/projects", token=token, json={"name": "After"}).status_code == 201

    aerie.eventually(writes_accepted, PROPAGATION_S, "projects accepting the reactivated tenant's writes")
    r = aerie.call("PATCH", "projects", path, token=token, json={"name": "Renamed"})
    assert r.status_code == 200 and r.json()["name"] == "Renamed"


@pytest.mark.smoke
def test_client_revocation_takes_effect_everywhere(aerie):
    tenant, _ = aerie.tenant_with_token(["tenants:read"])
    client = aerie.create_client(tenant["id"], ["tenants:read", "projects:read"])
    token = aerie.token(client["client_id"], client["client_secret"])
    checks = [("tenants", f"/v1/tenants/{tenant['id']}"), ("projects", "/v1/projects")]
    for service, path in checks:
        assert aerie.call("GET", service, path, token=token).status_code == 200, service
    r = aerie.call(
        "DELETE", "tenants", f"/v1/tenants/{tenant['id']}/clients/{client['client_id']}", token=aerie.admin_token
    )
    assert r.status_code == 204
    for service, path in checks:

        def refused(service: str = service, path: str = path) -> bool:
            r = aerie.call("GET", service, path, token=token)
            return r.status_code == 401 and "invalid_token" in r.headers.get("WWW-Authenticate", "")

        aerie.eventually(refused, 1.0, f"{service} refusing the revoked client's token")  # the contract's second
    # And no new token for it.
    r = aerie.call(
        "POST",
        "tenants",
        "/v1/oauth/token",
        data={"grant_type": "client_credentials"},
        headers={"Authorization": basic_auth(client["client_id"], client["client_secret"])},
    )
    assert r.status_code == 401 and r.json()["error"] == "invalid_client"


def _absent(real: str) -> str:
    """An id shaped like ``real`` that names nothing (ids are ULIDs behind a prefix)."""
    return real[:-6] + "ZZZZZZ"


def test_cross_tenant_probing_of_every_route(aerie):
    """Tenant B, holding every tenant scope, tries each documented route on tenant A's things.

    Each answer must be the one B gets for an id that does not exist (same status, same
    code), so B learns nothing, not even that A's resource exists; and A is unchanged after.
    Routes come from both services' OpenAPI documents, so a route added later without a probe
    here fails this journey.
    """
    a, a_token = aerie.tenant_with_token(ALL_SCOPES)
    a_client = aerie.create_client(a["id"], ["tenants:read"])
    a_project = aerie.call("POST", "projects", "/v1/projects", token=a_token, json={"name": "Crown Jewels"}).json()
    b, b_token = aerie.tenant_with_token(ALL_SCOPES)
    b_client = aerie.create_client(b["id"], ALL_SCOPES)
    a_ids = {"tenant_id": a["id"], "client_id": a_client["client_id"], "project_id": a_project["id"]}
    absent_ids = {k: _absent(v) for k, v in a_ids.items()}

    def same_as_absent(method: str, service: str, template: str, body: Any = None) -> None:
        real = aerie.call(method, service, template.format(**a_ids), token=b_token, json=body)
        absent = aerie.call(method, service, template.format(**absent_ids), token=b_token, json=body)
        assert real.status_code >= 400, f"{method} {template} on A's resource: {real.status_code} {real.text[:200]}"
        assert (real.status_code, _problem_code(real)) == (absent.status_code, _problem_code(absent)), (
            f"{method} {template} tells A's resource from a missing one: {real.status_code} vs {absent.status_code}"
        )

    probes: dict[tuple[str, str, str], Callable[[], None]] = {}

    def probe(service: str, method: str, template: str) -> Callable[[Callable[[], None]], Callable[[], None]]:
        def register(fn: Callable[[], None]) -> Callable[[], None]:
            probes[(service, method, template)] = fn
            return fn

        return register

    for method, template, body in [
        ("GET", "/v1/tenants/{tenant_id}", None),
        ("PATCH", "/v1/tenants/{tenant_id}", {"name": "Hijacked"}),
        ("DELETE", "/v1/tenants/{tenant_id}", None),
        ("POST", "/v1/tenants/{tenant_id}/suspend", None),
        ("POST", "/v1/tenants/{tenant_id}/reactivate", None),
        ("GET", "/v1/tenants/{tenant_id}/clients", None),
        ("POST", "/v1/tenants/{tenant_id}/clients", {"name": "mole", "scopes": ["tenants:read"]}),
        ("DELETE", "/v1/tenants/{tenant_id}/clients/{client_id}", None),
    ]:
        probes[("tenants", method, template)] = lambda m=method, t=template, b=body: same_as_absent(m, "tenants", t, b)
    for method, template, body in [
        ("GET", "/v1/projects/{project_id}", None),
        ("PATCH", "/v1/projects/{project_id}", {"name": "Mine now"}),
        ("DELETE", "/v1/projects/{project_id}", None),
    ]:
        probes[("projects", method, template)] = lambda m=method, t=template, b=body: same_as_absent(
            m, "projects", t, b
        )

    @probe("tenants", "GET", "/v1/tenants")
    def list_tenants() -> None:
        r = aerie.call("GET", "tenants", "/v1/tenants", token=b_token)
        assert r.status_code == 403 or a["id"] not in r.text, r.text[:200]

    @probe("tenants", "POST", "/v1/tenants")
    def create_tenant() -> None:
        r = aerie.call(
            "POST", "tenants", "/v1/tenants", token=b_token, json={"slug": f"mole-{uuid.uuid4().hex[:8]}", "name": "x"}
        )
        assert r.status_code == 403, r.text[:200]

    @probe("tenants", "POST", "/v1/oauth/token")
    def token_for_a() -> None:
        def ask(tenant_id: str) -> requests.Response:
            return aerie.call(
                "POST",
                "tenants",
                "/v1/oauth/token",
                data={"grant_type": "client_credentials", "tenant_id": tenant_id},
                headers={"Authorization": basic_auth(b_client["client_id"], b_client["client_secret"])},
            )

        real, absent = ask(a["id"]), ask(absent_ids["tenant_id"])
        if real.status_code == 200:  # a tenant client's tenant_id is ignored at most, never honoured
            claims = json.loads(_b64(real.json()["access_token"].split(".")[1]))
            assert claims.get("tenant_id") == b["id"], claims
        else:
            assert (real.status_code, real.json().get("error")) == (absent.status_code, absent.json().get("error"))

    @probe("projects", "GET", "/v1/projects")
    def list_projects() -> None:
        r = aerie.call("GET", "projects", "/v1/projects", token=b_token)
        assert r.status_code == 200 and a_project["id"] not in r.text

    @probe("projects", "POST", "/v1/projects")
    def create_in_a() -> None:
        body = {"name": "Planted", "tenant_id": a["id"]}
        r = aerie.call("POST", "projects", "/v1/projects", token=b_token, json=body)
        assert r.status_code in (201, 400, 422), r.text[:200]
        if r.status_code == 201:  # the tenant comes from the token alone
            assert r.json()["tenant_id"] == b["id"]

    @probe("projects", "POST", "/v1/projects/batch-update")
    def batch_update() -> None:
        body = {"ids": [a_project["id"], absent_ids["project_id"]], "changes": {"status": "archived"}}
        r = aerie.call("POST", "projects", "/v1/projects/batch-update", token=b_token, json=body)
        assert r.status_code == 200 and r.json()["updated"] == [], r.text[:200]
        assert sorted(r.json()["not_found"]) == sorted(body["ids"])

    @probe("projects", "GET", "/v1/projects/events")
    def events() -> None:
        url = aerie.url("projects") + "/v1/projects/events"
        with aerie.http.get(url, headers={"Authorization": f"Bearer {b_token}"}, stream=True, timeout=30) as stream:
            assert stream.status_code == 200
            aerie.call("POST", "projects", "/v1/projects", token=a_token, json={"name": "A's secret plan"})
            mine = aerie.call("POST", "projects", "/v1/projects", token=b_token, json={"name": "B's own"}).json()
            data = next(
                line for line in stream.iter_lines(chunk_size=1, decode_unicode=True) if line.startswith("data: ")
            )
        event = json.loads(data[len("data: ") :])
        assert event["tenant_id"] == b["id"] and event["data"]["project"]["id"] == mine["id"], event

    documented: set[tuple[str, str, str]] = set()
    for service in ("tenants", "projects"):
        doc = aerie.call("GET", service, "/openapi.json").json()
        for template, operations in doc["paths"].items():
            for method, operation in operations.items():
                if method.upper() not in {"GET", "POST", "PUT", "PATCH", "DELETE"}:
                    continue
                if operation.get("security") == [] and template != "/v1/oauth/token":
                    continue  # public: /health, /ready, /info, /openapi.json, /docs, the JWKS
                documented.add((service, method.upper(), template))
    assert not documented - probes.keys(), f"routes without a cross-tenant probe: {sorted(documented - probes.keys())}"

    for route in sorted(probes):
        probes[route]()

    # A is untouched.
    assert aerie.call("GET", "tenants", f"/v1/tenants/{a['id']}", token=a_token).json() == a
    assert aerie.call("GET", "projects", f"/v1/projects/{a_project['id']}", token=a_token).json() == a_project
    clients = aerie.call("GET", "tenants", f"/v1/tenants/{a['id']}/clients", token=a_token).json()["items"]
    assert {c["client_id"] for c in clients} >= {a_client["client_id"]} and all(c["name"] != "mole" for c in clients)


def _b64(segment: str) -> str:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)).decode()
