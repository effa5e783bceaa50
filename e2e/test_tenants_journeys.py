"""Journeys through the tenants service, as a customer's platform team would make them."""

from __future__ import annotations

import time

import pytest

pytestmark = pytest.mark.tenants


@pytest.mark.smoke
def test_onboarding_a_tenant_with_its_own_client(aerie):
    tenant = aerie.create_tenant(plan="team")
    assert tenant["status"] == "active" and tenant["plan"] == "team"
    client = aerie.create_client(tenant["id"], ["tenants:read", "tenants:write"])
    token = aerie.token(client["client_id"], client["client_secret"])
    r = aerie.call("GET", "tenants", f"/v1/tenants/{tenant['id']}", token=token)
    assert r.status_code == 200 and r.json()["id"] == tenant["id"]
    r = aerie.call(
        "PATCH",
        "tenants",
        f"/v1/tenants/{tenant['id']}",
        token=token,
        json={"name": "Renamed"},
        headers={"If-Match": r.headers["ETag"]},
    )
    assert r.status_code == 200 and r.json()["version"] == 2


def test_suspension_and_reactivation(aerie):
    tenant = aerie.create_tenant()
    client = aerie.create_client(tenant["id"], ["tenants:read", "tenants:write"])
    token = aerie.token(client["client_id"], client["client_secret"])
    path = f"/v1/tenants/{tenant['id']}"
    assert aerie.call("POST", "tenants", f"{path}/suspend", token=aerie.admin_token).json()["status"] == "suspended"
    assert aerie.call("GET", "tenants", path, token=token).status_code == 200
    r = aerie.call("PATCH", "tenants", path, token=token, json={"name": "Nope"})
    assert r.status_code == 403 and r.json()["code"] == "tenant_suspended"
    assert aerie.call("POST", "tenants", f"{path}/reactivate", token=aerie.admin_token).json()["status"] == "active"
    assert aerie.call("PATCH", "tenants", path, token=token, json={"name": "Back"}).status_code == 200


def test_client_revocation_takes_effect_within_a_second(aerie):
    tenant = aerie.create_tenant()
    client = aerie.create_client(tenant["id"], ["tenants:read"])
    token = aerie.token(client["client_id"], client["client_secret"])
    path = f"/v1/tenants/{tenant['id']}"
    assert aerie.call("GET", "tenants", path, token=token).status_code == 200
    r = aerie.call("DELETE", "tenants", f"{path}/clients/{client['client_id']}", token=aerie.admin_token)
    assert r.status_code == 204
    deadline = time.monotonic() + 1.0
    while aerie.call("GET", "tenants", path, token=token).status_code != 401:
        assert time.monotonic() < deadline, "the revoked client's token still works"


def test_offboarding_revokes_everything(aerie):
    tenant = aerie.create_tenant()
    client = aerie.create_client(tenant["id"], ["tenants:read"])
    token = aerie.token(client["client_id"], client["client_secret"])
    assert aerie.call("DELETE", "tenants", f"/v1/tenants/{tenant['id']}", token=aerie.admin_token).status_code == 204
    deadline = time.monotonic() + 1.0  # the contract: revoked everywhere within a second
    while aerie.call("GET", "tenants", f"/v1/tenants/{tenant['id']}", token=token).status_code != 401:
        assert time.monotonic() < deadline, "the deleted tenant's token still works"
    r = aerie.call("GET", "tenants", f"/v1/tenants/{tenant['id']}", token=aerie.admin_token)
    assert r.json()["status"] == "deleted"


def test_cross_tenant_probing_finds_nothing(aerie):
    a, b = aerie.create_tenant(), aerie.create_tenant()
    a_client = aerie.create_client(a["id"], ["tenants:read"])
    b_client = aerie.create_client(b["id"], ["tenants:read", "tenants:write"])
    b_token = aerie.token(b_client["client_id"], b_client["client_secret"])
    for method, path, body in [
        ("GET", f"/v1/tenants/{a['id']}", None),
        ("PATCH", f"/v1/tenants/{a['id']}", {"name": "Hijacked"}),
        ("GET", f"/v1/tenants/{a['id']}/clients", None),
        ("POST", f"/v1/tenants/{a['id']}/clients", {"name": "x", "scopes": ["tenants:read"]}),
        ("DELETE", f"/v1/tenants/{a['id']}/clients/{a_client['client_id']}", None),
    ]:
        r = aerie.call(method, "tenants", path, token=b_token, json=body)
        assert r.status_code == 404 and r.json()["code"] == "not_found", (method, path)
    assert aerie.call("GET", "tenants", f"/v1/tenants/{a['id']}", token=aerie.admin_token).json()["name"] == a["name"]
