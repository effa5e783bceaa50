"""Benchmark Aerie against a bare Falcon hello-world under the same uWSGI settings, in one run.

    python bench/run.py [--duration 10] [--connections 32] [--scenario tenants-get]

It starts ``bench/hello`` under uWSGI on a free port, starts the local stack on free ports
(or uses a running one when ``AERIE_TENANTS_URL``, ``AERIE_BOOTSTRAP_CLIENT_ID`` and
``AERIE_BOOTSTRAP_CLIENT_SECRET`` are set), gets a platform token, creates a tenant,
measures the hello-world baseline and then each scenario back to back, prints a table,
writes ``bench/results/<timestamp>.json`` and stops everything it started.

Targets are ratios to the baseline measured in the same run (and a p99 bound), reported as
PASS or MISS; the exit status is 0 unless the benchmark itself could not run, or
``--strict`` is given and a target was missed.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import http.client
import json
import os
import platform
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(BENCH))
sys.path.insert(0, str(REPO / "shared"))

import cpu  # noqa: E402
from load import LoadResult, Target, choose_tool, run_load  # noqa: E402

HELLO = "hello"
SETUP_TIMEOUT_S = 10.0


# --- scenarios -------------------------------------------------------------------------------


@dataclass
class Context:
    """What scenarios are written against: base URLs by service, and variables for templates."""

    urls: dict[str, str]
    vars: dict[str, str] = field(default_factory=dict)

    def call(
        self,
        service: str,
        method: str,
        path: str,
        *,
        headers: Mapping[str, str] | None = None,
        body: bytes | None = None,
        expect: tuple[int, ...] = (200, 201),
    ) -> Any:
        """One setup request; its JSON answer, or :class:`BenchError` naming what went wrong."""
        parts = urlsplit(self.urls[service])
        conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port or 80, timeout=SETUP_TIMEOUT_S)
        try:
            conn.request(method, path, body=body, headers=dict(headers or {}))
            resp = conn.getresponse()
            data = resp.read()
        except OSError as exc:
            raise BenchError(f"{method} {self.urls[service]}{path}: {exc}") from exc
        finally:
            conn.close()
        if resp.status not in expect:
            raise BenchError(f"{method} {path} answered {resp.status}: {data[:500].decode(errors='replace')}")
        return json.loads(data) if data else None


@dataclass(frozen=True)
class Scenario:
    """One request measured under load.

    ``path``, header values and a string ``body`` are ``str.format`` templates over the
    context's variables (``{token}``, ``{tenant_id}`` and whatever ``setup`` adds). ``body``
    may also be a dict, sent as JSON. ``setup`` runs once before the load, after the common
    setup (platform token and a tenant), and returns more variables.
    """

    name: str
    method: str
    path: str
    headers: Mapping[str, str] = field(default_factory=dict)
    body: str | Mapping[str, Any] | None = None
    target_ratio: float | None = None
    target_p99_ms: float | None = None
    #: p99 at most this many times hello-world's p99 in the same run (a bound relative to the
    #: machine, where ``target_p99_ms`` is absolute).
    target_p99_ratio: float | None = None
    service: str = "tenants"
    setup: Callable[[Context], Mapping[str, str]] | None = None
    #: Services the one measured calls itself (the console's pages call the others): started
    #: too, and their CPU counts in the scenario's server CPU.
    needs: tuple[str, ...] = ()
    #: Server CPU per request (every uWSGI process and Redis: the service and whatever it calls)
    #: at most this many times hello-world's, measured in the same run.
    target_cpu_ratio: float | None = None

    def target(self, ctx: Context) -> Target:
        if self.service not in ctx.urls:
            raise BenchError(f"{self.name}: no URL for {self.service} (AERIE_{self.service.upper()}_URL)")
        v = ctx.vars
        headers = {k: val.format(**v) for k, val in self.headers.items()}
        body: bytes | None = None
        if isinstance(self.body, str):
            body = self.body.format(**v).encode()
        elif self.body is not None:
            body = json.dumps(self.body).encode()
            headers.setdefault("Content-Type", "application/json")
        return Target(ctx.urls[self.service] + self.path.format(**v), self.method, headers, body)

    def describe_target(self) -> str:
        parts = []
        if self.target_ratio is not None:
            parts.append(f">={self.target_ratio:.0%}")
        if self.target_p99_ms is not None:
            parts.append(f"p99<{self.target_p99_ms:g}ms")
        if self.target_p99_ratio is not None:
            parts.append(f"p99<={self.target_p99_ratio:g}x")
        if self.target_cpu_ratio is not None:
            parts.append(f"cpu<={self.target_cpu_ratio:g}x")
        return ", ".join([*parts, "0 err"]) if parts else "-"


AUTH = {"Authorization": "Bearer {token}"}

BASELINE = Scenario("hello-world", "GET", "/", service=HELLO)


def seed_audit_trail(ctx: Context) -> Mapping[str, str]:
    """60 entries in the bench tenant's trail (direct appends), so the newest 50 are a full page."""
    headers = {"Authorization": f"Bearer {ctx.vars['token']}", "Content-Type": "application/json"}
    for i in range(60):
        body = {
            "id": f"bench-{ctx.vars['tenant_id']}-{i}",
            "tenant_id": ctx.vars["tenant_id"],
            "action": "bench.seeded",
            "actor": {"type": "user", "id": f"u{i % 5}"},
            "target": {"type": "document", "id": f"doc-{i}"},
            "ip": "10.0.0.1",
            "user_agent": "bench/1.0",
            "message": "seeded for the audit-query scenario",
            "metadata": {"i": i},
        }
        ctx.call("audit", "POST", "/v1/audit/events", headers=headers, body=json.dumps(body).encode(), expect=(201,))
    return {}


