"""Traces under uWSGI, exported by OTLP to a real receiver: one trace from a caller's
``traceparent`` through tenants, its Redis transaction and event, into audit's ingestion, and
from projects into the tenants service it calls."""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import REPO, Http, service_env, tenants_env

from aerie.local.redis_server import RedisServer, free_port
from aerie.testing.keys import TestKey
from aerie.testing.otlp import ExportedSpan, OtlpReceiver
from aerie.testing.process import UwsgiService

pytestmark = [pytest.mark.tenants, pytest.mark.audit, pytest.mark.projects]

#: Spans leave a worker 0.2 s after they end instead of OpenTelemetry's default 5 s.
FAST_EXPORT = {"OTEL_BSP_SCHEDULE_DELAY": "200"}


@pytest.fixture(scope="module")
def receiver() -> Iterator[OtlpReceiver]:
    with OtlpReceiver() as r:
        yield r


def tracing_env(receiver: OtlpReceiver) -> dict[str, str]:
    return {"AERIE_OTLP_ENDPOINT": receiver.url, "AERIE_OTLP_HEADERS": "x-collector-key=k%3D1", **FAST_EXPORT}


@pytest.fixture(scope="module")
def redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis"), password="trace-pass").start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def traced(
    receiver: OtlpReceiver, redis: RedisServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, UwsgiService]]:
    """Tenants and audit, traced, on a Redis of their own (no other test's audit group may
    take their events)."""
    logs = tmp_path_factory.mktemp("logs")
    server = redis
    tracing = tracing_env(receiver)
    port = free_port()
    started: dict[str, UwsgiService] = {}
    try:
        env = {**tenants_env(server, TestKey("trace-k1"), port), **tracing}
        started["tenants"] = UwsgiService(REPO / "services" / "tenants", port, env, log_path=logs / "tenants.log")
        started["tenants"].start()
        env = {**service_env(server, started["tenants"].url), **tracing}
        started["audit"] = UwsgiService(REPO / "services" / "audit", free_port(), env, log_path=logs / "audit.log")
        started["audit"].start()
        yield started
    finally:
        for service in started.values():
            service.stop()


def _caller() -> tuple[str, str, dict[str, str]]:
    trace_id, span_id = secrets.token_hex(16), secrets.token_hex(8)
    return trace_id, span_id, {"traceparent": f"00-{trace_id}-{span_id}-01"}


def _in(trace_id: str, spans: list[ExportedSpan]) -> list[ExportedSpan]:
    return [s for s in spans if s.trace_id == trace_id]


def test_a_tenant_created_is_one_trace_from_the_caller_through_redis_into_audit(
    traced: dict[str, UwsgiService], receiver: OtlpReceiver
) -> None:
    http = Http(traced["tenants"].url)
    admin = http.bearer()
    trace_id, caller_span, headers = _caller()
    r = http.request(
        "POST", "/v1/tenants", json={"slug": f"t-{uuid.uuid4().hex[:12]}", "name": "T"}, headers={**admin, **headers}
    )
    assert r.status_code == 201, r.text

    def ingested(spans: list[ExportedSpan]) -> list[ExportedSpan]:
        return [s for s in _in(trace_id, spans) if s.service == "aerie-audit" and s.kind == ExportedSpan.CONSUMER]

    consumed = receiver.wait_for(ingested)
    spans = _in(trace_id, receiver.spans())
    assert consumed, f"no audit span in the trace; got {[(s.service, s.name) for s in spans]}"
    [server] = [s for s in spans if s.service == "aerie-tenants" and s.kind == ExportedSpan.SERVER]
    assert server.name == "POST /v1/tenants"
    assert server.parent_span_id == caller_span
    assert server.attributes["aerie.request_id"] == r.headers["X-Request-Id"]
    redis_calls = [s for s in spans if s.service == "aerie-tenants" and s.kind == ExportedSpan.CLIENT]
    assert redis_calls and all(s.attributes.get("db.system") == "redis" for s in redis_calls)
    assert {s.parent_span_id for s in redis_calls} == {server.span_id}
    [audit_span] = [s for s in consumed if s.attributes["aerie.event.type"] == "tenant.created"]
    assert audit_span.parent_span_id == server.span_id
    assert audit_span.attributes["messaging.consumer.group.name"] == "audit"
    assert audit_span.attributes["aerie.tenant_id"] == r.json()["id"]
    assert receiver.headers_seen[-1]["x-collector-key"] == "k=1"


def test_a_call_between_services_carries_the_trace(
    traced: dict[str, UwsgiService], receiver: OtlpReceiver, redis: RedisServer, tmp_path: Path
) -> None:
    http = Http(traced["tenants"].url)
    admin = http.bearer()
    r = http.request("POST", "/v1/tenants", json={"slug": f"t-{uuid.uuid4().hex[:12]}", "name": "T"}, headers=admin)
    tenant = r.json()
    r = http.request(
        "POST", f"/v1/tenants/{tenant['id']}/clients", json={"name": "app", "scopes": ["projects:write"]}, headers=admin
    )
    token = http.token(r.json()["client_id"], r.json()["client_secret"])
    # Started after the tenant exists, so its first request asks tenants for it (a running
    # instance would know it already from the tenant.created event).
    env = {**service_env(redis, traced["tenants"].url), **tracing_env(receiver)}
    with UwsgiService(REPO / "services" / "projects", free_port(), env, log_path=tmp_path / "projects.log") as svc:
        trace_id, _, headers = _caller()
        r = Http(svc.url).request(
            "POST", "/v1/projects", json={"name": "p"}, headers={"Authorization": f"Bearer {token}", **headers}
        )
        assert r.status_code == 201, r.text

    def tenants_served(spans: list[ExportedSpan]) -> list[ExportedSpan]:
        return [s for s in _in(trace_id, spans) if s.service == "aerie-tenants" and s.kind == ExportedSpan.SERVER]

    served = receiver.wait_for(tenants_served)
    spans = _in(trace_id, receiver.spans())
    assert served, f"tenants is not in the trace; got {[(s.service, s.name, s.kind) for s in spans]}"
    calls = {s.span_id: s for s in spans if s.service == "aerie-projects" and s.kind == ExportedSpan.CLIENT}
    assert all(s.parent_span_id in calls for s in served)
    # The lookups of the tenant (the write's own, and the rate limit's on its side thread) and
    # the token projects' own client gets first: all calls of this request's trace.
    lookup = "GET /v1/tenants/{tenant_id}"
    lookups = [s for s in served if s.name == lookup]
    assert lookups
    assert {s.name for s in served} <= {lookup, "POST /v1/oauth/token"}
    for s in lookups:
        call = calls[s.parent_span_id].attributes
        assert call.get("url.full", call.get("http.url")) == f"{traced['tenants'].url}/v1/tenants/{tenant['id']}"


def test_probes_and_background_loops_send_no_traces(traced: dict[str, UwsgiService], receiver: OtlpReceiver) -> None:
    http = Http(traced["audit"].url)
    for _ in range(5):
        assert http.request("GET", "/ready").status_code == 200
        assert http.request("GET", "/health").status_code == 200
    probe_spans = receiver.wait_for(
        lambda spans: [s for s in spans if s.name.endswith(("/ready", "/health", "/metrics"))], timeout=1.5
    )
    assert probe_spans == []
    # The consumers block on XREADGROUP every second: none of those reads is a trace of its own.
    roots = [s for s in receiver.spans() if not s.parent_span_id and s.kind == ExportedSpan.CLIENT]
    assert roots == []
