"""Traces with OpenTelemetry: Falcon, redis-py and requests, and the events between services.

Installed with the ``tracing`` extra (``aerie-shared[tracing]`` in a service's
requirements.txt), and off unless an OTLP endpoint is configured, ``AERIE_OTLP_ENDPOINT`` (the environment or a
bound ``aerie-secrets`` service, with ``AERIE_OTLP_HEADERS`` for its credentials) or
OpenTelemetry's own ``OTEL_EXPORTER_OTLP_ENDPOINT`` / ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``.
Off, no tracer, exporter or instrumentation is imported and the hot paths pay one flag
test. (redis-py 8 itself imports OpenTelemetry's metrics API when it is installed, for its
own metrics, which stay off unless configured: about 3 MiB a process, mostly in pages the
uWSGI master shares.)

On, each process (a uWSGI worker or mule, after the fork: ``lazy-apps``) gets:

- a server span per request, named by method and route template, joined to the caller's
  trace by the W3C ``traceparent`` header;
- a client span per Redis command and per outgoing ``requests`` call, which carries
  ``traceparent`` to the service called;
- ``traceparent`` in every event's envelope (:func:`traceparent`), and a consumer span per
  event handled from the stream (:func:`consuming`), a child of the span that published it,
  so a trace goes from the request through Redis into audit's ingestion.

Spans are sampled only where work enters a process (a request, an event) and below:
background loops (the consumer's blocking reads, sweepers, the stream janitor) would
otherwise send a root trace for each Redis command they make, several a second for ever.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from aerie.config import ConfigError, Settings

__all__ = [
    "OTLP_ENDPOINT",
    "OTLP_HEADERS",
    "StatusLine",
    "consuming",
    "consuming_batch",
    "enabled",
    "init_tracing",
    "traceparent",
    "tracing_middleware",
]

log = logging.getLogger(__name__)

OTLP_ENDPOINT = "AERIE_OTLP_ENDPOINT"
OTLP_HEADERS = "AERIE_OTLP_HEADERS"
_STANDARD_ENDPOINTS = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")
#: Probes and scrapes every few seconds from the platform: never traced.
_EXCLUDED_URLS = "^/health$,^/ready$,^/metrics$"

_on = False
_initialised_pid: int | None = None


def enabled() -> bool:
    return _on


def _endpoint(settings: Settings) -> str | None:
    """The traces URL to post to, or None when OpenTelemetry's own variables name it."""
    base = settings.extra.get(OTLP_ENDPOINT, "").strip()
    if base:
        return base if base.rstrip("/").endswith("/v1/traces") else base.rstrip("/") + "/v1/traces"
    return None


def _headers(raw: str) -> dict[str, str]:
    """``k=v,k2=v2`` as OTEL_EXPORTER_OTLP_HEADERS spells them (values URL-encoded)."""
    from urllib.parse import unquote

    out: dict[str, str] = {}
    for part in raw.split(","):
        if not part.strip():
            continue
        name, sep, value = part.partition("=")
        if not sep or not name.strip():
            raise ConfigError(f"{OTLP_HEADERS} must be name=value pairs separated by commas")
        out[name.strip().lower()] = unquote(value.strip())
    return out


def init_tracing(settings: Settings, environ: Mapping[str, str] | None = None) -> bool:
    """Trace this process if an endpoint is configured; whether it does.

    Call before the app is built: the Falcon instrumentation takes effect in ``falcon.App``'s
    constructor. Once per process; a second call (tests build many apps) changes nothing.
    """
    global _on, _initialised_pid
    env = os.environ if environ is None else environ
    endpoint = _endpoint(settings)
    if endpoint is None and not any(env.get(name) for name in _STANDARD_ENDPOINTS):
        return False
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    if _initialised_pid == os.getpid():
        return True
    headers = _headers(settings.extra.get(OTLP_HEADERS, ""))

    try:
        from opentelemetry import trace
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.instrumentation.falcon import FalconInstrumentor
        from opentelemetry.instrumentation.redis import RedisInstrumentor
        from opentelemetry.instrumentation.requests import RequestsInstrumentor
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
        from opentelemetry.sdk.trace.sampling import ParentBased
    except ImportError as exc:
        raise ConfigError(
            f"an OTLP endpoint is configured but tracing is not installed ({exc.name}): "
            "require aerie-shared[tracing] in the service's requirements.txt, then make lock"
        ) from None

    resource = Resource.create(
        {
            "service.name": f"aerie-{settings.service}",
            "service.namespace": "aerie",
            "service.version": settings.version,
            "service.instance.id": f"{settings.service}-{settings.instance_index}-{os.getpid()}",
        }
    )
    provider = TracerProvider(resource=resource, sampler=ParentBased(root=_entry_points()))
    exporter = OTLPSpanExporter(endpoint=endpoint, headers=headers or None)
    provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    # Read by the Falcon instrumentation when an app is made; the operator's value wins.
    os.environ.setdefault("OTEL_PYTHON_FALCON_EXCLUDED_URLS", _EXCLUDED_URLS)
    FalconInstrumentor().instrument(response_hook=_response_hook)
    RedisInstrumentor().instrument()
    RequestsInstrumentor().instrument()
    _on = True
    _initialised_pid = os.getpid()
    log.info("tracing to OTLP", extra={"otlp_endpoint": endpoint or "from OTEL_EXPORTER_OTLP_*"})
    return True


