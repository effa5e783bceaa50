"""Journeys through the audit service, as a tenant's own application and its auditors use it.

The services fill the trail by themselves (the onboarding journeys check that); here the
tenant's application appends its own entries with ``audit:write``, retries them safely, finds
them again with filters, and hands an auditor an export that a spreadsheet cannot turn
into a formula and that still recomputes as a hash chain.
"""

from __future__ import annotations

import csv
import io
import uuid

import jwt
import pytest

pytestmark = [pytest.mark.audit, pytest.mark.tenants]


def test_an_application_records_its_own_actions_in_its_trail(aerie):
    tenant, token = aerie.tenant_with_token(["audit:read", "audit:write"])
    entry_id = f"app-{aerie.run_id}-{uuid.uuid4().hex[:8]}"
    body = {
        "id": entry_id,
        "action": "invoice.paid",
        "actor": {"type": "user", "id": "u-42"},
        "target": {"type": "invoice", "id": "inv-1"},
        "ip": "203.0.113.7",
        "user_agent": "billing/1.0",
        # What a malicious user name would put in a cell: it must not run in a spreadsheet.
        "message": '=HYPERLINK("https://evil.example","paid")',
        "metadata": {"amount": 1999, "currency": "EUR", "note": "Grüße"},
    }
    r = aerie.call("POST", "audit", "/v1/audit/events", token=token, json=body)
    assert r.status_code == 201, r.text
    entry, sent_request_id = r.json(), r.headers["X-Request-ID"]
    assert entry["tenant_id"] == tenant["id"] and entry["id"] == entry_id
    assert entry["request_id"] == sent_request_id, "an entry without request_id takes the request's"
    # Recorded as sent; the actor's client_id is the app's own API client, from its token:
    # the app names its user, never which client recorded the entry.
    client_id = jwt.decode(token, options={"verify_signature": False})["client_id"]
    assert {k: entry[k] for k in body} == {**body, "actor": {**body["actor"], "client_id": client_id}}

    # A retry after a lost answer is safe: same entry, nothing recorded twice; a different
    # body under the same id is refused, never silently merged.
    r = aerie.call("POST", "audit", "/v1/audit/events", token=token, json=body)
    assert r.status_code == 200 and r.json() == entry, r.text[:300]
    r = aerie.call("POST", "audit", "/v1/audit/events", token=token, json={**body, "message": "changed"})
    assert r.status_code == 409 and r.json()["code"] == "conflict", r.text[:300]
    r = aerie.call("GET", "audit", f"/v1/audit/events/{entry_id}", token=token)
    assert r.status_code == 200 and r.json() == entry

    # Found again by what an auditor asks for.
    for params in ({"action": "invoice.*"}, {"actor_id": "u-42"}, {"target_type": "invoice", "target_id": "inv-1"}):
        r = aerie.call("GET", "audit", "/v1/audit/events", token=token, params=params)
        assert r.status_code == 200 and [e["id"] for e in r.json()["items"]] == [entry_id], (params, r.text[:300])
    r = aerie.call("GET", "audit", "/v1/audit/events", token=token, params={"action": "project.*"})
    assert r.status_code == 200 and r.json()["items"] == []

    # The CSV export neutralises the formula; the NDJSON export still recomputes.
    r = aerie.call("GET", "audit", "/v1/audit/export", token=token, params={"format": "csv"})
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("text/csv"), r.text[:300]
    rows = list(csv.DictReader(io.StringIO(r.text)))
    (row,) = [row for row in rows if row.get("id") == entry_id]
    assert row["message"] == "'" + body["message"], row
    trail = aerie.audit_trail(token)
    assert [e["id"] for e in trail].count(entry_id) == 1
    assert aerie.first_broken_link(trail) is None, "the trail does not recompute"
    r = aerie.call("GET", "audit", "/v1/audit/verify", token=token)
    assert r.status_code == 200 and r.json()["valid"] is True, r.text[:300]
