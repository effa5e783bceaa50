"""The audit service's own document and system routes."""

from __future__ import annotations

import pytest
from falcon import testing


def test_openapi_document_is_valid_and_lists_every_audit_route(client):
    document = client.simulate_get("/openapi.json").json
    pytest.importorskip("openapi_spec_validator").validate(document)
    paths = document["paths"]
    assert {"/v1/audit/events", "/v1/audit/events/{entry_id}", "/v1/audit/export", "/v1/audit/verify"} <= set(paths)
    listed = {p["name"] for p in paths["/v1/audit/events"]["get"]["parameters"]}
    assert {"action", "actor_id", "target_type", "target_id", "since", "until", "limit", "cursor"} <= listed
    export = {p["name"] for p in paths["/v1/audit/export"]["get"]["parameters"]}
    assert "format" in export


def test_ready_and_info(client):
    assert client.simulate_get("/ready").status_code == 200
    assert client.simulate_get("/info").json["name"] == "audit"


def test_ready_checks_the_tenants_service_audit_asks(redis_url, signing_key):
    from aerie.app import Infrastructure
    from aerie.auth.tokens import StaticKeySource
    from aerie.config import Settings
    from aerie.local.redis_server import free_port
    from aerie.testing.tenants import FakeTenants
    from audit.app import build

    gone = f"http://127.0.0.1:{free_port()}"
    settings = Settings.from_env("audit", {"REDIS_URL": redis_url, "AERIE_TENANTS_URL": gone})
    infra = Infrastructure.from_settings(settings, keys=StaticKeySource({"keys": [signing_key.public_jwk()]}))
    svc = build(settings, infra=infra, tenants=FakeTenants())
    try:
        r = testing.TestClient(svc.app).simulate_get("/ready")
        assert r.status_code == 503 and r.json["failed"] == ["tenants"]
    finally:
        svc.close()
