"""The tenant lifecycle and audit pages in German: their text, notices and refusals from the catalog."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

from consoletest import TEN_A, TEN_B, signed_in, token

FORM = {"Content-Type": "application/x-www-form-urlencoded"}
GERMAN = {"Accept-Language": "de-DE,de;q=0.9,en;q=0.5"}
TENANT_B = {"id": TEN_B, "slug": "beta", "name": "Beta", "status": "active", "plan": "team", "version": 3}
ENTRY = {
    "id": "evt_1",
    "seq": 1,
    "occurred_at": "2026-12-04T19:30:00Z",
    "recorded_at": "2026-12-04T19:30:01Z",
    "action": "flag.updated",
    "actor": {"type": "user", "id": "usr_7"},
    "target": None,
    "metadata": {},
    "prev_hash": "0" * 64,
    "hash": "1" * 64,
}


def test_the_tenant_pages_are_german(client, fake_http, fake_api):
    csrf = signed_in(client, fake_http, token())
    fake_api.answers[("GET", "tenants", "/v1/tenants")] = {"items": [TENANT_B], "next_cursor": "c2"}
    fake_api.answers[("GET", "tenants", f"/v1/tenants/{TEN_B}")] = TENANT_B
    listed = client.simulate_get("/tenants", headers=GERMAN).text
    for german in ("Die Tenants der Plattform", "Jeder Status", "Nächste Seite", "Tenant anlegen", ">Tarif<"):
        assert german in listed, german
    page = client.simulate_get(f"/tenants/{TEN_B}", headers=GERMAN).text
    assert ">Sperren<" in page and "Lebenszyklus" in page
    confirm = client.simulate_post(f"/tenants/{TEN_B}/delete", body=f"csrf={csrf}", headers={**FORM, **GERMAN}).text
    assert "Geben Sie zur Bestätigung den Slug des Tenants ein: <code>beta</code>" in confirm
    wrong = client.simulate_post(
        f"/tenants/{TEN_B}/delete",
        body=f"confirm=yes&slug=beta&confirm_slug=bet&csrf={csrf}",
        headers={**FORM, **GERMAN},
    )
    assert wrong.status_code == 422 and "es wurde nichts gelöscht" in wrong.text
    fake_api.answers[("POST", "tenants", f"/v1/tenants/{TEN_B}/suspend")] = TENANT_B
    done = client.simulate_post(f"/tenants/{TEN_B}/suspend", body=f"csrf={csrf}", headers={**FORM, **GERMAN})
    notice = parse_qs(urlsplit(done.headers["Location"]).query)["notice"][0]
    assert notice == "Tenant Beta gesperrt: Schreibzugriffe werden abgelehnt, Lesezugriffe funktionieren weiter."


def test_the_audit_pages_are_german(client, fake_http, fake_api):
    signed_in(client, fake_http, token(TEN_A, scope="audit:read", role="auditor"))
    fake_api.answers[("GET", "audit", "/v1/audit/events")] = {"items": [ENTRY], "next_cursor": "c2"}
    fake_api.answers[("GET", "audit", "/v1/audit/events/evt_1")] = ENTRY
    trail = client.simulate_get("/audit", headers=GERMAN).text
    for german in ("Akteur-ID", "Von (UTC, einschließlich)", "Ältere Einträge", 'aria-label="Eintrag #1"'):
        assert german in trail, german
    entry = client.simulate_get("/audit/evt_1", headers=GERMAN).text
    assert "Audit-Eintrag #1: flag.updated" in entry and "Vorheriger Hash" in entry and ">keine<" in entry
    refused = client.simulate_get("/audit", params={"since": "gestern"}, headers=GERMAN)
    assert refused.status_code == 422 and "Von: ein Datum mit Uhrzeit wie 2026-12-04T19:30 (UTC)." in refused.text
