"""The audit API over Falcon's TestClient: queries, filters, isolation, appends, export, verify."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

import pytest
from audittest import ISSUER, TEN_A, TEN_B, event, ingest

from aerie.pagination import encode_cursor
from aerie.testing.http import assert_problem
from aerie.testing.keys import make_claims
from aerie.testing.tenants import FakeTenants


def seed(redis_provider):
    """Ten entries for A across the action families, two for B, one on the platform trail."""
    a = [
        event("tenant.created", TEN_A, {"tenant": {"id": TEN_A}}, actor={"type": "platform", "id": "root"}),
        event("client.created", TEN_A, {"client": {"client_id": "cli_A1"}}),
        event("token.issued", TEN_A, {"jti": "jti-1", "client_id": "cli_A1"}, actor={"type": "client", "id": "cli_A1"}),
        *[event("project.created", TEN_A, {"project": {"id": f"prj_{i}"}}) for i in range(5)],
        event("project.deleted", TEN_A, {"project": {"id": "prj_0"}}),
        event("flag.override.set", TEN_A, {"key": "beta"}),
    ]
    for i, e in enumerate(a):
        e["occurred_at"] = f"2026-01-01T00:00:{i:02d}.000Z"
    ingest(redis_provider, a)
    ingest(redis_provider, [event("project.created", TEN_B, {"project": {"id": f"prj_B{i}"}}) for i in range(2)])
    ingest(redis_provider, [event("flag.created", None, {"flag": {"key": "dark"}}, actor={"type": "platform"})])
    return a


def test_newest_first_with_cursor_pagination(api, redis_provider):
    seeded = seed(redis_provider)
    first = api.get("/v1/audit/events", limit=4)
    assert first.status_code == 200
    assert [e["seq"] for e in first.json["items"]] == [10, 9, 8, 7]
    seen = list(first.json["items"])
    cursor = first.json["next_cursor"]
    while cursor:
        page = api.get("/v1/audit/events", limit=4, cursor=cursor).json
        seen += page["items"]
        cursor = page["next_cursor"]
    assert [e["seq"] for e in seen] == list(range(10, 0, -1))
    assert {e["id"] for e in seen} == {e["id"] for e in seeded}
    one = api.get(f"/v1/audit/events/{seen[0]['id']}")
    assert one.status_code == 200 and one.json == seen[0]


@pytest.mark.parametrize(
    ("params", "expected_seqs"),
    [
        ({"action": "project.created"}, [8, 7, 6, 5, 4]),
        ({"action": "project.*"}, [9, 8, 7, 6, 5, 4]),
        ({"action": "token.issued"}, [3]),
        ({"actor_id": "root"}, [1]),
        ({"target_type": "flag"}, [10]),
        ({"target_id": "prj_0"}, [9, 4]),
        ({"target_type": "project", "target_id": "prj_0", "action": "project.deleted"}, [9]),
        ({"since": "2026-01-01T00:00:07Z"}, [10, 9, 8]),
        ({"until": "2026-01-01T00:00:02Z"}, [2, 1]),
        ({"since": "2026-01-01T01:00:05+01:00", "until": "2026-01-01T00:00:06.000Z"}, [6]),
        ({"action": "nothing.matches"}, []),
    ],
)
def test_every_filter(api, redis_provider, params, expected_seqs):
    seed(redis_provider)
    r = api.get("/v1/audit/events", **params)
    assert r.status_code == 200, r.text
    assert [e["seq"] for e in r.json["items"]] == expected_seqs
    assert r.json["next_cursor"] is None


def test_filtered_pages_continue_with_the_cursor(api, redis_provider):
    seed(redis_provider)
    page = api.get("/v1/audit/events", action="project.*", limit=4).json
    assert [e["seq"] for e in page["items"]] == [9, 8, 7, 6]
    rest = api.get("/v1/audit/events", action="project.*", limit=4, cursor=page["next_cursor"]).json
    assert [e["seq"] for e in rest["items"]] == [5, 4] and rest["next_cursor"] is None


def test_tenants_see_only_their_own_trail(api, redis_provider):
    a = seed(redis_provider)
    b_items = api.get("/v1/audit/events", TEN_B).json["items"]
    assert [e["tenant_id"] for e in b_items] == [TEN_B, TEN_B]
    assert api.get(f"/v1/audit/events/{a[0]['id']}", TEN_B).status_code == 404
    assert_problem(api.get("/v1/audit/events", TEN_B, tenant_id=TEN_A), 403, "forbidden")
    assert_problem(api.get("/v1/audit/export", TEN_B, tenant_id=TEN_A), 403, "forbidden")
    assert_problem(api.get("/v1/audit/verify", TEN_B, tenant_id=TEN_A), 403, "forbidden")
    export = api.get("/v1/audit/export", TEN_B).text.splitlines()
    assert [json.loads(line)["tenant_id"] for line in export] == [TEN_B, TEN_B]
    # A cursor of A's trail is foreign to B, however valid it is for A.
    cursor = api.get("/v1/audit/events", limit=2).json["next_cursor"]
    assert_problem(api.get("/v1/audit/events", TEN_B, cursor=cursor), 422, "validation_error")


def test_platform_admin_reads_any_trail_and_the_platform_trail(api, redis_provider, signing_key):
    seed(redis_provider)
    platform = api.get("/v1/audit/events", None).json["items"]
    assert [(e["action"], e["tenant_id"]) for e in platform] == [("flag.created", None)]
    assert len(api.get("/v1/audit/events", None, tenant_id=TEN_A).json["items"]) == 10
    assert api.get("/v1/audit/verify", None, tenant_id=TEN_B).json["entries"] == 2
    # A platform token without platform:admin reads no trail.
    reader = api.headers(None, "audit:read platform:read")
    assert_problem(api.c.simulate_get("/v1/audit/events", headers=reader), 403, "tenant_required")
    wrong_scope = api.headers(TEN_A, "projects:read")
    assert_problem(api.c.simulate_get("/v1/audit/events", headers=wrong_scope), 403, "insufficient_scope")
    assert_problem(api.c.simulate_get("/v1/audit/events"), 401, "unauthorized")


@pytest.mark.parametrize(
    ("path", "params", "field"),
    [
        ("/v1/audit/events", {"limit": "0"}, "limit"),
        ("/v1/audit/events", {"limit": "201"}, "limit"),
        ("/v1/audit/events", {"limit": "ten"}, "limit"),
        ("/v1/audit/events", {"cursor": "%%%not-a-cursor"}, "cursor"),
        ("/v1/audit/events", {"cursor": encode_cursor({"trail": TEN_A, "before": "x"})}, "cursor"),
        ("/v1/audit/events", {"cursor": encode_cursor({"trail": TEN_B, "before": "5"})}, "cursor"),
        ("/v1/audit/events", {"cursor": encode_cursor({"trail": TEN_A, "before": "0"})}, "cursor"),
        ("/v1/audit/events", {"cursor": encode_cursor({"trail": TEN_A, "before": "\u00b2"})}, "cursor"),
        ("/v1/audit/events", {"cursor": encode_cursor({"trail": TEN_A, "before": 5})}, "cursor"),
        ("/v1/audit/events", {"since": "yesterday"}, "since"),
        ("/v1/audit/events", {"until": "2026-01-01T00:00:00"}, "until"),  # no time zone
        ("/v1/audit/events", {"since": "2026-02-01T00:00:00Z", "until": "2026-01-01T00:00:00Z"}, "until"),
        ("/v1/audit/events", {"action": "Project Created"}, "action"),
        ("/v1/audit/events", {"action": ""}, "action"),
        ("/v1/audit/events", {"target_type": "A;drop"}, "target_type"),
        ("/v1/audit/events", {"actor_id": "x" * 201}, "actor_id"),
        ("/v1/audit/events", {"tenant_id": "../etc"}, "tenant_id"),
        ("/v1/audit/events", {"colour": "red"}, "colour"),
        ("/v1/audit/export", {"format": "xml"}, "format"),
        ("/v1/audit/export", {"since": "2026-13-01T00:00:00Z"}, "since"),
        ("/v1/audit/verify", {"tenant_id": "a b"}, "tenant_id"),
    ],
)
def test_bad_query_parameters_are_422_naming_the_field(api, redis_provider, path, params, field):
    seed(redis_provider)
    body = assert_problem(api.get(path, **params), 422, "validation_error")
    assert field in [e["field"] for e in body["errors"]], body


def good_append(**overrides):
    body = {
        "id": "ext-0001",
        "action": "invoice.paid",
        "actor": {"type": "user", "id": "u_1"},
        "target": {"type": "invoice", "id": "inv_9"},
        "occurred_at": "2026-03-01T10:00:00+02:00",
        "ip": "2001:db8::1",
        "user_agent": "billing/1.0",
        "message": "Invoice paid",
        "metadata": {"amount": 12.5, "currency": "EUR"},
    }
    body.update(overrides)
    return body


def test_direct_append_is_recorded_chained_and_idempotent(api, redis_provider):
    seed(redis_provider)
    r = api.append(good_append())
    assert r.status_code == 201, r.text
    entry = r.json
    assert entry["seq"] == 11 and entry["tenant_id"] == TEN_A and entry["occurred_at"] == "2026-03-01T08:00:00.000Z"
    assert entry["actor"] == {"type": "user", "id": "u_1", "client_id": "cli_test"}  # the appending client
    assert entry["request_id"] == r.headers["X-Request-ID"]
    assert r.headers["Location"] == "/v1/audit/events/ext-0001"
    again = api.append(good_append())
    assert again.status_code == 200 and again.json == entry
    assert_problem(api.append(good_append(message="Invoice refunded")), 409, "conflict")
    verified = api.get("/v1/audit/verify").json
    assert verified["valid"] and verified["head"] == {"seq": 11, "hash": entry["hash"]}


def test_the_appending_client_is_recorded_from_its_token_and_cannot_be_claimed(api):
    token = api.key.sign(make_claims(ISSUER, tenant_id=TEN_A, scope="audit:write", client_id="cli_other", sub="x"))
    other = {"Authorization": f"Bearer {token}"}
    claimed = good_append(actor={"type": "user", "id": "u_1", "client_id": "cli_other"})
    body = assert_problem(api.append(claimed), 422, "validation_error")
    assert [e["field"] for e in body["errors"]] == ["actor.client_id"]
    own = good_append(actor={"type": "user", "id": "u_1", "client_id": "cli_test"})
    assert api.append(own).json["actor"]["client_id"] == "cli_test"
    # The same id from another client is another entry's content: a conflict, not a replay.
    replay = api.c.simulate_post("/v1/audit/events", json=good_append(), headers=other)
    assert_problem(replay, 409, "conflict")


def test_platform_clients_append_to_the_tenant_they_name(api, redis_provider):
    r = api.append(good_append(tenant_id=TEN_B), tenant_id=None)
    assert r.status_code == 201 and r.json["tenant_id"] == TEN_B
    r = api.append(good_append(id="platform-1"), tenant_id=None)
    assert r.status_code == 201 and r.json["tenant_id"] is None
    assert_problem(api.append(good_append(tenant_id=TEN_B)), 403, "forbidden")
    reader_only = api.headers(TEN_A, "audit:read")
    assert_problem(
        api.c.simulate_post("/v1/audit/events", json=good_append(), headers=reader_only), 403, "insufficient_scope"
    )


@pytest.mark.parametrize("status", ["suspended", "deleted"])
def test_a_suspended_tenant_cannot_append_but_platform_clients_still_record_for_it(api, tenants, status):
    tenants.set(TEN_A, status=status)
    assert_problem(api.append(good_append()), 403, "tenant_suspended")
    r = api.append(good_append(tenant_id=TEN_A), tenant_id=None)
    assert r.status_code == 201 and r.json["tenant_id"] == TEN_A
    assert api.get("/v1/audit/verify").json["valid"]  # reads go on


def test_an_append_is_503_when_the_tenant_status_is_unknown(api, tenants):
    tenants.unreachable(TEN_A)
    r = api.append(good_append())
    assert_problem(r, 503, "unavailable")
    assert r.headers["Retry-After"]


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"id": "has space"}, "id"),
        ({"id": None}, "id"),
        ({"action": "InvoicePaid"}, "action"),
        ({"action": "invoice"}, "action"),
        ({"action": "a.b.c.d.e.f"}, "action"),
        ({"actor": {"id": "u_1"}}, "actor.type"),
        ({"actor": {"type": "user", "id": "u", "role": "admin"}}, "actor.role"),
        ({"actor": "u_1"}, "actor"),
        ({"target": {"type": "Invoice!", "id": "x"}}, "target.type"),
        ({"target": None}, "target"),
        ({"occurred_at": "last tuesday"}, "occurred_at"),
        ({"ip": "999.1.1.1"}, "ip"),
        ({"request_id": "has space"}, "request_id"),
        ({"message": "x" * 1001}, "message"),
        ({"metadata": {"blob": "x" * 16_400}}, "metadata"),
        ({"metadata": [1, 2]}, "metadata"),
        ({"metadata": {"n": 2**70}}, "metadata.n"),
        ({"metadata": {"deep": json.loads("[" * 33 + "]" * 33)}}, "metadata"),  # 33 levels below metadata
        ({"tenant_id": "no/slash"}, "tenant_id"),
        ({"extra": 1}, "extra"),
    ],
)
def test_bad_appends_are_422_naming_the_field(api, overrides, field):
    body = assert_problem(api.append(good_append(**overrides)), 422, "validation_error")
    assert field in [e["field"] for e in body["errors"]], body


def test_metadata_as_deep_as_allowed_is_recorded_and_verifies(api, redis_provider):
    seed(redis_provider)
    deepest = {"deep": json.loads("[" * 32 + "]" * 32)}
    r = api.append(good_append(metadata=deepest))
    assert r.status_code == 201, r.text
    assert r.json["metadata"] == deepest
    assert api.get("/v1/audit/verify").json["valid"] is True


def test_append_needs_json(api):
    r = api.c.simulate_post("/v1/audit/events", body="id=1", headers={**api.headers(), "Content-Type": "text/plain"})
    assert_problem(r, 415, "unsupported_media_type")
    r = api.c.simulate_post("/v1/audit/events", body="{", headers={**api.headers(), "Content-Type": "application/json"})
    assert_problem(r, 400, "bad_request")


def test_metadata_that_would_not_reserialise_identically_is_refused(api):
    def append(value: str) -> Any:
        body = json.dumps(good_append(metadata={"a": ["ok", "VALUE"]})).replace('"VALUE"', value)
        headers = {**api.headers(), "Content-Type": "application/json"}
        return api.c.simulate_post("/v1/audit/events", body=body, headers=headers)

    assert_problem(append("NaN"), 400, "bad_request")  # not JSON
    for value in ("1e400", str(2**63), '"\\ud800"'):
        body = assert_problem(append(value), 422, "validation_error")
        assert [e["field"] for e in body["errors"]] == ["metadata.a.1"], value


def test_export_ndjson_and_csv_with_filters_and_neutralised_cells(api, redis_provider):
    seed(redis_provider)
    api.append(good_append(id="evil-1", message='=HYPERLINK("http://x")', user_agent="@SUM(A1)"))
    api.append(good_append(id="evil-2", message="+1", user_agent="-2", actor={"type": "user", "id": "=cmd"}))
    lines = api.get("/v1/audit/export").text.splitlines()
    assert [json.loads(line)["seq"] for line in lines] == list(range(1, 13))
    r = api.get("/v1/audit/export", format="csv", action="invoice.paid")
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("text/csv")
    assert "attachment" in r.headers["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert [row["id"] for row in rows] == ["evil-1", "evil-2"]
    assert rows[0]["message"] == '\'=HYPERLINK("http://x")' and rows[0]["user_agent"] == "'@SUM(A1)"
    assert rows[1]["message"] == "'+1" and rows[1]["user_agent"] == "'-2" and rows[1]["actor_id"] == "'=cmd"
    assert json.loads(rows[0]["metadata"]) == {"amount": 12.5, "currency": "EUR"}
    filtered = api.get("/v1/audit/export", action="project.deleted").text.splitlines()
    assert [json.loads(line)["action"] for line in filtered] == ["project.deleted"]
    assert api.get("/v1/audit/export", TEN_B, action="tenant.created").text == ""


def test_verify_reports_tampering(api, redis_provider):
    seed(redis_provider)
    assert api.get("/v1/audit/verify").json["valid"] is True
    r = redis_provider.client
    entry = json.loads(r.hget("audit:{ten_A}:entries", 6))
    entry["actor"]["id"] = "someone-else"
    r.hset("audit:{ten_A}:entries", 6, json.dumps(entry))
    result = api.get("/v1/audit/verify").json
    assert result["valid"] is False and result["first_invalid_seq"] == 6
    assert api.get("/v1/audit/verify", TEN_B).json["valid"] is True


def test_empty_trail(api):
    assert api.get("/v1/audit/events").json == {"items": [], "next_cursor": None}
    assert api.get("/v1/audit/verify").json == {
        "valid": True,
        "entries": 0,
        "head": {"seq": 0, "hash": "0" * 64},
        "first_invalid_seq": None,
        "checkpoint": None,
    }
    assert api.get("/v1/audit/export", format="csv").text.startswith("seq,id,tenant_id")
    assert api.get("/v1/audit/events/evt_nope").status_code == 404


def test_redis_away_is_503_not_500_nor_a_truncated_export(signing_key):
    from audittest import ISSUER, Api
    from falcon import testing

    from aerie.app import Infrastructure
    from aerie.auth.tokens import StaticKeySource
    from aerie.config import Settings
    from aerie.local.redis_server import free_port
    from audit.app import build

    settings = Settings.from_env(
        "audit",
        {
            "REDIS_URL": f"redis://127.0.0.1:{free_port()}/0",
            "AERIE_ISSUER": ISSUER,
            "AERIE_REDIS_CONNECT_TIMEOUT": "0.2",
        },
    )
    infra = Infrastructure.from_settings(settings, keys=StaticKeySource({"keys": [signing_key.public_jwk()]}))
    svc = build(settings, infra=infra, tenants=FakeTenants())
    try:
        api = Api(testing.TestClient(svc.app), signing_key)
        for path in ("/v1/audit/events", "/v1/audit/export", "/v1/audit/verify"):
            r = api.get(path)
            assert_problem(r, 503, "unavailable")
            assert r.headers["Retry-After"]
        assert_problem(api.append(good_append()), 503, "unavailable")
    finally:
        svc.close()