def seed_projects(ctx: Context) -> Mapping[str, str]:
    """A projects client of the bench tenant, its token, and 60 projects (a full page of 50).

    Both projects scenarios use it; it runs once and leaves ``project_token`` and
    ``project_id`` for their templates.
    """
    if "project_token" in ctx.vars:
        return {}
    admin = {"Authorization": f"Bearer {ctx.vars['token']}", "Content-Type": "application/json"}
    client = ctx.call(
        "tenants",
        "POST",
        f"/v1/tenants/{ctx.vars['tenant_id']}/clients",
        headers=admin,
        body=json.dumps({"name": "bench-projects", "scopes": ["projects:read", "projects:write"]}).encode(),
        expect=(201,),
    )
    token = platform_token(ctx, client["client_id"], client["client_secret"])
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    ids = [
        ctx.call(
            "projects",
            "POST",
            "/v1/projects",
            headers=headers,
            body=json.dumps({"name": f"Bench project {i}", "description": "x" * 200}).encode(),
            expect=(201,),
        )["id"]
        for i in range(60)
    ]
    return {"project_token": token, "project_id": ids[len(ids) // 2]}


PROJECT_AUTH = {"Authorization": "Bearer {project_token}"}

EXCHANGE_GRANT = "urn:ietf:params:oauth:grant-type:token-exchange"


def seed_person(ctx: Context) -> Mapping[str, str]:
    """Alice, a developer of the bench tenant, signed in at the stack's development provider,
    and an app client that exchanges her ID token: what both people scenarios use.

    The ID token is made once (the real sign-in), so the exchange scenario measures the
    token endpoint with the provider's keys cached, as an app's sign-ins see it.
    """
    if "alice_token" in ctx.vars:
        return {}
    if "dev_idp" not in ctx.urls:
        raise BenchError("no AERIE_DEV_IDP_URL: the people scenarios need the stack's development provider")
    from aerie.local.sign_in import sign_in

    seed_projects(ctx)
    admin = {"Authorization": f"Bearer {ctx.vars['token']}", "Content-Type": "application/json"}
    tenant = ctx.vars["tenant_id"]
    email = f"alice-{secrets.token_hex(4)}@example.com"
    invite = json.dumps({"email": email, "role": "developer"}).encode()
    ctx.call("tenants", "POST", f"/v1/tenants/{tenant}/members", headers=admin, body=invite, expect=(201,))
    body = {"name": "bench-web", "scopes": ["projects:read", "projects:write"], "grants": ["token-exchange"]}
    app = ctx.call(
        "tenants", "POST", f"/v1/tenants/{tenant}/clients", headers=admin, body=json.dumps(body).encode(), expect=(201,)
    )
    id_token = sign_in(ctx.urls["dev_idp"], email)
    form = urlencode(
        {
            "grant_type": EXCHANGE_GRANT,
            "subject_token_type": "urn:ietf:params:oauth:token-type:id_token",
            "subject_token": id_token,
        }
    )
    basic = base64.b64encode(f"{app['client_id']}:{app['client_secret']}".encode()).decode()
    headers = {"Authorization": f"Basic {basic}", "Content-Type": "application/x-www-form-urlencoded"}
    data = ctx.call("tenants", "POST", "/v1/oauth/token", body=form.encode(), headers=headers, expect=(200,))
    return {"alice_token": str(data["access_token"]), "exchange_form": form, "exchange_basic": basic}


FLAG_KEYS = [f"bench-flag-{i}" for i in range(10)]


def seed_flags(ctx: Context) -> Mapping[str, str]:
    """Ten flags of every kind (rules on context and tenant attributes, rollouts, variants, a
    killed one) and a flags:read token of the bench tenant, for ``flags-evaluate``."""
    admin = {"Authorization": f"Bearer {ctx.vars['token']}", "Content-Type": "application/json"}
    variants = [{"name": "control", "weight": 50}, {"name": "treatment", "weight": 50}]
    in_de = {"attribute": "country", "op": "in", "values": ["DE", "AT", "CH"]}
    new_tenant = {"attribute": "tenant.created_at", "op": "after", "values": ["2017-01-01T00:00:00Z"]}
    team = {"attribute": "tenant.plan", "op": "eq", "values": ["team"]}
    staff = {"attribute": "email", "op": "ends_with", "values": ["@example.com"]}
    kinds = [
        {"default": False},
        {"default": False, "rollout": {"percentage": 50}},
        {"default": False, "rules": [{"conditions": [in_de], "serve": True}], "rollout": {"percentage": 10}},
        {"default": "control", "variants": variants, "rollout": {"percentage": 100}},
        {"default": "old", "rules": [{"conditions": [new_tenant], "serve": "new"}]},
        {"default": 10, "rules": [{"conditions": [team], "serve": 50}]},
        {"default": False, "enabled": False},
        {"default": False, "rules": [{"conditions": [staff], "serve": True}]},
        {"default": False, "rollout": {"percentage": 25, "stickiness": "session_id"}},
        {"default": {"limit": 10}, "allow_overrides": "tenant"},
    ]
    for key, doc in zip(FLAG_KEYS, kinds, strict=True):
        ctx.call("flags", "PUT", f"/v1/flags/{key}", headers=admin, body=json.dumps(doc).encode(), expect=(200, 201))
    client = ctx.call(
        "tenants",
        "POST",
        f"/v1/tenants/{ctx.vars['tenant_id']}/clients",
        headers=admin,
        body=json.dumps({"name": "bench-flags", "scopes": ["flags:read"]}).encode(),
        expect=(201,),
    )
    return {"flags_token": platform_token(ctx, client["client_id"], client["client_secret"])}


def seed_flags_once(ctx: Context) -> Mapping[str, str]:
    """:func:`seed_flags` unless a scenario before already did: the OFREP scenarios read the same flags."""
    return {} if "flags_token" in ctx.vars else seed_flags(ctx)


CONSOLE_FLAGS = 200
CONSOLE_AUDIT_ENTRIES = 10_000


def console_session(ctx: Context, email: str, next_path: str) -> str:
    """The console's session cookie for ``email``, through its real sign-in: the console's
    redirect to the development provider, the provider's form, the callback and the token
    exchange. Only the provider's form is posted by hand, as a browser would."""
    import requests

    if "dev_idp" not in ctx.urls:
        raise BenchError("no AERIE_DEV_IDP_URL: the console scenarios need the stack's development provider")
    http = requests.Session()
    idp = ctx.urls["dev_idp"]
    r = http.put(f"{idp}/users/{email}", json={"email": email, "email_verified": True}, timeout=SETUP_TIMEOUT_S)
    if r.status_code != 204:
        raise BenchError(f"setting {email}'s claims at the provider: {r.status_code} {r.text[:200]}")
    start = http.get(f"{ctx.urls['console']}/sign-in", params={"next": next_path}, allow_redirects=False, timeout=10)
    authorize = start.headers.get("Location", "")
    if start.status_code != 303 or not authorize.startswith(idp):
        raise BenchError(f"the console's sign-in answered {start.status_code}, not a redirect to {idp}")
    form = http.post(authorize, data={"sub": email}, allow_redirects=False, timeout=SETUP_TIMEOUT_S)
    callback = form.headers.get("Location", "")
    if not callback.startswith(ctx.urls["console"]):
        raise BenchError(f"the provider's form answered {form.status_code}, not a redirect to the console")
    back = http.get(callback, allow_redirects=False, timeout=SETUP_TIMEOUT_S)
    cookie = http.cookies.get("aerie_console")
    if back.status_code != 303 or not cookie:
        raise BenchError(f"the console's callback answered {back.status_code}: {back.text[:300]}")
    return f"aerie_console={cookie}"


def _console_admin(ctx: Context) -> str:
    """The sample person the stack makes its platform-admin, signed in to the console once."""
    if "console_cookie" not in ctx.vars:
        from aerie.local.dev_idp import SAMPLE_ADMIN

        ctx.vars["console_cookie"] = console_session(ctx, SAMPLE_ADMIN, "/flags")
    return ctx.vars["console_cookie"]


def seed_console_flags(ctx: Context) -> Mapping[str, str]:
    """200 flag definitions (rules, rollouts, variants), and the platform admin signed in to the console."""
    admin = {"Authorization": f"Bearer {ctx.vars['token']}", "Content-Type": "application/json"}
    variants = [{"name": "control", "weight": 50}, {"name": "treatment", "weight": 50}]
    rule = {"conditions": [{"attribute": "country", "op": "in", "values": ["DE", "AT"]}], "serve": True}
    for i in range(CONSOLE_FLAGS):
        doc: dict[str, Any] = {"description": f"Console bench flag {i}", "default": False}
        if i % 3 == 0:
            doc["rollout"] = {"percentage": i % 100}
        if i % 5 == 2:
            doc |= {"default": "control", "variants": variants}
        elif i % 3 == 1:
            doc["rules"] = [rule]
        key = f"console-bench-{i:03d}"
        ctx.call("flags", "PUT", f"/v1/flags/{key}", headers=admin, body=json.dumps(doc).encode(), expect=(200, 201))
    return {"console_cookie": _console_admin(ctx)}


def seed_console_audit(ctx: Context) -> Mapping[str, str]:
    """10,000 entries in a tenant's trail (direct appends, four at a time), and the platform admin
    signed in to the console: the heaviest audit page is a long trail's newest page."""
    from concurrent.futures import ThreadPoolExecutor

    tenant = ctx.vars["tenant_id"]
    headers = {"Authorization": f"Bearer {ctx.vars['token']}", "Content-Type": "application/json"}
    parts = urlsplit(ctx.urls["audit"])

    def append(indices: range) -> None:
        conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port or 80, timeout=SETUP_TIMEOUT_S)
        try:
            for i in indices:
                body = {
                    "id": f"console-bench-{tenant}-{i}",
                    "tenant_id": tenant,
                    "action": ("flag.updated", "project.created", "member.invited")[i % 3],
                    "actor": {"type": "user", "id": f"usr_{i % 7}"},
                    "target": {"type": "flag", "id": f"console-bench-{i % 200:03d}"},
                    "ip": "10.0.0.1",
                    "user_agent": "bench/1.0",
                    "message": "seeded for the console-audit scenario",
                    "metadata": {"i": i},
                }
                conn.request("POST", "/v1/audit/events", body=json.dumps(body).encode(), headers=headers)
                resp = conn.getresponse()
                data = resp.read()
                if resp.status != 201:
                    raise BenchError(f"appending entry {i} answered {resp.status}: {data[:300]!r}")
        finally:
            conn.close()

    lanes = 4
    size = CONSOLE_AUDIT_ENTRIES // lanes
    with ThreadPoolExecutor(lanes) as pool:
        list(pool.map(append, [range(k * size, (k + 1) * size) for k in range(lanes)]))
    return {"console_cookie": _console_admin(ctx)}


CONSOLE_AUTH = {"Cookie": "{console_cookie}"}


#: What an OpenFeature SDK's OFREP provider sends: the user as ``targetingKey``.
OFREP_CONTEXT = {
    "context": {"targetingKey": "user-4711", "session_id": "s-93", "country": "DE", "email": "a@example.com"}
}


#: Add a scenario here; ``--scenario NAME`` picks some, the default runs them all.
SCENARIOS: list[Scenario] = [
    Scenario("tenants-get", "GET", "/v1/tenants/{tenant_id}", AUTH, target_ratio=0.40, target_p99_ms=20.0),
    # The newest 50 entries of a tenant's trail (platform:admin naming the tenant).
    Scenario(
        "audit-query",
        "GET",
        "/v1/audit/events?tenant_id={tenant_id}&limit=50",
        AUTH,
        target_ratio=0.30,
        service="audit",
        setup=seed_audit_trail,
    ),
    # One project, and a full page of 50, with a tenant client's token.
    Scenario(
        "projects-get",
        "GET",
        "/v1/projects/{project_id}",
        PROJECT_AUTH,
        target_ratio=0.40,
        target_p99_ms=25.0,
        service="projects",
        setup=seed_projects,
    ),
    Scenario(
        "projects-list",
        "GET",
        "/v1/projects?limit=50",
        PROJECT_AUTH,
        target_ratio=0.15,
        target_p99_ms=25.0,
        service="projects",
        setup=seed_projects,
    ),
    # The same read with a person's token (exchanged): it must cost no more than a client's.
    Scenario(
        "projects-get-as-person",
        "GET",
        "/v1/projects/{project_id}",
        {"Authorization": "Bearer {alice_token}"},
        target_ratio=0.40,
        target_p99_ms=25.0,
        service="projects",
        setup=seed_person,
    ),
    # A person's sign-in exchanged for an Aerie token (RFC 8693), the provider's keys cached:
    # one RSA verification and one RSA signature per request, like client credentials.
    Scenario(
        "token-exchange",
        "POST",
        "/v1/oauth/token",
        {"Authorization": "Basic {exchange_basic}", "Content-Type": "application/x-www-form-urlencoded"},
        body="{exchange_form}",
        target_ratio=0.05,
        setup=seed_person,
    ),
    # Ten flags evaluated for one user in one request, with a tenant client's token.
    Scenario(
        "flags-evaluate",
        "POST",
        "/v1/evaluate",
        {"Authorization": "Bearer {flags_token}"},
        body={
            "context": {"user_id": "user-4711", "session_id": "s-93", "country": "DE", "email": "a@example.com"},
            "keys": FLAG_KEYS,
        },
        target_ratio=0.50,
        target_p99_ms=15.0,
        service="flags",
        setup=seed_flags,
    ),
    # OFREP: one flag (a rule on the context, then a rollout), as server-side providers ask per evaluation.
    Scenario(
        "ofrep-evaluate",
        "POST",
        "/ofrep/v1/evaluate/flags/bench-flag-2",
        {"Authorization": "Bearer {flags_token}"},
        body=OFREP_CONTEXT,
        target_ratio=0.60,
        target_p99_ratio=2.0,
        service="flags",
        setup=seed_flags_once,
    ),
    # OFREP bulk: every flag (the ten seeded), as client-side providers fetch them, with an ETag.
    Scenario(
        "ofrep-bulk",
        "POST",
        "/ofrep/v1/evaluate/flags",
        {"Authorization": "Bearer {flags_token}"},
        body=OFREP_CONTEXT,
        target_ratio=0.60,
        target_p99_ratio=2.0,
        service="flags",
        setup=seed_flags_once,
    ),
    # The console's two heaviest pages, signed in as the platform admin: the flag list with 200
    # flags defined, and the newest page of a 10,000-entry trail. Each costs at most ten
    # hello-world requests' server CPU, counting every call the page makes to other services.
    # Last: the 200 flags they define would be in every later scenario's bulk evaluation.
    Scenario(
        "console-flags",
        "GET",
        "/flags",
        CONSOLE_AUTH,
        target_cpu_ratio=10.0,
        service="console",
        needs=("flags",),
        setup=seed_console_flags,
    ),
    Scenario(
        "console-audit",
        "GET",
        "/audit?tenant_id={tenant_id}",
        CONSOLE_AUTH,
        target_cpu_ratio=10.0,
        service="console",
        needs=("audit",),
        setup=seed_console_audit,
    ),
]


class BenchError(RuntimeError):
    """The benchmark could not be set up; the message says which step and why."""


# --- what is measured ------------------------------------------------------------------------


def platform_token(ctx: Context, client_id: str, secret: str) -> str:
    basic = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
    data = ctx.call(
        "tenants",
        "POST",
        "/v1/oauth/token",
        body=b"grant_type=client_credentials",
        headers={"Authorization": f"Basic {basic}", "Content-Type": "application/x-www-form-urlencoded"},
        expect=(200,),
    )
    return str(data["access_token"])


def create_tenant(ctx: Context) -> str:
    body = {"slug": f"bench-{secrets.token_hex(4)}", "name": "Bench"}
    data = ctx.call(
        "tenants",
        "POST",
        "/v1/tenants",
        body=json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {ctx.vars['token']}", "Content-Type": "application/json"},
        expect=(201,),
    )
    return str(data["id"])


def check_once(target: Target) -> bool:
    """One request before the load (one that fails outright is not worth measuring).

    Returns whether the server closes the connection after the response, which makes every
    request under load pay for a TCP connect and accept.
    """
    parts = urlsplit(target.url)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port or 80, timeout=SETUP_TIMEOUT_S)
    try:
        conn.request(target.method, target.path, body=target.body, headers=target.headers)
        resp = conn.getresponse()
        data = resp.read()
    finally:
        conn.close()
    if not 200 <= resp.status < 300:
        raise BenchError(f"{target.method} {target.url} answered {resp.status}: {data[:300].decode(errors='replace')}")
    return (resp.getheader("Connection") or "").lower() == "close"


