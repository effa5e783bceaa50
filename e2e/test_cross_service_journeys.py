"""Journeys that cross services: what one service decides must hold in the others.

A suspension, a revoked client and a tenant boundary are decided by tenants and enforced by
every service; these journeys check the effect where the customer meets it.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests

pytestmark = [pytest.mark.tenants, pytest.mark.projects]

ALL_SCOPES = ["tenants:read", "tenants:write", "projects:read", "projects:write", "members:read", "members:write"]
#: The contract: "Writes of a suspended tenant get 403"; it reaches projects by pub/sub.
PROPAGATION_S = 2.0


def _problem_code(r: requests.Response) -> str | None:
    try:
        body = r.json()
    except ValueError:
        return None
    return body.get("code") if isinstance(body, dict) else None


@pytest.mark.flags
def test_suspension_and_reactivation_across_services(aerie):
    tenant, token = aerie.tenant_with_token([*ALL_SCOPES, "flags:read", "flags:write"])
    project = aerie.call("POST", "projects", "/v1/projects", token=token, json={"name": "Before"}).json()
    key = aerie.create_flag("suspension", default=False, allow_overrides="tenant")["key"]
    override = f"/v1/flags/{key}/overrides/tenant"
    path = f"/v1/projects/{project['id']}"
    r = aerie.call("POST", "tenants", f"/v1/tenants/{tenant['id']}/suspend", token=aerie.admin_token)
    assert r.status_code == 200 and r.json()["status"] == "suspended"

    # A write that lands before the suspension reached projects is accepted (that is the
    # propagation window the bound allows); those projects exist from then on.
    accepted_during: list[str] = []

    def writes_refused() -> bool:
        r = aerie.call("POST", "projects", "/v1/projects", token=token, json={"name": "During"})
        if r.status_code == 201:
            accepted_during.append(r.json()["id"])
        return r.status_code == 403 and _problem_code(r) == "tenant_suspended"

    aerie.eventually(writes_refused, PROPAGATION_S, "projects refusing the suspended tenant's writes")
    for method, body in (("PATCH", {"name": "Nope"}), ("DELETE", None)):
        r = aerie.call(method, "projects", path, token=token, json=body)
        assert r.status_code == 403 and _problem_code(r) == "tenant_suspended", (method, r.text)
    r = aerie.call("PATCH", "tenants", f"/v1/tenants/{tenant['id']}", token=token, json={"name": "Nope"})
    assert r.status_code == 403 and _problem_code(r) == "tenant_suspended"

    def overrides_refused() -> bool:
        r = aerie.call("PUT", "flags", override, token=token, json={"value": True})
        return r.status_code == 403 and _problem_code(r) == "tenant_suspended"

    aerie.eventually(overrides_refused, PROPAGATION_S, "flags refusing the suspended tenant's overrides")
    r = aerie.call("POST", "flags", "/v1/evaluate", token=token, json={"context": {}, "keys": [key]})
    assert r.status_code == 200 and r.json()["flags"][key]["reason"] in ("DEFAULT", "TARGETING_MATCH"), r.text
    # Reads still work, and nothing changed.
    assert aerie.call("GET", "projects", path, token=token).json() == project
    listed = aerie.call("GET", "projects", "/v1/projects", token=token).json()["items"]
    assert sorted(p["id"] for p in listed) == sorted([project["id"], *accepted_during])
    assert aerie.call("GET", "tenants", f"/v1/tenants/{tenant['id']}", token=token).json()["status"] == "suspended"

    r = aerie.call("POST", "tenants", f"/v1/tenants/{tenant['id']}/reactivate", token=aerie.admin_token)
    assert r.status_code == 200 and r.json()["status"] == "active"

    def writes_accepted() -> bool:
        return aerie.call("POST", "projects", "/v1/projects", token=token, json={"name": "After"}).status_code == 201

    aerie.eventually(writes_accepted, PROPAGATION_S, "projects accepting the reactivated tenant's writes")
    aerie.eventually(
        lambda: aerie.call("PUT", "flags", override, token=token, json={"value": True}).status_code == 200,
        PROPAGATION_S,
        "flags accepting the reactivated tenant's overrides",
    )
    r = aerie.call("PATCH", "projects", path, token=token, json={"name": "Renamed"})
    assert r.status_code == 200 and r.json()["name"] == "Renamed"


@pytest.mark.smoke
@pytest.mark.flags
@pytest.mark.audit
def test_client_revocation_takes_effect_everywhere(aerie):
    tenant, _ = aerie.tenant_with_token(["tenants:read"])
    client = aerie.create_client(tenant["id"], ["tenants:read", "projects:read", "flags:read", "audit:read"])
    token = aerie.token(client["client_id"], client["client_secret"])
    checks = [
        ("tenants", f"/v1/tenants/{tenant['id']}"),
        ("projects", "/v1/projects"),
        ("flags", "/v1/flags/snapshot"),
        ("audit", "/v1/audit/verify"),
    ]
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
        auth=(client["client_id"], client["client_secret"]),
    )
    assert r.status_code == 401 and r.json()["error"] == "invalid_client"


def _refused(response: Any, status: int) -> None:
    assert response.status_code == status, f"{response.request.method} {response.url}: {response.status_code}"


def _me_is_b(aerie: Any, service: str, b_token: str, b_id: str) -> None:
    """``/v1/me`` answers the caller about itself alone: B's token names B."""
    r = aerie.call("GET", service, "/v1/me", token=b_token)
    assert r.status_code == 200 and r.json()["tenant_id"] == b_id, r.text[:200]


