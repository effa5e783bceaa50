"""aerie.tracing: off unless configured (nothing imported), and on, an app's spans and its
events' ``traceparent`` reach an OTLP receiver. Each case runs in a process of its own:
instrumenting replaces ``falcon.App`` and sets the process's tracer provider for good."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from aerie.config import ConfigError, Settings
from aerie.testing.otlp import ExportedSpan, OtlpReceiver
from aerie.tracing import _headers, init_tracing

APP = textwrap.dedent(
    """
    import json, sys
    import falcon, falcon.testing
    from aerie.app import Infrastructure, create_service_app
    from aerie.auth.tokens import StaticKeySource
    from aerie.config import Settings
    from aerie.endpoints import PUBLIC, endpoint
    from aerie.events import EventContext, new_event
    from aerie.testing.keys import TestKey

    events = []

    class Made:
        @endpoint("make", scopes=PUBLIC)
        def on_post(self, req, resp):
            events.append(new_event("thing.made", None, {}, EventContext.from_request(req)))
            resp.status = 201
            resp.media = {"ok": True}

    env = json.loads(sys.argv[1])
    settings = Settings.from_env("demo", {"REDIS_URL": "redis://127.0.0.1:1", "AERIE_ISSUER": "http://i", **env})
    infra = Infrastructure.from_settings(settings, keys=StaticKeySource({"keys": [TestKey("k1").public_jwk()]}))
    app = create_service_app(infra, [("/made", Made())])
    client = falcon.testing.TestClient(app)
    r = client.simulate_post("/made", headers={"traceparent": sys.argv[2]} if len(sys.argv) > 2 else {})
    client.simulate_get("/health")
    if infra.settings.extra.get("AERIE_OTLP_ENDPOINT"):
        from opentelemetry import trace
        trace.get_tracer_provider().force_flush()
    print(json.dumps({
        "status": r.status_code,
        "event": events[0],
        "otel_imported": sorted(
            m for m in sys.modules
            if m.startswith(("opentelemetry.sdk.trace", "opentelemetry.instrumentation", "opentelemetry.exporter"))
        ),
    }))
    """
)


def _run(env: dict[str, str], *args: str) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", APP, json.dumps(env), *args], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_without_an_endpoint_no_tracer_is_imported_and_events_carry_no_traceparent() -> None:
    out = _run({}, "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
    assert out["status"] == 201
    assert out["otel_imported"] == []
    assert "traceparent" not in out["event"]


def test_with_an_endpoint_the_request_span_joins_the_callers_trace_and_its_event_carries_it() -> None:
    trace_id, caller = "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331"
    with OtlpReceiver() as receiver:
        out = _run({"AERIE_OTLP_ENDPOINT": receiver.url}, f"00-{trace_id}-{caller}-01")
        # An int status (the services set them) is answered as it is, not failed by the instrumentation.
        assert out["status"] == 201
        spans = receiver.wait_for(lambda s: [x for x in s if x.kind == ExportedSpan.SERVER], timeout=10)
    [server] = spans
    assert (server.service, server.name, server.trace_id, server.parent_span_id) == (
        "aerie-demo",
        "POST /made",
        trace_id,
        caller,
    )
    assert server.attributes.get("http.status_code", server.attributes.get("http.response.status_code")) == 201
    assert out["event"]["traceparent"] == f"00-{trace_id}-{server.span_id}-01"
    # /health is not traced: probes every few seconds would bury the traces that matter.
    assert [s.name for s in spans] == ["POST /made"]


def test_opentelemetry_sdk_disabled_wins_over_an_endpoint() -> None:
    env = {"REDIS_URL": "redis://x", "AERIE_ISSUER": "http://i", "AERIE_OTLP_ENDPOINT": "http://collector:4318"}
    settings = Settings.from_env("demo", env)
    assert init_tracing(settings, {"OTEL_SDK_DISABLED": "true"}) is False


@pytest.mark.parametrize(
    ("raw", "parsed"),
    [
        ("", {}),
        ("Authorization=Bearer%20abc", {"authorization": "Bearer abc"}),
        ("a=1, b = x%3Dy ,", {"a": "1", "b": "x=y"}),
    ],
)
def test_headers_are_read_as_opentelemetry_spells_them(raw: str, parsed: dict[str, str]) -> None:
    assert _headers(raw) == parsed


@pytest.mark.parametrize("raw", ["novalue", "=x", "a=1,b"])
def test_malformed_headers_stop_start_up_with_the_setting_named(raw: str) -> None:
    with pytest.raises(ConfigError, match="AERIE_OTLP_HEADERS"):
        _headers(raw)