def verdict(s: Scenario, r: LoadResult, baseline: LoadResult) -> tuple[float, str]:
    """The ratio to the baseline's rate, and PASS, or MISS with what was missed."""
    ratio = r.rps / baseline.rps if baseline.rps else 0.0
    targets = (s.target_ratio, s.target_p99_ms, s.target_p99_ratio, s.target_cpu_ratio)
    if all(t is None for t in targets):
        return ratio, "-"
    missed = []
    if s.target_ratio is not None and ratio < s.target_ratio:
        missed.append("rate")
    if s.target_p99_ms is not None and r.p99_ms >= s.target_p99_ms:
        missed.append("p99")
    if s.target_p99_ratio is not None and r.p99_ms > s.target_p99_ratio * baseline.p99_ms:
        missed.append("p99 ratio")
    if s.target_cpu_ratio is not None:
        times = cpu_ratio(r, baseline)
        if times is None or times > s.target_cpu_ratio:
            missed.append("cpu" if times is not None else "no cpu figures")
    if r.errors or not r.requests:
        missed.append("errors" if r.errors else "no requests")
    return ratio, f"MISS ({', '.join(missed)})" if missed else "PASS"


def cpu_ratio(r: LoadResult, baseline: LoadResult) -> float | None:
    """Server CPU per request as a multiple of hello-world's (None without /proc figures)."""
    mine, base = r.cpu_us.get(cpu.SERVER), baseline.cpu_us.get(cpu.SERVER)
    return mine / base if mine and base else None