def _absent(real: str) -> str:
    """An id shaped like ``real`` that names nothing (ids are ULIDs behind a prefix)."""
    return real[:-6] + "ZZZZZZ"


def _first_data(stream: requests.Response, wanted: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    """The first SSE ``data:`` event of ``stream`` that ``wanted`` picks (read unbuffered: frames are small)."""
    for line in stream.iter_lines(chunk_size=1, decode_unicode=True):
        if line.startswith("data: "):
            event = json.loads(line[len("data: ") :])
            if wanted(event):
                return event
    raise AssertionError("the stream ended before the event came")


class Probes:
    """Tenant B's probes of tenant A's things, one per documented route of some services.

    The default probe asks for A's resource and for an id that does not exist, and wants
    the same answer (status and code): B learns nothing, not even that A's thing exists.
    Routes where that does not fit (lists, creates, streams, the caller's own overrides)
    get a probe of their own with :meth:`route`. :meth:`run` first reads the services'
    OpenAPI documents, so a route added later without a probe fails the journey.
    """

    def __init__(self, aerie: Any, b_token: str, a_ids: dict[str, str], absent_ids: dict[str, str]) -> None:
        self.aerie = aerie
        self.b_token = b_token
        self.a_ids = a_ids
        self.absent_ids = absent_ids
        self.checks: dict[tuple[str, str, str], Callable[[], None]] = {}

    def same_as_absent(self, method: str, service: str, template: str, body: Any = None) -> None:
        real = self.aerie.call(method, service, template.format(**self.a_ids), token=self.b_token, json=body)
        absent = self.aerie.call(method, service, template.format(**self.absent_ids), token=self.b_token, json=body)
        assert real.status_code >= 400, f"{method} {template} on A's resource: {real.status_code} {real.text[:200]}"
        assert (real.status_code, _problem_code(real)) == (absent.status_code, _problem_code(absent)), (
            f"{method} {template} tells A's resource from a missing one: {real.status_code} vs {absent.status_code}"
        )

    def absent_alike(self, service: str, routes: list[tuple[str, str, Any]]) -> None:
        """Probe each ``(method, template, body)`` of ``service`` with :meth:`same_as_absent`."""
        for method, template, body in routes:
            self.checks[(service, method, template)] = lambda m=method, t=template, b=body: self.same_as_absent(
                m, service, t, b
            )

    def route(self, service: str, method: str, template: str) -> Callable[[Callable[[], None]], Callable[[], None]]:
        def register(fn: Callable[[], None]) -> Callable[[], None]:
            self.checks[(service, method, template)] = fn
            return fn

        return register

    def run(self, services: tuple[str, ...]) -> None:
        documented: set[tuple[str, str, str]] = set()
        for service in services:
            doc = self.aerie.call("GET", service, "/openapi.json").json()
            for template, operations in doc["paths"].items():
                for method, operation in operations.items():
                    if method.upper() not in {"GET", "POST", "PUT", "PATCH", "DELETE"}:
                        continue
                    if operation.get("security") == [] and template != "/v1/oauth/token":
                        continue  # public: /health, /ready, /info, /openapi.json, /docs, the JWKS
                    documented.add((service, method.upper(), template))
        missing = documented - self.checks.keys()
        assert not missing, f"routes without a cross-tenant probe: {sorted(missing)}"
        for route in sorted(self.checks):
            self.checks[route]()


def test_cross_tenant_probing_of_every_route(aerie):
    """Tenant B, holding every tenant scope, tries each documented route of tenants and projects
    on tenant A's things; A is unchanged after."""
    a, a_token = aerie.tenant_with_token(ALL_SCOPES)
    a_client = aerie.create_client(a["id"], ["tenants:read"])
    a_project = aerie.call("POST", "projects", "/v1/projects", token=a_token, json={"name": "Crown Jewels"}).json()
    b, b_token = aerie.tenant_with_token(ALL_SCOPES)
    b_client = aerie.create_client(b["id"], ALL_SCOPES)
    invited = {"email": f"jewel-keeper-{aerie.run_id}@example.com", "role": "owner"}
    path = f"/v1/tenants/{a['id']}/members"
    a_member = aerie.call("POST", "tenants", path, token=aerie.admin_token, json=invited).json()
    platform_person = {"email": f"ops-{aerie.run_id}@example.com", "role": "platform-viewer"}
    ops = aerie.call("POST", "tenants", "/v1/platform/members", token=aerie.admin_token, json=platform_person).json()
    aerie.on_cleanup(
        f"platform member {ops['id']}",
        lambda: aerie.call("DELETE", "tenants", f"/v1/platform/members/{ops['id']}", token=aerie.admin_token),
    )
    a_ids = {
        "tenant_id": a["id"],
        "client_id": a_client["client_id"],
        "project_id": a_project["id"],
        "member_id": a_member["id"],
        "platform_member_id": ops["id"],
    }
    absent_ids = {k: _absent(v) for k, v in a_ids.items()}
    probes = Probes(aerie, b_token, a_ids, absent_ids)
    probes.absent_alike(
        "tenants",
        [
            ("GET", "/v1/tenants/{tenant_id}/members", None),
            ("POST", "/v1/tenants/{tenant_id}/members", {"email": "mole@example.com", "role": "owner"}),
            ("GET", "/v1/tenants/{tenant_id}/members/{member_id}", None),
            ("PATCH", "/v1/tenants/{tenant_id}/members/{member_id}", {"role": "viewer"}),
            ("DELETE", "/v1/tenants/{tenant_id}/members/{member_id}", None),
        ],
    )
    for method, body in (("GET", None), ("PATCH", {"role": "platform-admin"}), ("DELETE", None)):
        probes.route("tenants", method, "/v1/platform/members/{member_id}")(
            lambda m=method, b=body: probes.same_as_absent(m, "tenants", "/v1/platform/members/{platform_member_id}", b)
        )

    @probes.route("tenants", "GET", "/v1/platform/members")
    def list_platform_people() -> None:
        assert aerie.call("GET", "tenants", "/v1/platform/members", token=b_token).status_code == 403

    @probes.route("tenants", "POST", "/v1/platform/members")
    def become_an_operator() -> None:
        body = {"email": "mole@example.com", "role": "platform-admin"}
        assert aerie.call("POST", "tenants", "/v1/platform/members", token=b_token, json=body).status_code == 403

    # The dead letters are the platform's: a tenant's token reaches none of them, real or not.
    for method, template in (
        ("GET", "/v1/platform/dead-letters"),
        ("GET", "/v1/platform/dead-letters/{letter_id}"),
        ("DELETE", "/v1/platform/dead-letters/{letter_id}"),
        ("POST", "/v1/platform/dead-letters/{letter_id}/replay"),
    ):
        path = template.format(letter_id="1-0")
        probes.route("tenants", method, template)(
            lambda m=method, p=path: _refused(aerie.call(m, "tenants", p, token=b_token), 403)
        )

    for service in ("tenants", "projects"):
        probes.route(service, "GET", "/v1/me")(lambda s=service: _me_is_b(aerie, s, b_token, b["id"]))

    probes.absent_alike(
        "tenants",
        [
            ("GET", "/v1/tenants/{tenant_id}", None),
            ("PATCH", "/v1/tenants/{tenant_id}", {"name": "Hijacked"}),
            ("DELETE", "/v1/tenants/{tenant_id}", None),
            ("POST", "/v1/tenants/{tenant_id}/suspend", None),
            ("POST", "/v1/tenants/{tenant_id}/reactivate", None),
            ("GET", "/v1/tenants/{tenant_id}/clients", None),
            ("POST", "/v1/tenants/{tenant_id}/clients", {"name": "mole", "scopes": ["tenants:read"]}),
            ("DELETE", "/v1/tenants/{tenant_id}/clients/{client_id}", None),
        ],
    )
    probes.absent_alike(
        "projects",
        [
            ("GET", "/v1/projects/{project_id}", None),
            ("PATCH", "/v1/projects/{project_id}", {"name": "Mine now"}),
            ("DELETE", "/v1/projects/{project_id}", None),
        ],
    )

    @probes.route("tenants", "GET", "/v1/tenants")
    def list_tenants() -> None:
        r = aerie.call("GET", "tenants", "/v1/tenants", token=b_token)
        assert r.status_code == 403 or a["id"] not in r.text, r.text[:200]

    @probes.route("tenants", "POST", "/v1/tenants")
    def create_tenant() -> None:
        r = aerie.call(
            "POST", "tenants", "/v1/tenants", token=b_token, json={"slug": f"mole-{uuid.uuid4().hex[:8]}", "name": "x"}
        )
        assert r.status_code == 403, r.text[:200]

    @probes.route("tenants", "POST", "/v1/oauth/token")
    def token_for_a() -> None:
        def ask(tenant_id: str) -> requests.Response:
            return aerie.call(
                "POST",
                "tenants",
                "/v1/oauth/token",
                data={"grant_type": "client_credentials", "tenant_id": tenant_id},
                auth=(b_client["client_id"], b_client["client_secret"]),
            )

        real, absent = ask(a["id"]), ask(absent_ids["tenant_id"])
        if real.status_code == 200:  # a tenant client's tenant_id is ignored at most, never honoured
            claims = json.loads(_b64(real.json()["access_token"].split(".")[1]))
            assert claims.get("tenant_id") == b["id"], claims
        else:
            assert (real.status_code, real.json().get("error")) == (absent.status_code, absent.json().get("error"))

    @probes.route("projects", "GET", "/v1/projects")
    def list_projects() -> None:
        r = aerie.call("GET", "projects", "/v1/projects", token=b_token)
        assert r.status_code == 200 and a_project["id"] not in r.text

    @probes.route("projects", "POST", "/v1/projects")
    def create_in_a() -> None:
        body = {"name": "Planted", "tenant_id": a["id"]}
        r = aerie.call("POST", "projects", "/v1/projects", token=b_token, json=body)
        assert r.status_code in (201, 400, 422), r.text[:200]
        if r.status_code == 201:  # the tenant comes from the token alone
            assert r.json()["tenant_id"] == b["id"]

    @probes.route("projects", "POST", "/v1/projects/batch-update")
    def batch_update() -> None:
        body = {"ids": [a_project["id"], absent_ids["project_id"]], "changes": {"status": "archived"}}
        r = aerie.call("POST", "projects", "/v1/projects/batch-update", token=b_token, json=body)
        assert r.status_code == 200 and r.json()["updated"] == [], r.text[:200]
        assert sorted(r.json()["not_found"]) == sorted(body["ids"])

    @probes.route("projects", "GET", "/v1/projects/events")
    def events() -> None:
        url = aerie.url("projects") + "/v1/projects/events"
        with aerie.http.get(url, headers={"Authorization": f"Bearer {b_token}"}, stream=True, timeout=30) as stream:
            assert stream.status_code == 200
            aerie.call("POST", "projects", "/v1/projects", token=a_token, json={"name": "A's secret plan"})
            mine = aerie.call("POST", "projects", "/v1/projects", token=b_token, json={"name": "B's own"}).json()
            event = _first_data(stream, lambda _event: True)
        assert event["tenant_id"] == b["id"] and event["data"]["project"]["id"] == mine["id"], event

    probes.run(("tenants", "projects"))

    # A is untouched.
    assert aerie.call("GET", "tenants", f"/v1/tenants/{a['id']}", token=a_token).json() == a
    assert aerie.call("GET", "projects", f"/v1/projects/{a_project['id']}", token=a_token).json() == a_project
    clients = aerie.call("GET", "tenants", f"/v1/tenants/{a['id']}/clients", token=a_token).json()["items"]
    assert {c["client_id"] for c in clients} >= {a_client["client_id"]} and all(c["name"] != "mole" for c in clients)


FLAGS_AUDIT_SCOPES = ["flags:read", "flags:write", "audit:read", "audit:write"]
#: Asynchronous hops (pub/sub between flags instances, the durable stream into audit):
#: generous bounds, the checks pass as soon as the thing happened.
SEEN_S = 10.0


MONTH_AHEAD = (datetime.now(UTC) + timedelta(days=30)).isoformat(timespec="seconds")


@pytest.mark.flags
@pytest.mark.audit
def test_cross_tenant_probing_of_flags_overrides_and_audit_trails(aerie):
    """Tenant B tries each documented route of flags and audit on A's overrides and trail.

    Flag definitions are global, so B may override the same flag for itself: what must hold
    is that B's overrides and evaluations never see or touch A's, and that A's trail is
    neither readable nor appendable by B, nor told apart from a trail that does not exist.
    """
    a, a_token = aerie.tenant_with_token(FLAGS_AUDIT_SCOPES)
    b, b_token = aerie.tenant_with_token(FLAGS_AUDIT_SCOPES)
    key = aerie.create_flag("probe", default=False, allow_overrides="user")["key"]
    a_overrides = {"tenant": {key: True}, "users": {key: {"a-user": True}}}
    for path in (f"/v1/flags/{key}/overrides/tenant", f"/v1/flags/{key}/overrides/users/a-user"):
        r = aerie.call("PUT", "flags", path, token=a_token, json={"value": True})
        assert r.status_code == 200, r.text[:300]

    def a_evaluation(user_id: str) -> dict[str, Any]:
        r = aerie.call(
            "POST", "flags", "/v1/evaluate", token=a_token, json={"context": {"user_id": user_id}, "keys": [key]}
        )
        assert r.status_code == 200, r.text[:300]
        return r.json()["flags"][key]

    aerie.eventually(lambda: a_evaluation("a-user")["rule"] == "override:user", SEEN_S, "A's overrides answering")

    def a_entry() -> str | None:
        found = aerie.audit_trail(a_token, action="flag.override.set")
        return found[0]["id"] if found else None

    aerie.eventually(lambda: a_entry() is not None, SEEN_S, "A's override reaching A's trail", interval=0.25)
    schedule = aerie.call(
        "POST",
        "flags",
        f"/v1/flags/{key}/schedule",
        token=aerie.admin_token,
        json={"at": MONTH_AHEAD, "changes": {"default": True}},
    )
    assert schedule.status_code == 201, schedule.text[:300]
    a_ids = {"key": key, "tenant_id": a["id"], "entry_id": str(a_entry()), "schedule_id": schedule.json()["id"]}
    absent_ids = {
        "key": f"{key}-gone",
        "tenant_id": _absent(a["id"]),
        "entry_id": _absent(a_ids["entry_id"]),
        "schedule_id": _absent(a_ids["schedule_id"]),
    }
    probes = Probes(aerie, b_token, a_ids, absent_ids)
    # Definitions are platform:admin's: B is refused the same for A's flag and for no flag.
    probes.absent_alike(
        "flags",
        [
            ("GET", "/v1/flags/{key}", None),
            ("PUT", "/v1/flags/{key}", {"default": True}),
            ("DELETE", "/v1/flags/{key}", None),
            ("GET", "/v1/flags/{key}/schedule", None),
            ("POST", "/v1/flags/{key}/schedule", {"at": MONTH_AHEAD, "changes": {"default": True}}),
            ("DELETE", "/v1/flags/{key}/schedule/{schedule_id}", None),
        ],
    )
    probes.absent_alike(
        "audit",
        [
            ("GET", "/v1/audit/events/{entry_id}", None),
            ("GET", "/v1/audit/events/{entry_id}?tenant_id={tenant_id}", None),
        ],
    )

    def mine_only(overrides: dict[str, Any]) -> bool:
        """Whether every override is one B set (B only ever sets False; A's are True)."""
        values = [*overrides["tenant"].values(), *(v for users in overrides["users"].values() for v in users.values())]
        return all(v is False for v in values)

    @probes.route("flags", "GET", "/v1/flags")
    def list_flags() -> None:
        r = aerie.call("GET", "flags", "/v1/flags", token=b_token)
        assert r.status_code == 403 and _problem_code(r) == "insufficient_scope", r.text[:200]

    @probes.route("flags", "GET", "/v1/flags/snapshot")
    def snapshot() -> None:
        r = aerie.call("GET", "flags", "/v1/flags/snapshot", token=b_token)
        assert r.status_code == 200, r.text[:200]
        assert r.json()["tenant_id"] == b["id"] and a["id"] not in r.text, r.text[:300]
        assert mine_only(r.json()["overrides"]), r.json()["overrides"]

    @probes.route("flags", "GET", "/v1/flags/stream")
    def stream() -> None:
        url = aerie.url("flags") + "/v1/flags/stream"
        with aerie.http.get(url, headers={"Authorization": f"Bearer {b_token}"}, stream=True, timeout=30) as feed:
            assert feed.status_code == 200, feed.text[:200]
            aerie.call("PUT", "flags", f"/v1/flags/{key}/overrides/tenant", token=a_token, json={"value": True})
            r = aerie.call(
                "PUT", "flags", f"/v1/flags/{key}/overrides/users/b-user", token=b_token, json={"value": False}
            )
            assert r.status_code == 200, r.text[:200]
            # Definition events reach every tenant (other runs may change flags meanwhile);
            # override events only their own tenant's stream.
            event = _first_data(feed, lambda e: str(e.get("type", "")).startswith("flag.override."))
        assert event["tenant_id"] == b["id"] and event["data"].get("user_id") == "b-user", event

    @probes.route("flags", "GET", "/v1/flags/{key}/evaluation")
    def evaluation() -> None:
        r = aerie.call("GET", "flags", f"/v1/flags/{key}/evaluation", token=b_token, params={"user_id": "a-user"})
        assert r.status_code == 200 and r.json()["value"] is False, r.text[:200]  # B's default or B's override

    @probes.route("flags", "POST", "/v1/evaluate")
    def evaluate_as_a() -> None:
        # Claiming A's identity in the context changes nothing: the tenant comes from the token.
        context = {"user_id": "a-user", "tenant_id": a["id"], "tenant": {"plan": a["plan"]}}
        r = aerie.call("POST", "flags", "/v1/evaluate", token=b_token, json={"context": context, "keys": [key]})
        assert r.status_code == 200 and r.json()["flags"][key]["value"] is False, r.text[:300]

    @probes.route("flags", "POST", "/ofrep/v1/evaluate/flags/{key}")
    def ofrep_flag_as_a() -> None:
        context = {"targetingKey": "a-user", "tenant_id": a["id"]}
        r = aerie.call("POST", "flags", f"/ofrep/v1/evaluate/flags/{key}", token=b_token, json={"context": context})
        assert r.status_code == 200 and r.json()["value"] is False, r.text[:300]

    @probes.route("flags", "POST", "/ofrep/v1/evaluate/flags")
    def ofrep_bulk_as_a() -> None:
        context = {"targetingKey": "a-user", "tenant_id": a["id"]}
        r = aerie.call("POST", "flags", "/ofrep/v1/evaluate/flags", token=b_token, json={"context": context})
        assert r.status_code == 200, r.text[:300]
        mine = [item for item in r.json()["flags"] if item["key"] == key]
        assert mine and mine[0]["value"] is False and a["id"] not in r.text, r.text[:300]

    for template in ("/v1/flags/{key}/overrides/tenant", "/v1/flags/{key}/overrides/users/{user_id}"):
        path = template.format(key=key, user_id="a-user")

        @probes.route("flags", "PUT", template)
        def put_override(path: str = path) -> None:
            r = aerie.call("PUT", "flags", path, token=b_token, json={"value": False})
            assert r.status_code == 200, r.text[:200]  # B's own override of a global flag

        @probes.route("flags", "DELETE", template)
        def delete_override(path: str = path) -> None:
            r = aerie.call("DELETE", "flags", path, token=b_token)
            assert r.status_code in (204, 404), r.text[:200]  # B's own, or none: never A's

    @probes.route("audit", "GET", "/v1/audit/events")
    def list_entries() -> None:
        r = aerie.call("GET", "audit", "/v1/audit/events", token=b_token, params={"limit": 200})
        assert r.status_code == 200 and a["id"] not in r.text, r.text[:300]
        assert {e["tenant_id"] for e in r.json()["items"]} <= {b["id"]}
        probes.same_as_absent("GET", "audit", "/v1/audit/events?tenant_id={tenant_id}")

    @probes.route("audit", "GET", "/v1/audit/export")
    def export() -> None:
        assert all(e["tenant_id"] == b["id"] for e in aerie.audit_trail(b_token))
        probes.same_as_absent("GET", "audit", "/v1/audit/export?format=ndjson&tenant_id={tenant_id}")

    @probes.route("audit", "GET", "/v1/audit/verify")
    def verify() -> None:
        r = aerie.call("GET", "audit", "/v1/audit/verify", token=b_token)
        assert r.status_code == 200 and r.json()["entries"] == len(aerie.audit_trail(b_token)), r.text[:300]
        probes.same_as_absent("GET", "audit", "/v1/audit/verify?tenant_id={tenant_id}")

    @probes.route("audit", "POST", "/v1/audit/events")
    def append() -> None:
        def entry(entry_id: str, **extra: Any) -> dict[str, Any]:
            return {
                "id": entry_id,
                "action": "probe.append",
                "actor": {"type": "client", "id": "mole"},
                "target": {"type": "probe", "id": "x"},
                **extra,
            }

        # Into A's trail: refused exactly as into a trail that does not exist.
        real = aerie.call(
            "POST",
            "audit",
            "/v1/audit/events",
            token=b_token,
            json=entry(f"probe-{uuid.uuid4().hex}", tenant_id=a["id"]),
        )
        absent = aerie.call(
            "POST",
            "audit",
            "/v1/audit/events",
            token=b_token,
            json=entry(f"probe-{uuid.uuid4().hex}", tenant_id=absent_ids["tenant_id"]),
        )
        assert real.status_code >= 400 and (real.status_code, _problem_code(real)) == (
            absent.status_code,
            _problem_code(absent),
        ), real.text[:200]
        # Reusing the id of A's entry, an event's id (evt_...), which no direct append may take:
        # refused exactly as an event id nobody holds is, and A's entry never answered.
        answers = [
            aerie.call("POST", "audit", "/v1/audit/events", token=b_token, json=entry(entry_id))
            for entry_id in (a_ids["entry_id"], absent_ids["entry_id"])
        ]
        assert [(r.status_code, _problem_code(r)) for r in answers] == [(422, "validation_error")] * 2, [
            r.text[:300] for r in answers
        ]
        # An id of B's own choosing lands in B's own trail.
        r = aerie.call("POST", "audit", "/v1/audit/events", token=b_token, json=entry(f"b-{uuid.uuid4().hex}"))
        assert r.status_code == 201 and r.json()["tenant_id"] == b["id"], r.text[:300]

    for service in ("flags", "audit"):
        probes.route(service, "GET", "/v1/me")(lambda s=service: _me_is_b(aerie, s, b_token, b["id"]))
    probes.run(("flags", "audit"))

    # A is untouched: its overrides, its evaluations and its trail.
    def a_intact() -> bool:
        r = aerie.call("GET", "flags", "/v1/flags/snapshot", token=a_token)
        return r.status_code == 200 and r.json()["overrides"] == a_overrides

    aerie.eventually(a_intact, SEEN_S, "A's overrides, exactly as A set them")
    assert a_evaluation("a-user")["rule"] == "override:user" and a_evaluation("x")["rule"] == "override:tenant"
    trail = aerie.audit_trail(a_token)
    assert all(e["action"] != "probe.append" for e in trail) and aerie.first_broken_link(trail) is None


def _b64(segment: str) -> str:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)).decode()
