"""The audit pages: filters, cursor paging, one entry in full, the chain verified, exports streamed."""

from __future__ import annotations

import pytest
from console.api import ServiceProblem
from consoletest import TEN_A, TEN_B, signed_in, token

AUDITOR_OF_A = {"tenant_id": TEN_A, "scope": "audit:read", "role": "auditor"}
ENTRY = {
    "id": "evt_42",
    "seq": 42,
    "tenant_id": TEN_A,
    "occurred_at": "2026-12-04T19:30:00Z",
    "recorded_at": "2026-12-04T19:30:01Z",
    "action": "flag.updated",
    "actor": {"type": "user", "id": "usr_7", "client_id": "svc-console"},
    "target": {"type": "flag", "id": "checkout"},
    "ip": "10.1.2.3",
    "user_agent": "Mozilla/5.0 (journey)",
    "request_id": "req-abc",
    "message": "Rollout to 25%",
    "metadata": {"version": 4, "changes": ["rollout"]},
    "source": "event",
    "prev_hash": "a" * 64,
    "hash": "b" * 64,
    "schedule_id": "sch_9",
}
EVENTS = ("GET", "audit", "/v1/audit/events")


def test_the_filters_are_sent_in_the_audit_services_terms(client, fake_http, fake_api):
    signed_in(client, fake_http, token(**AUDITOR_OF_A))
    fake_api.calls.clear()
    query = {
        "action": "flag.*",
        "actor_id": "usr_7",
        "target_type": "flag",
        "target_id": "checkout",
        "since": "2026-12-01T08:00",
        "until": "2026-12-04T19:30:15",
    }
    r = client.simulate_get("/audit", params=query)
    assert r.status_code == 200
    assert fake_api.calls == [
        (
            *EVENTS,
            {
                "limit": 50,
                "action": "flag.*",
                "actor_id": "usr_7",
                "target_type": "flag",
                "target_id": "checkout",
                "since": "2026-12-01T08:00:00Z",
                "until": "2026-12-04T19:30:15Z",
            },
            None,
        )
    ]
    # The form shows them again as typed, each with its label.
    for field, value in (("audit-actor", "usr_7"), ("audit-since", "2026-12-01T08:00")):
        assert f'for="{field}"' in r.text and f'id="{field}"' in r.text and f'value="{value}"' in r.text


@pytest.mark.parametrize(
    ("query", "said"),
    [
        ({"action": "Flag Updated"}, "Action:"),
        ({"target_type": "Not A Kind"}, "Target type:"),
        ({"since": "yesterday"}, "Since:"),
        ({"until": "2026-13-01T00:00"}, "Until:"),
        ({"since": "2026-12-04T10:00", "until": "2026-12-04T09:00"}, "after Since"),
    ],
)
def test_a_bad_filter_is_refused_on_the_page_before_any_service_is_asked(client, fake_http, fake_api, query, said):
    signed_in(client, fake_http, token(**AUDITOR_OF_A))
    fake_api.calls.clear()
    r = client.simulate_get("/audit", params=query)
    assert r.status_code == 422 and said in r.text and 'role="alert"' in r.text
    assert fake_api.calls == []


def test_older_entries_are_paged_by_the_services_cursor_keeping_the_filters(client, fake_http, fake_api):
    signed_in(client, fake_http, token())
    fake_api.answers[EVENTS] = {"items": [ENTRY], "next_cursor": "cur-2"}
    first = client.simulate_get("/audit", params={"tenant_id": TEN_A, "action": "flag.updated"})
    assert 'id="older-page"' in first.text and 'id="newest-page"' not in first.text
    older = f'href="/audit?tenant_id={TEN_A}&amp;action=flag.updated&amp;cursor=cur-2"'
    assert older in first.text
    second = client.simulate_get("/audit", params={"tenant_id": TEN_A, "action": "flag.updated", "cursor": "cur-2"})
    assert fake_api.calls[-1][3] == {"limit": 50, "tenant_id": TEN_A, "action": "flag.updated", "cursor": "cur-2"}
    assert 'id="newest-page"' in second.text
    assert f'href="/audit?tenant_id={TEN_A}&amp;action=flag.updated" id="newest-page"' in second.text


def test_the_last_page_offers_no_older_one(client, fake_http, fake_api):
    signed_in(client, fake_http, token(**AUDITOR_OF_A))
    fake_api.answers[EVENTS] = {"items": [ENTRY], "next_cursor": None}
    assert 'id="older-page"' not in client.simulate_get("/audit").text


def test_an_entry_links_to_its_page_which_shows_every_field(client, fake_http, fake_api):
    signed_in(client, fake_http, token(**AUDITOR_OF_A))
    fake_api.answers[EVENTS] = {"items": [ENTRY], "next_cursor": None}
    assert 'href="/audit/evt_42"' in client.simulate_get("/audit").text
    fake_api.answers[("GET", "audit", "/v1/audit/events/evt_42")] = ENTRY
    r = client.simulate_get("/audit/evt_42")
    assert r.status_code == 200
    assert fake_api.calls[-1][:4] == ("GET", "audit", "/v1/audit/events/evt_42", None)
    for shown in (
        "evt_42",
        "flag.updated",
        "usr_7",
        "svc-console",
        "checkout",
        "10.1.2.3",
        "Mozilla/5.0 (journey)",
        "req-abc",
        "Rollout to 25%",
        '"changes": [',
        "a" * 64,
        "b" * 64,
        "schedule_id",
        "sch_9",
        'datetime="2026-12-04T19:30:01Z"',
    ):
        assert shown in r.text, shown