# --- processes -------------------------------------------------------------------------------


@contextlib.contextmanager
def hello_world(logs: Path) -> Iterator[str]:
    """The baseline app under uWSGI on a free port, started the way services are."""
    from aerie.local.redis_server import free_port
    from aerie.testing.process import UwsgiService

    service = UwsgiService(BENCH / "hello", free_port(), {}, log_path=logs / "hello.log")
    service.start(timeout=30)
    try:
        yield service.url
    finally:
        service.stop()


STACK_VARIABLES = ("AERIE_TENANTS_URL", "AERIE_BOOTSTRAP_CLIENT_ID", "AERIE_BOOTSTRAP_CLIENT_SECRET")


def external_stack() -> bool:
    """Whether the environment names a running stack (then the run starts only hello-world)."""
    return all(os.environ.get(k) for k in STACK_VARIABLES)


@contextlib.contextmanager
def aerie_stack(
    services: list[str], state_dir: Path, echo: Callable[[str], None], *, redis_cluster: bool = False
) -> Iterator[dict[str, str]]:
    """A running stack's variables: the caller's, when it names one, else a stack of our own
    (on a local Redis Cluster of three masters and three replicas with ``redis_cluster``)."""
    if external_stack():
        echo(f"stack: using the running one at {os.environ['AERIE_TENANTS_URL']} (from the environment)")
        yield {k: v for k, v in os.environ.items() if k.startswith("AERIE_")}
        return
    from aerie.local.redis_cluster import free_cluster_ports
    from aerie.local.redis_server import free_port
    from aerie.local.stack import KNOWN_SERVICES, LocalStack, discover_services, service_order

    # One tenant makes every request of a scenario, thousands a second: its plan's limit
    # would answer most of them 429. A limit that high still runs the limiter on every
    # request (and leases from Redis now and then), so its cost is in the figures.
    os.environ.setdefault("AERIE_RATE_LIMITS", json.dumps(dict.fromkeys(("free", "team", "enterprise"), 10**9)))

    available = discover_services(REPO)
    missing = [s for s in services if s not in available]
    if missing:
        raise BenchError(f"services/{missing[0]} has no uwsgi.ini yet, so the stack cannot run it")
    # Only what the scenarios need (tenants always: it issues the tokens), on free ports,
    # so the other services' background work does not share the two cores with the load.
    names = service_order(list(dict.fromkeys([*KNOWN_SERVICES, *available])))
    ports = {n: free_port() for n in names}
    stack = LocalStack(
        REPO,
        state_dir,
        services=service_order(list(dict.fromkeys(["tenants", *services]))),
        ports=ports,
        redis_port=free_cluster_ports(6, avoid=set(ports.values())) if redis_cluster else free_port(),
        redis_cluster=redis_cluster,
        echo=echo,
    )
    redis = "a Redis Cluster (3 masters, 3 replicas)" if redis_cluster else "Redis"
    echo(f"stack: starting {', '.join(stack.services)} and {redis} on free ports")
    with stack:
        yield stack.env()