class StatusLine:
    """Falcon middleware: ``resp.status`` as the status line the Falcon instrumentation reads.

    Falcon takes an int (or ``HTTPStatus``) status, and the services set them; the
    instrumentation splits ``resp.status`` as a string in its ``process_response`` and so
    failed every such response with an AttributeError (0.66b1). Middleware's responses are
    processed last to first and the instrumentation's is the first, so this runs before it.
    """

    def process_response(self, req: Any, resp: Any, resource: object, req_succeeded: bool) -> None:
        if not isinstance(resp.status, str):
            import falcon

            resp.status = falcon.code_to_http_status(resp.status)


def tracing_middleware() -> list[object]:
    """What an app's middleware list adds for tracing: nothing when it is off."""
    return [StatusLine()] if _on else []


def _response_hook(span: Any, req: Any, resp: Any) -> None:
    """The request id on the server span, so a trace and the log lines of its request meet."""
    request_id = getattr(req.context, "request_id", None)
    if request_id and span.is_recording():
        span.set_attribute("aerie.request_id", request_id)


def _entry_points() -> Any:
    """A sampler of root spans only where work enters the process: a request or an event."""
    from opentelemetry.sdk.trace.sampling import Decision, Sampler, SamplingResult
    from opentelemetry.trace import SpanKind

    class EntryPoints(Sampler):
        def should_sample(
            self,
            parent_context: Any,
            trace_id: int,
            name: str,
            kind: Any = None,
            attributes: Any = None,
            links: Any = None,
            trace_state: Any = None,
        ) -> SamplingResult:
            if kind in (SpanKind.SERVER, SpanKind.CONSUMER):
                return SamplingResult(Decision.RECORD_AND_SAMPLE, attributes)
            return SamplingResult(Decision.DROP)

        def get_description(self) -> str:
            return "AerieEntryPoints"

    return EntryPoints()


def traceparent() -> str | None:
    """The W3C ``traceparent`` of the current span, for an event's envelope; None when off."""
    if not _on:
        return None
    from opentelemetry import propagate

    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier.get("traceparent")


def _attributes(event: Mapping[str, Any], group: str, stream: str) -> dict[str, Any]:
    return {
        "messaging.system": "redis",
        "messaging.operation.type": "process",
        "messaging.destination.name": stream,
        "messaging.consumer.group.name": group,
        "messaging.message.id": str(event.get("id", "")),
        "aerie.event.type": str(event.get("type", "")),
        "aerie.tenant_id": str(event.get("tenant_id") or ""),
    }


def _parent(event: Mapping[str, Any]) -> Any:
    from opentelemetry import propagate

    value = event.get("traceparent")
    return propagate.extract({"traceparent": value} if isinstance(value, str) else {})


@contextlib.contextmanager
def consuming(event: Mapping[str, Any], group: str, stream: str) -> Iterator[None]:
    """The handling of one event, as a consumer span under the span that published it.

    Current while the handler runs, so what it does (Redis commands, events it publishes in
    turn) belongs to the same trace.
    """
    if not _on:
        yield
        return
    from opentelemetry import trace

    tracer = trace.get_tracer("aerie.events")
    with tracer.start_as_current_span(
        f"{group} process",
        context=_parent(event),
        kind=trace.SpanKind.CONSUMER,
        attributes=_attributes(event, group, stream),
    ):
        yield


@contextlib.contextmanager
def consuming_batch(events: Sequence[tuple[str, Mapping[str, Any]]], group: str, stream: str) -> Iterator[None]:
    """The handling of a read's events together: a consumer span for each, under its producer.

    One handler call records them all (audit appends a trail's share in one transaction), so
    each event's span covers that call; none is current, as the work is not any one's.
    """
    if not _on or not events:
        yield
        return
    from opentelemetry import trace
    from opentelemetry.trace import Status, StatusCode

    tracer = trace.get_tracer("aerie.events")
    spans = [
        tracer.start_span(
            f"{group} process",
            context=_parent(event),
            kind=trace.SpanKind.CONSUMER,
            attributes={**_attributes(event, group, stream), "messaging.batch.message_count": len(events)},
        )
        for _entry_id, event in events
    ]
    try:
        yield
    except BaseException as exc:
        for span in spans:
            span.record_exception(exc)
            span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
        raise
    finally:
        for span in spans:
            span.end()
