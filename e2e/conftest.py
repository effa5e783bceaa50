"""End-to-end journeys against a running Aerie: local, or staging after a deploy.

The suite reads only the ``AERIE_*`` variables of docs/api.md ("Running it"). With none set it
starts an isolated local stack on free ports and stops it afterwards. Everything a run
creates is removed again, newest first, even when a test fails, so it can run against a
shared staging space again and again.

What a run prints, for whoever reads a failed deploy's log: the environment it tested (the
URLs, and whether it started a local stack), one line per journey with its result, and for
a failed journey the call it failed at (service, request id, status, response body), with
the calls before it in the test's report.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

REPO = Path(__file__).resolve().parents[1]
SERVICES = ("tenants", "projects", "flags", "audit")
#: What a cleanup call may answer: done, or already gone (a journey deleted it itself).
CLEANED = {200, 202, 204, 404, 409}
#: Never printed in a report.
SECRET_FIELDS = {"access_token", "client_secret", "refresh_token"}
_ENVIRONMENT = pytest.StashKey[str]()
_JOURNEYS = pytest.StashKey[list[tuple[str, str, str]]]()


def _configured() -> dict[str, str] | None:
    env = {k: v for k, v in os.environ.items() if k.startswith("AERIE_")}
    needed = ("AERIE_TENANTS_URL", "AERIE_BOOTSTRAP_CLIENT_ID", "AERIE_BOOTSTRAP_CLIENT_SECRET")
    return env if all(env.get(k) for k in needed) else None


def _urls(env: dict[str, str]) -> str:
    return ", ".join(f"{s}={env.get(f'AERIE_{s.upper()}_URL') or '-'}" for s in SERVICES)


@pytest.fixture(scope="session")
def stack_env(pytestconfig: pytest.Config) -> Iterator[dict[str, str]]:
    configured = _configured()
    if configured is not None:
        pytestconfig.stash[_ENVIRONMENT] = f"the AERIE_* variables: {_urls(configured)}"
        yield configured
        return
    from aerie.local.stack import LocalStack

    with tempfile.TemporaryDirectory(prefix="aerie-e2e-") as state:
        # AERIE_E2E_REDIS_CLUSTER=1 (tox -e cluster): the stack runs on a local Redis Cluster.
        cluster = os.environ.get("AERIE_E2E_REDIS_CLUSTER") == "1"
        stack = LocalStack.isolated(REPO, Path(state), redis_cluster=cluster)
        with stack:
            env = stack.env()
            redis = "a Redis Cluster" if cluster else "one Redis"
            described = f"a local stack on {redis} started for this run ({', '.join(stack.services)}): {_urls(env)}"
            pytestconfig.stash[_ENVIRONMENT] = described
            reporter = pytestconfig.pluginmanager.get_plugin("terminalreporter")
            capture = pytestconfig.pluginmanager.get_plugin("capturemanager")
            if reporter is not None:
                with capture.global_and_fixture_disabled() if capture is not None else contextlib.nullcontext():
                    reporter.write_line(f"\naerie e2e: testing {described}")
            yield env


@pytest.fixture
def own_stack(stack_env: dict[str, str]) -> dict[str, str]:
    """``stack_env``, for a test that must not run on a stack others use: skipped against AERIE_* URLs.

    Journeys name what they make after the run, so they can share a staging; a test that
    creates fixed names (the README's tenant ``acme``, its platform-wide flag
    ``new-dashboard``) would fail on a second run there, or replace someone's flag.
    """
    if _configured() is not None:
        pytest.skip("makes fixed, platform-wide names: runs only against a local stack this run starts")
    return stack_env


@dataclass
class Call:
    """One HTTP call a journey made, as a failure report shows it."""

    method: str
    service: str
    path: str
    status: int | None
    request_id: str | None
    body: str

    def __str__(self) -> str:
        status = self.status if self.status is not None else "no answer"
        return f"{self.method} {self.service} {self.path} -> {status} request_id={self.request_id} body={self.body}"


def _redacted(r: requests.Response) -> str:
    """The start of a response body for the report, with tokens and client secrets masked (CI logs are read widely)."""
    try:
        body = r.json()
    except ValueError:
        return r.text[:300]
    if isinstance(body, dict) and SECRET_FIELDS & body.keys():
        body = {k: "***" if k in SECRET_FIELDS else v for k, v in body.items()}
    return json.dumps(body, separators=(",", ":"))[:300]


class Aerie:
    """The suite as a customer sees it: URLs, the bootstrap client, and cleanup."""

    def __init__(self, env: dict[str, str], run_id: str) -> None:
        self.env = env
        self.run_id = run_id
        self.http = requests.Session()
        self.calls: list[Call] = []
        self._cleanup: list[tuple[str, Callable[[], object]]] = []
        self.admin_token = self.token(env["AERIE_BOOTSTRAP_CLIENT_ID"], env["AERIE_BOOTSTRAP_CLIENT_SECRET"])

    def url(self, service: str) -> str:
        value = self.env.get(f"AERIE_{service.upper()}_URL")
        if not value:
            pytest.skip(f"AERIE_{service.upper()}_URL is not set")
        return value.rstrip("/")

    def call(
        self,
        method: str,
        service: str,
        path: str,
        *,
        token: str | None = None,
        json: Any = None,
        headers: dict[str, str] | None = None,
        **kw: Any,
    ) -> requests.Response:
        sent_id = f"e2e-{self.run_id}-{uuid.uuid4().hex[:8]}"
        all_headers = {"X-Request-ID": sent_id, **(headers or {})}
        if token:
            all_headers["Authorization"] = f"Bearer {token}"
        # A journey is a tenant's client like any other: over its plan's rate limit (429), it
        # waits the Retry-After it is given and asks again, as the contract asks clients to.
        for _attempt in range(5):
            try:
                url = self.url(service) + path
                r = self.http.request(method, url, json=json, headers=all_headers, timeout=10, **kw)
            except requests.RequestException as exc:
                self.calls.append(Call(method, service, path, None, sent_id, f"{type(exc).__name__}: {exc}"[:300]))
                raise
            if r.status_code != 429 or path == "/v1/oauth/token":
                break
            self.calls.append(Call(method, service, path, 429, r.headers.get("X-Request-ID"), "(rate limited)"))
            time.sleep(float(r.headers.get("Retry-After", "1")))
        body = "(stream)" if kw.get("stream") else _redacted(r)
        self.calls.append(Call(method, service, path, r.status_code, r.headers.get("X-Request-ID"), body))
        return r

    def token(self, client_id: str, secret: str, **form: str) -> str:
        r = self.call(
            "POST",
            "tenants",
            "/v1/oauth/token",
            data={"grant_type": "client_credentials", **form},
            auth=(client_id, secret),
        )
        assert r.status_code == 200, f"token for {client_id}: {r.status_code} {r.text[:300]}"
        return r.json()["access_token"]

    def on_cleanup(self, what: str, action: Callable[[], object]) -> None:
        self._cleanup.append((what, action))

    def cleanup(self) -> list[str]:
        """Undo what the test made, newest first; what could not be undone, described."""
        failures = []
        for what, action in reversed(self._cleanup):
            try:
                result = action()
            except Exception as exc:
                failures.append(f"{what}: {exc}")
                continue
            if isinstance(result, requests.Response) and result.status_code not in CLEANED:
                failures.append(f"{what}: {result.status_code} {result.text[:200]}")
        self._cleanup.clear()
        return failures

    def create_tenant(self, **fields: Any) -> dict[str, Any]:
        slug = f"e2e-{self.run_id}-{uuid.uuid4().hex[:6]}"
        body = {"slug": slug, "name": f"E2E {slug}", **fields}
        r = self.call("POST", "tenants", "/v1/tenants", token=self.admin_token, json=body)
        assert r.status_code == 201, r.text
        tenant = r.json()
        self.on_cleanup(
            f"tenant {tenant['id']}",
            lambda: self.call("DELETE", "tenants", f"/v1/tenants/{tenant['id']}", token=self.admin_token),
        )
        return tenant

    def create_client(self, tenant_id: str, scopes: list[str]) -> dict[str, Any]:
        r = self.call(
            "POST",
            "tenants",
            f"/v1/tenants/{tenant_id}/clients",
            token=self.admin_token,
            json={"name": f"e2e-{self.run_id}", "scopes": scopes},
        )
        assert r.status_code == 201, r.text
        client = r.json()
        self.on_cleanup(
            f"client {client['client_id']}",
            lambda: self.call(
                "DELETE", "tenants", f"/v1/tenants/{tenant_id}/clients/{client['client_id']}", token=self.admin_token
            ),
        )
        return client

    def tenant_with_token(self, scopes: list[str], **fields: Any) -> tuple[dict[str, Any], str]:
        """A new tenant and a token of a client of its own with ``scopes``."""
        tenant = self.create_tenant(**fields)
        client = self.create_client(tenant["id"], scopes)
        return tenant, self.token(client["client_id"], client["client_secret"])

    def platform_token_for(self, tenant_id: str) -> str:
        """A token of the bootstrap (platform) client bound to ``tenant_id``: it acts as the tenant
        without being one of its clients, so deleting the tenant does not revoke it, and an
        offboarding journey can look at what every service still holds for the deleted tenant."""
        return self.token(
            self.env["AERIE_BOOTSTRAP_CLIENT_ID"], self.env["AERIE_BOOTSTRAP_CLIENT_SECRET"], tenant_id=tenant_id
        )

    def create_flag(self, name: str, **fields: Any) -> dict[str, Any]:
        """A flag definition keyed ``e2e-<run>-<name>``, deleted at cleanup.

        Definitions are global (platform:admin), and a shared staging holds other runs' and
        real flags, so the key is unique to the run and the run removes exactly its own.
        """
        key = f"e2e-{self.run_id}-{name}"
        r = self.call("PUT", "flags", f"/v1/flags/{key}", token=self.admin_token, json=fields)
        assert r.status_code == 201, r.text
        self.on_cleanup(f"flag {key}", lambda: self.call("DELETE", "flags", f"/v1/flags/{key}", token=self.admin_token))
        return r.json()

    def audit_trail(self, token: str, **params: str) -> list[dict[str, Any]]:
        """A whole audit trail, oldest first: the NDJSON export is in chain order and unpaged.

        Audit entries are append-only: a run's entries stay (that is the point of the trail),
        so nothing here is registered for cleanup.
        """
        r = self.call("GET", "audit", "/v1/audit/export", token=token, params={"format": "ndjson", **params})
        assert r.status_code == 200, r.text[:300]
        return [json.loads(line) for line in r.text.splitlines() if line.strip()]

    @staticmethod
    def first_broken_link(entries: list[dict[str, Any]]) -> int | None:
        """The seq of the first entry whose hash chain link does not hold, or None.

        Recomputed here as docs/api.md defines it, not taken from ``/v1/audit/verify``: a customer
        checking their export must not have to trust the service that wrote it. A trail that
        retention trimmed starts from its oldest kept entry's ``prev_hash``.
        """
        prev = "0" * 64 if not entries or entries[0]["seq"] == 1 else entries[0]["prev_hash"]
        for entry in entries:
            body = {k: v for k, v in entry.items() if k != "hash"}
            canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
            if entry["prev_hash"] != prev or hashlib.sha256((prev + canonical).encode()).hexdigest() != entry["hash"]:
                return int(entry["seq"])
            prev = entry["hash"]
        return None

    def eventually(
        self,
        check: Callable[[], bool],
        within: float,
        what: str,
        interval: float = 0.05,
        detail: Callable[[], object] | None = None,
    ) -> None:
        """Poll ``check`` until it holds; fail naming ``what`` (the last call shows where) after ``within`` s.

        ``detail``, when given, is called on the failure and its result appended (what was still seen).
        """
        deadline = time.monotonic() + within
        while not check():
            if time.monotonic() >= deadline:
                seen = f": {detail()}" if detail is not None else ""
                raise AssertionError(f"{what} did not happen within {within}s{seen}")
            time.sleep(interval)


@pytest.fixture
def aerie(stack_env: dict[str, str], request: pytest.FixtureRequest) -> Iterator[Aerie]:
    handle = Aerie(stack_env, uuid.uuid4().hex[:8])
    request.node.aerie_calls = handle.calls
    yield handle
    failures = handle.cleanup()
    assert not failures, f"cleanup failed: {failures}"


def pytest_report_header(config: pytest.Config) -> list[str]:
    configured = _configured()
    if configured is None:
        return ["aerie e2e: no AERIE_* variables set; an isolated local stack is started for this run"]
    return [f"aerie e2e: testing {_urls(configured)}"]


def pytest_configure(config: pytest.Config) -> None:
    config.stash[_JOURNEYS] = []


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    report = yield
    calls: list[Call] | None = getattr(item, "aerie_calls", None)
    if report.failed and calls:
        title = "aerie calls, oldest first (service, request id, response)"
        report.sections.append((title, "\n".join(map(str, calls[-12:]))))
    journeys = item.config.stash.get(_JOURNEYS, None)
    if journeys is not None and (report.when == "call" or report.outcome != "passed"):
        where = ""
        if report.failed:
            stage = "" if report.when == "call" else f" (in {report.when})"
            crash = getattr(getattr(report.longrepr, "reprcrash", None), "message", "").splitlines()
            why = f" ({crash[0][:200]})" if crash else ""
            where = f"{stage}{why} failed at: {calls[-1]}" if calls else f"{stage}{why} before any call"
        journeys.append((item.nodeid, report.outcome.upper(), where))
    return report


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    journeys = config.stash.get(_JOURNEYS, [])
    if not journeys:
        return
    terminalreporter.section("aerie e2e")
    environment = config.stash.get(_ENVIRONMENT, None) or "(no stack was reached)"
    terminalreporter.write_line(f"environment: {environment}")
    for nodeid, outcome, where in journeys:
        terminalreporter.write_line(f"{outcome:<8} {nodeid}{where}")