def respawns(log: Path) -> int:
    """How often uWSGI has replaced a worker so far (``max-requests``, or a crash), from its log."""
    if not log.exists():
        return 0
    return log.read_text(errors="replace").count("Respawned uWSGI worker")


# --- output ----------------------------------------------------------------------------------


def table(rows: list[dict[str, Any]]) -> str:
    head = ["scenario", "req/s", "p50 ms", "p99 ms", "max ms", "errors", "ratio", "target", "result"]
    body = [
        [
            r["scenario"],
            f"{r['rps']:.0f}",
            f"{r['p50_ms']:.2f}",
            f"{r['p99_ms']:.2f}",
            f"{r['max_ms']:.1f}",
            str(r["errors"]),
            f"{r['ratio']:.1%}",
            r["target"],
            r["result"],
        ]
        for r in rows
    ]
    widths = [max(len(x) for x in col) for col in zip(head, *body, strict=True)]
    line = "  ".join(f"{{:{'<' if i == 0 else '>'}{w}}}" for i, w in enumerate(widths))
    out = [line.format(*head), line.format(*("-" * w for w in widths))]
    out += [line.format(*b) for b in body]
    return "\n".join(out)


def uwsgi_version() -> str:
    exe = Path(sys.executable).parent / "uwsgi"
    try:
        return subprocess.run(
            [str(exe) if exe.exists() else "uwsgi", "--version"], capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True, timeout=5, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.stdout.strip()


# --- main ------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    names = [s.name for s in SCENARIOS]
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--duration", type=float, default=10.0, help="seconds measured per scenario (default 10)")
    p.add_argument("--warmup", type=float, default=2.0, help="seconds of unmeasured load first (default 2)")
    p.add_argument("--connections", type=int, default=32, help="concurrent connections (default 32)")
    p.add_argument("--scenario", action="append", choices=names, help=f"repeatable; default all: {', '.join(names)}")
    p.add_argument("--tool", choices=("auto", "wrk", "python"), default="auto", help="default: wrk if on PATH")
    p.add_argument("--processes", type=int, default=None, help="processes of the Python generator (default: cores)")
    p.add_argument("--pause", type=float, default=1.0, help="idle seconds between runs, to let the machine settle")
    p.add_argument("--results-dir", type=Path, default=BENCH / "results")
    p.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    p.add_argument(
        "--overhead",
        action="store_true",
        help=f"every scenario without request metrics and rate limits, then with; each keeps {OVERHEAD_RATIO:.0%}",
    )
    p.add_argument(
        "--redis-cluster",
        action="store_true",
        help=f"every scenario on one Redis, then on a local Redis Cluster; each keeps {CLUSTER_RATIO:.0%} of its rate",
    )
    return p.parse_args(argv)


def measure(
    args: argparse.Namespace,
    chosen: list[Scenario],
    tool: str,
    logs_out: Path,
    echo: Callable[[str], None],
    *,
    redis_cluster: bool = False,
) -> tuple[list[Scenario], dict[str, LoadResult]]:
    """Start what is needed, set up, run the baseline and every scenario, stop everything.

    The uWSGI logs of what it started are copied to ``logs_out`` once everything has stopped.
    """
    with tempfile.TemporaryDirectory(prefix="aerie-bench-") as tmp:
        state = Path(tmp) / "stack"
        try:
            services = [name for s in chosen for name in (s.service, *s.needs)]
            with (
                hello_world(Path(tmp)) as hello_url,
                aerie_stack(services, state, echo, redis_cluster=redis_cluster) as env,
            ):
                logs = {HELLO: Path(tmp) / "hello.log", **{p.stem: p for p in (state / "logs").glob("*.log")}}
                echo(f"hello-world: {hello_url} (bench/hello/uwsgi.ini, shared/uwsgi/base.ini)")
                return _measure(args, chosen, tool, hello_url, env, logs, echo)
        finally:
            found = [Path(tmp) / "hello.log", *sorted((state / "logs").glob("*.log*"))]
            if any(p.exists() for p in found):
                logs_out.mkdir(parents=True, exist_ok=True)
                for path in found:
                    if path.exists():
                        shutil.copyfile(path, logs_out / path.name)


def _measure(
    args: argparse.Namespace,
    chosen: list[Scenario],
    tool: str,
    hello_url: str,
    env: Mapping[str, str],
    logs: Mapping[str, Path],
    echo: Callable[[str], None],
) -> tuple[list[Scenario], dict[str, LoadResult]]:
    urls = {
        k[len("AERIE_") : -len("_URL")].lower(): v.rstrip("/")
        for k, v in env.items()
        if k.startswith("AERIE_") and k.endswith("_URL")
    }
    ctx = Context({**urls, HELLO: hello_url})
    boot_id, boot_secret = env["AERIE_BOOTSTRAP_CLIENT_ID"], env["AERIE_BOOTSTRAP_CLIENT_SECRET"]
    ctx.vars["token"] = platform_token(ctx, boot_id, boot_secret)
    ctx.vars["tenant_id"] = create_tenant(ctx)
    echo(f"setup: platform token, tenant {ctx.vars['tenant_id']}")
    try:
        return _run_scenarios(args, chosen, tool, ctx, logs, echo)
    finally:
        # A running stack (from the environment) keeps its data: leave no bench tenant behind.
        with contextlib.suppress(RuntimeError):
            ctx.call(
                "tenants",
                "DELETE",
                f"/v1/tenants/{ctx.vars['tenant_id']}",
                expect=(204, 404),
                headers={"Authorization": f"Bearer {ctx.vars['token']}"},
            )


def _run_scenarios(
    args: argparse.Namespace,
    chosen: list[Scenario],
    tool: str,
    ctx: Context,
    logs: Mapping[str, Path],
    echo: Callable[[str], None],
) -> tuple[list[Scenario], dict[str, LoadResult]]:
    for s in chosen:
        if s.setup is not None:
            ctx.vars.update(s.setup(ctx))
    plan = [BASELINE, *chosen]
    targets = {s.name: s.target(ctx) for s in plan}
    closing = [s.name for s in plan if check_once(targets[s.name])]
    if closing:
        echo(
            f"note: {', '.join(closing)} answer(s) with Connection: close (uWSGI http-socket), so every "
            "request under load opens a new TCP connection; both sides of the ratio pay it"
        )
    results: dict[str, LoadResult] = {}
    for i, s in enumerate(plan):
        if i:
            time.sleep(args.pause)
        echo(f"running {s.name}: {s.method} {targets[s.name].url} ...")
        log = logs.get(s.service)
        before = respawns(log) if log else 0
        cpu_before = cpu.snapshot()
        r = run_load(
            targets[s.name],
            connections=args.connections,
            duration=args.duration,
            warmup=args.warmup,
            tool=tool,
            processes=args.processes,
        )
        # The servers this run started, when it started the stack: not another stack's beside it.
        servers = cpu.descendants(os.getpid()) if not external_stack() else None
        r.cpu_us = cpu.per_request(cpu_before, cpu.snapshot(), r.rps * (args.warmup + args.duration), servers=servers)
        if log and (n := respawns(log) - before):
            r.notes.append(f"uWSGI replaced {n} worker(s) during warm-up and measurement (max-requests, or a crash)")
        results[s.name] = r
    return plan, results


def report(
    args: argparse.Namespace,
    tool: str,
    started: datetime,
    plan: list[Scenario],
    results: dict[str, LoadResult],
    echo: Callable[[str], None],
) -> list[dict[str, Any]]:
    baseline = results[BASELINE.name]
    rows: list[dict[str, Any]] = []
    for s in plan:
        r = results[s.name]
        ratio, result = verdict(s, r, baseline)
        rows.append(
            {
                "scenario": s.name,
                "method": s.method,
                "path": s.path,
                "rps": r.rps,
                "p50_ms": r.p50_ms,
                "p99_ms": r.p99_ms,
                "max_ms": r.max_ms,
                "errors": r.errors,
                "requests": r.requests,
                "ratio": ratio,
                "target": "baseline" if s is BASELINE else s.describe_target(),
                "result": result,
                "target_ratio": s.target_ratio,
                "target_p99_ms": s.target_p99_ms,
                "cpu_us_per_request": r.cpu_us,
                "target_cpu_ratio": s.target_cpu_ratio,
                "cpu_ratio": cpu_ratio(r, baseline),
            }
        )
    echo("")
    echo(table(rows))
    if baseline.cpu_us.get("machine"):
        echo("\nCPU per request, in microseconds (bench/cpu.py; warm-up and window, at the window's rate):")
        for s in plan:
            used = results[s.name].cpu_us
            if used:
                parts = ", ".join(f"{group} {us:.0f}" for group, us in used.items())
                times = used["machine"] / baseline.cpu_us["machine"]
                server = cpu_ratio(results[s.name], baseline)
                also = f", {server:.1f}x its server time" if server is not None else ""
                echo(f"  {s.name:16s} {parts}  ({times:.1f}x hello-world's machine time{also})")
    echo(
        f"\nload generator: {tool}. Ratios are to hello-world measured in this run; "
        "on a shared 2-core machine expect run-to-run noise of 10-20%."
    )
    if tool == "python":
        echo(
            "  the Python generator shares the two cores and may not saturate hello-world: "
            "the ratio then reads high (install wrk for a truer baseline)"
        )
    for s in plan:
        for note in results[s.name].notes:
            echo(f"  {s.name}: {note}")
        if results[s.name].error_samples:
            echo(f"  {s.name}: errors such as {results[s.name].error_samples[:3]}")

    args.results_dir.mkdir(parents=True, exist_ok=True)
    out = args.results_dir / f"{started:%Y%m%dT%H%M%SZ}.json"
    out.write_text(
        json.dumps(
            {
                "started": started.isoformat(),
                "tool": tool,
                "settings": {
                    "connections": args.connections,
                    "duration_s": args.duration,
                    "warmup_s": args.warmup,
                    "uwsgi_ini": "shared/uwsgi/base.ini",
                },
                "machine": {
                    "cpus": os.cpu_count(),
                    "python": platform.python_version(),
                    "platform": platform.platform(),
                    "uwsgi": uwsgi_version(),
                    "loadavg": os.getloadavg(),
                },
                "commit": git_commit(),
                "rows": rows,
                "raw": {s.name: results[s.name].as_dict() for s in plan},
            },
            indent=2,
        )
        + "\n"
    )
    shown = out.relative_to(REPO) if out.is_relative_to(REPO) else out
    echo(f"results: {shown} (uWSGI logs beside it in {shown.stem}-logs/)")
    return rows


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    chosen = [s for s in SCENARIOS if not args.scenario or s.name in args.scenario]
    try:
        tool = choose_tool(args.tool)
    except RuntimeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    why = {"auto": "on PATH" if tool == "wrk" else "wrk is not on PATH"}.get(args.tool, "asked for")

    def echo(msg: str) -> None:
        print(msg, flush=True)

    echo(
        f"load generator: {tool} ({why}); {args.connections} connections, "
        f"{args.warmup:g}s warm-up + {args.duration:g}s measured per scenario, 127.0.0.1 only"
    )
    started = datetime.now(UTC)
    logs_out = args.results_dir / f"{started:%Y%m%dT%H%M%SZ}-logs"
    try:
        bare: dict[str, LoadResult] = {}
        if args.overhead:
            echo("first without request metrics and rate limits:")
            with environment(WITHOUT_METRICS_AND_LIMITS):
                _plan, bare = measure(args, chosen, tool, logs_out.with_name(logs_out.name + "-bare"), echo)
            echo("\nthen with them, as deployed:")
        plan, results = measure(args, chosen, tool, logs_out, echo)
        if args.redis_cluster:
            echo("\nthe same scenarios on a Redis Cluster:")
            _plan, on_cluster = measure(
                args, chosen, tool, logs_out.with_name(logs_out.name + "-cluster"), echo, redis_cluster=True
            )
    except RuntimeError as exc:  # BenchError, the stack's StackError, a load generator that failed
        print(f"error: {exc}", file=sys.stderr)
        return 2
    rows = report(args, tool, started, plan, results, echo)
    missed = [r["scenario"] for r in rows if r["result"].startswith("MISS")]
    if args.overhead:
        echo("\nwithout request metrics and rate limits:")
        report(args, tool, started, plan, bare, echo)
        echo("\nwith request metrics and rate limits, against without:")
        missed += compare(plan, bare, results, OVERHEAD_RATIO, ("without", "with"), echo)
    if args.redis_cluster:
        echo("\non the Redis Cluster:")
        cluster_rows = report(args, tool, started, plan, on_cluster, echo)
        missed += [r["scenario"] for r in cluster_rows if r["result"].startswith("MISS")]
        missed += compare_cluster(plan, results, on_cluster, echo)
    return 1 if args.strict and missed else 0


#: The share of its single-node rate each scenario keeps on a local cluster, at least: on one
#: machine a cluster cannot be faster (more processes share the cores), only not much slower.
CLUSTER_RATIO = 0.8
#: The share of its rate without request metrics and rate limits that each scenario keeps with
#: them (the production configuration), at least.
OVERHEAD_RATIO = 0.9
#: What ``--overhead`` turns off for its second stack: every plan unlimited (no limiter runs)
#: and no per-request metrics (aerie.app.REQUEST_METRICS).
WITHOUT_METRICS_AND_LIMITS = {
    "AERIE_RATE_LIMITS": json.dumps(dict.fromkeys(("free", "team", "enterprise"))),
    "AERIE_REQUEST_METRICS": "off",
}


def compare_cluster(
    plan: list[Scenario], single: dict[str, LoadResult], cluster: dict[str, LoadResult], echo: Callable[[str], None]
) -> list[str]:
    """Each scenario's cluster rate against its single-node rate, both against their own
    hello-world baseline of the same run (so a busier machine during one half cancels out)."""
    return compare(plan, single, cluster, CLUSTER_RATIO, ("single", "cluster"), echo)


def compare(
    plan: list[Scenario],
    reference: dict[str, LoadResult],
    measured: dict[str, LoadResult],
    bound: float,
    names: tuple[str, str],
    echo: Callable[[str], None],
) -> list[str]:
    """Each scenario's rate in ``measured`` as a share of its rate in ``reference``, each first
    taken against its own hello-world run; the scenarios keeping less than ``bound``."""
    missed = []
    echo(f"\n{'scenario':<24}{names[0]:>10}{names[1]:>10}{'kept':>8}  target")
    for s in plan:
        if s is BASELINE:
            continue
        one = reference[s.name].rps / reference[BASELINE.name].rps
        other = measured[s.name].rps / measured[BASELINE.name].rps
        kept = other / one if one else 0.0
        verdict = "PASS" if kept >= bound else "MISS"
        if verdict == "MISS":
            missed.append(s.name)
        echo(
            f"{s.name:<24}{reference[s.name].rps:>10.0f}{measured[s.name].rps:>10.0f}{kept:>8.1%}"
            f"  >={bound:.0%} {verdict}"
        )
    return missed


@contextlib.contextmanager
def environment(values: dict[str, str]) -> Iterator[None]:
    """``values`` in this process's environment (which the stack's services inherit), then as before."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


if __name__ == "__main__":
    sys.exit(main())
