"""The app factory every service builds on.

A service's ``create_app(settings, deps)`` gathers its routes and hands them here with the
per-process infrastructure; ``get_app()`` reads the environment and exits with one line on a
configuration error. Nothing here touches Redis or the network: connections are made on
first use, after uWSGI forks.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import falcon
import falcon.media
import orjson

from aerie.auth.revocation import RevocationList
from aerie.auth.tokens import JWKSKeySource, KeySource, TokenVerifier
from aerie.background import Background
from aerie.config import ConfigError, Settings
from aerie.docs import DocsAssetResource, DocsResource
from aerie.endpoints import Endpoint, endpoint_of, responders_of
from aerie.error_reporting import init_error_reporting
from aerie.errors import install_error_handling
from aerie.i18n import Catalogs, LanguageMiddleware, Languages, Request, TenantLanguage
from aerie.idempotency import IdempotencyMiddleware
from aerie.logs import AccessLog, configure_logging
from aerie.me import MeResource
from aerie.metrics import METRICS_PORT, METRICS_TOKEN, EventStreamCollector, Metrics, MetricsResource
from aerie.middleware import AuthMiddleware, BodyMiddleware, RequestContextMiddleware
from aerie.openapi import OpenAPIResource, build_openapi
from aerie.pubsub import Subscriber
from aerie.rate_limits import RateLimiter, RateLimitMiddleware, TenantPlan, limits_from_settings
from aerie.readiness import redis_ready_check
from aerie.redis import RedisProvider
from aerie.stream_janitor import StreamJanitor
from aerie.system import HealthResource, InfoResource, ReadyCheck, ReadyResource
from aerie.tracing import init_tracing, tracing_middleware

__all__ = [
    "JSON_UTF8",
    "Infrastructure",
    "Route",
    "complete_methods",
    "create_service_app",
    "dumps_json",
    "exit_on_config_error",
]

JSON_UTF8 = "application/json; charset=utf-8"
Route = tuple[str, object]


def dumps_json(media: object) -> bytes:
    """What ``resp.media = media`` would send, for ``resp.data`` on hot paths (no media handler).

    orjson refuses keys that are not strings unless told to take them, and taking them costs
    every call more than twice as much; documents almost never have any, so they are only
    allowed on a second try.
    """
    try:
        return orjson.dumps(media)
    except TypeError:
        return orjson.dumps(media, option=orjson.OPT_NON_STR_KEYS)


@dataclass
class Infrastructure:
    """Per-process dependencies shared by every service; tests build their own."""

    settings: Settings
    redis: RedisProvider
    subscriber: Subscriber
    revocations: RevocationList
    verifier: TokenVerifier
    #: Threads each worker runs (the subscriber, consumers, sweepers); see :mod:`aerie.background`.
    background: Background
    #: This process's Prometheus metrics, summed with the instance's others at ``/metrics``.
    metrics: Metrics
    #: Trims the event stream below what every group acknowledged (one process at a time).
    stream: StreamJanitor

    @classmethod
    def from_settings(cls, settings: Settings, keys: KeySource | None = None) -> Infrastructure:
        if keys is None:
            if not settings.jwks_url:
                raise ConfigError("AERIE_JWKS_URL is not set (nor AERIE_TENANTS_URL to derive it from)")
            keys = JWKSKeySource(settings.jwks_url)
        init_error_reporting(settings)
        init_tracing(settings)
        redis_provider = RedisProvider(settings.redis)
        subscriber = Subscriber(redis_provider, name=f"{settings.service}-subscriber")
        revocations = RevocationList(redis_provider, subscriber)
        verifier = TokenVerifier(
            keys, issuer=settings.issuer, audience=settings.audience, is_revoked=revocations.is_revoked
        )
        background = Background()
        # The subscriber is one more worker: it starts with the service's own, after the fork.
        background.add("subscriber", lambda: subscriber)
        metrics = Metrics(settings.service)
        metrics.add_collector(
            EventStreamCollector(settings.service, lambda: redis_provider.client, redis_provider.keyspace)
        )
        stream = StreamJanitor(redis_provider)
        background.add("stream-janitor", lambda: stream)
        return cls(settings, redis_provider, subscriber, revocations, verifier, background, metrics, stream)

    def close(self) -> None:
        """Stop background threads (tests build many apps in one process).

        The subscriber is stopped even when no ``ensure_started`` of the background started
        it: a first request or stream may have (see :meth:`Subscriber.ensure_started`).
        """
        self.background.stop()
        self.subscriber.stop()


#: ``off`` stops counting requests and token checks (the per-request part of ``/metrics``);
#: streams, event stream and consumer gauges stay. For a space nothing scrapes, and for
#: ``bench/run.py --overhead``, which measures what metrics and rate limits cost.
REQUEST_METRICS = "AERIE_REQUEST_METRICS"


def request_metrics(settings: Settings) -> bool:
    value = (settings.extra.get(REQUEST_METRICS) or "on").strip().lower()
    if value not in ("on", "off"):
        raise ConfigError(f"{REQUEST_METRICS} must be on or off, not {value!r}")
    return value == "on"


def create_service_app(
    infra: Infrastructure,
    routes: Sequence[Route],
    *,
    ready_checks: Mapping[str, ReadyCheck] | None = None,
    description: str = "",
    tenant_language: TenantLanguage | None = None,
    tenant_plan: TenantPlan | None = None,
) -> falcon.App:
    """A ``falcon.App`` with the standard middleware, system routes and the service's routes.

    Refuses to build if any responder lacks an ``@endpoint`` declaration. Every request and
    ``/ready`` probe makes sure ``infra.background``'s workers run in this process (the
    service's ``get_app()`` starts them after the fork, :func:`aerie.service.started`).
    ``tenant_language`` gives a tenant's language, the last word on the language of a
    request whose caller states none (:mod:`aerie.i18n`). ``tenant_plan`` gives a tenant's
    plan, whose limit (``AERIE_RATE_LIMITS``) its requests are held to (:mod:`aerie.rate_limits`);
    without it nothing is limited.
    """
    settings = infra.settings
    recorded = infra.metrics if request_metrics(settings) else None
    middleware: list[object] = [
        RequestContextMiddleware(AccessLog(settings.service, settings.instance_index), recorded),
        LanguageMiddleware(Languages(Catalogs(), tenant_language)),
        AuthMiddleware(infra.verifier, infra.subscriber, recorded),
        BodyMiddleware(),
        IdempotencyMiddleware(infra.redis),
    ]
    if tenant_plan is not None:
        limiter = RateLimiter(infra.redis, settings.service, limits_from_settings(settings.extra), tenant_plan)
        # After the token names the tenant, before the body is read.
        middleware.insert(3, RateLimitMiddleware(limiter))
    if infra.background:
        middleware.insert(0, BackgroundMiddleware(infra.background))
    middleware.extend(tracing_middleware())
    app = falcon.App(media_type=JSON_UTF8, middleware=middleware, request_type=Request)
    # orjson: the same JSON (UTF-8, no ASCII escaping, non-string keys made strings as
    # json.dumps does), about ten times cheaper to produce.
    json_handler = falcon.media.JSONHandler(dumps=dumps_json, loads=orjson.loads)
    app.req_options.media_handlers[JSON_UTF8] = json_handler
    app.resp_options.media_handlers[JSON_UTF8] = json_handler
    install_error_handling(app)

    checks: dict[str, ReadyCheck] = {"redis": redis_ready_check(settings, infra.redis)}
    if infra.background:
        checks["background"] = infra.background.ensure_started
    checks["events"] = infra.stream.ready_detail
    checks.update(ready_checks or {})
    system: list[Route] = [
        ("/health", HealthResource()),
        ("/ready", ReadyResource(checks)),
        ("/info", InfoResource(settings)),
        (
            "/metrics",
            MetricsResource(infra.metrics, settings.extra.get(METRICS_PORT), settings.extra.get(METRICS_TOKEN)),
        ),
        ("/v1/me", MeResource()),
    ]
    all_routes = [*system, *routes]
    _check_declarations(all_routes)
    document = build_openapi(
        title=f"Aerie {settings.service}", version=settings.version, description=description, routes=all_routes
    )
    docs_routes: list[Route] = [
        ("/openapi.json", OpenAPIResource(document)),
        ("/docs", DocsResource(title=f"Aerie {settings.service} API", openapi_url="/openapi.json")),
        ("/docs/assets/{name}", DocsAssetResource()),
    ]
    for path, resource in [*all_routes, *docs_routes]:
        complete_methods(resource)
        app.add_route(path, resource)
    return app


def complete_methods(resource: object) -> None:
    """Give ``resource`` the responders HTTP expects of it beside its own.

    HEAD wherever GET is (RFC 9110, section 9.3.2): it runs the GET responder, with its
    declaration and so its scopes and validation, and Falcon sends the headers without the
    body (``Content-Length`` is the GET body's). A streamed body is closed unread, so an
    event stream answers its headers and gives back the stream slot it took.

    OPTIONS answering the same ``Allow`` as a 405 does: Falcon's own leaves OPTIONS out of
    its answer but puts it in the 405's. Both are public, like Falcon's defaults.
    """
    get = getattr(resource, "on_get", None)
    if get is not None and getattr(resource, "on_head", None) is None:

        def on_head(req: falcon.Request, resp: falcon.Response, **params: object) -> None:
            get(req, resp, **params)
            stream = resp.stream
            if stream is not None:
                resp.stream = None
                close = getattr(stream, "close", None)
                if close is not None:
                    close()

        on_head.__aerie_endpoint__ = endpoint_of(get)  # type: ignore[attr-defined]
        resource.on_head = on_head  # type: ignore[attr-defined]
    if getattr(resource, "on_options", None) is None:
        # Falcon's 405 lists the sorted methods a resource answers, OPTIONS among them.
        allow = ", ".join(
            sorted(m for m in falcon.COMBINED_METHODS if m == "OPTIONS" or hasattr(resource, f"on_{m.lower()}"))
        )

        def on_options(req: falcon.Request, resp: falcon.Response, **params: object) -> None:
            resp.set_header("Allow", allow)
            resp.content_length = 0

        on_options.__aerie_endpoint__ = _OPTIONS  # type: ignore[attr-defined]
        resource.on_options = on_options  # type: ignore[attr-defined]


_OPTIONS = Endpoint("The methods this route answers (Allow)", scopes=None)


class BackgroundMiddleware:
    """Starts this worker's background threads if a fork left it without them."""

    def __init__(self, background: Background) -> None:
        self._background = background

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        self._background.ensure_started()


def _check_declarations(routes: Sequence[Route]) -> None:
    missing = [
        f"{type(resource).__name__}.on_{method} ({path})"
        for path, resource in routes
        for method, spec in responders_of(resource).items()
        if spec is None
    ]
    if missing:
        raise TypeError("responders without an @endpoint declaration: " + ", ".join(missing))


def exit_on_config_error(service: str, build: Callable[[Settings], falcon.App]) -> falcon.App | None:
    """Build the app from the environment; on a configuration error, print one line and return None.

    The WSGI module then has no callable, and uWSGI's ``need-app`` stops the whole instance
    instead of respawning workers that fail the same way forever (which a SystemExit in a
    worker would cause). Every worker and mule reads the same environment and fails alike;
    only the first worker (or a process outside uWSGI) says so, so the log has one line.
    """
    try:
        settings = Settings.from_env(service)
        configure_logging(service, settings.instance_index, settings.log_level)
        return build(settings)
    except ConfigError as exc:
        if _speaks_for_the_instance():
            print(f"aerie-{service}: configuration error: {exc}", file=sys.stderr, flush=True)
        return None


def _speaks_for_the_instance() -> bool:
    try:
        import uwsgi  # type: ignore[import-not-found]
    except ImportError:
        return True
    return bool(uwsgi.worker_id() == 1)
