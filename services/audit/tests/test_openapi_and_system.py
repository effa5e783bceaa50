"""The audit service's own document and system routes."""

from __future__ import annotations

import pytest


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