def test_a_platform_admin_opens_a_tenants_entry_by_naming_the_tenant(client, fake_http, fake_api):
    signed_in(client, fake_http, token())
    fake_api.answers[("GET", "audit", "/v1/audit/events/evt_42")] = ENTRY
    r = client.simulate_get("/audit/evt_42", params={"tenant_id": TEN_B})
    assert r.status_code == 200 and fake_api.calls[-1][3] == {"tenant_id": TEN_B}
    assert f'href="/audit?tenant_id={TEN_B}" id="back-to-trail"' in r.text


def test_an_entry_that_is_not_there_is_the_services_404(client, fake_http, fake_api):
    signed_in(client, fake_http, token(**AUDITOR_OF_A))
    fake_api.answers[("GET", "audit", "/v1/audit/events/evt_x")] = ServiceProblem(404, "Not found", "No.", "r-404")
    r = client.simulate_get("/audit/evt_x")
    assert r.status_code == 404 and "r-404" in r.text


def test_the_chain_verified_says_so_plainly(client, fake_http, fake_api):
    signed_in(client, fake_http, token(**AUDITOR_OF_A))
    verify = ("GET", "audit", "/v1/audit/verify")
    fake_api.answers[verify] = {"valid": True, "entries": 10000, "head": {"seq": 10000, "hash": "c" * 64}}
    ok = client.simulate_get("/audit", params={"verify": "1"})
    assert "The chain is intact: 10,000 entries verified, up to #10000." in ok.text
    fake_api.answers[verify] = {"valid": False, "entries": 10000, "first_invalid_seq": 17, "reason": "hash mismatch"}
    broken = client.simulate_get("/audit", params={"verify": "1"})
    assert "The chain is BROKEN at entry #17" in broken.text and "hash mismatch" in broken.text
    assert 'role="alert" id="verify-result"' in broken.text


@pytest.mark.parametrize("fmt", ["ndjson", "csv"])
def test_an_export_is_streamed_through_the_console_with_the_filters(client, fake_http, fake_api, fmt):
    signed_in(client, fake_http, token(**AUDITOR_OF_A))
    fake_api.answers[("STREAM", "audit", "/v1/audit/export")] = b'{"seq":1}\n{"seq":2}\n'
    r = client.simulate_get("/audit/export", params={"format": fmt, "action": "flag.updated", "since": "2026-12-01"})
    assert r.status_code == 200 and r.content == b'{"seq":1}\n{"seq":2}\n'
    assert r.headers["Content-Disposition"].startswith("attachment")
    assert fake_api.calls[-1] == (
        "STREAM",
        "audit",
        "/v1/audit/export",
        {"format": fmt, "action": "flag.updated", "since": "2026-12-01T00:00:00Z"},
        None,
    )


def test_the_export_links_carry_the_filters_and_never_the_token(client, fake_http, fake_api):
    person = token(**AUDITOR_OF_A)
    signed_in(client, fake_http, person)
    page = client.simulate_get("/audit", params={"action": "flag.updated", "until": "2026-12-04T10:00"}).text
    assert 'href="/audit/export?action=flag.updated&amp;until=2026-12-04T10%3A00%3A00Z&amp;format=csv"' in page
    assert 'id="export-ndjson"' in page
    assert person not in page and "access_token" not in page


def test_an_export_the_service_refuses_is_its_problem_page(client, fake_http, fake_api):
    signed_in(client, fake_http, token(**AUDITOR_OF_A))
    fake_api.answers[("STREAM", "audit", "/v1/audit/export")] = ServiceProblem(403, "Forbidden", "Not yours.", "r-1")
    r = client.simulate_get("/audit/export", params={"format": "csv"})
    assert r.status_code == 403 and "Not yours." in r.text and "r-1" in r.text


def test_an_unknown_export_format_asks_no_service(client, fake_http, fake_api):
    signed_in(client, fake_http, token(**AUDITOR_OF_A))
    fake_api.calls.clear()
    assert client.simulate_get("/audit/export", params={"format": "xlsx"}).status_code == 400
    assert fake_api.calls == []


@pytest.mark.parametrize("path", ["/audit", "/audit/evt_42", "/audit/export"])
@pytest.mark.parametrize(
    "claims",
    [
        {"tenant_id": TEN_A, "scope": "flags:read projects:read", "role": "viewer"},
        {"scope": "platform:read", "role": "platform-viewer"},
    ],
)
def test_a_role_without_audit_read_is_refused_before_any_service_is_asked(client, fake_http, fake_api, path, claims):
    signed_in(client, fake_http, token(**claims))
    fake_api.calls.clear()
    r = client.simulate_get(path)
    assert r.status_code == 403 and "Your role does not show the audit trail." in r.text
    assert fake_api.calls == []


def test_a_tenant_person_naming_their_own_tenant_reads_it_by_the_token(client, fake_http, fake_api):
    signed_in(client, fake_http, token(**AUDITOR_OF_A))
    client.simulate_get("/audit", params={"tenant_id": TEN_A})
    assert fake_api.calls[-1][3] == {"limit": 50}
