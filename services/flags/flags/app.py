"""The flags service, wired: ``build(settings, config, ...)``, ``create_app`` and ``get_app()``."""

from __future__ import annotations

from dataclasses import dataclass

import falcon

from aerie.app import Infrastructure, Route, create_service_app, exit_on_config_error
from aerie.config import Settings
from aerie.events import EventPublisher
from aerie.i18n import tenant_language_of
from aerie.rate_limits import tenant_plan_of
from aerie.readiness import tenants_ready_checks
from aerie.redis import pool_for_threads
from aerie.service import Process, Service, started
from aerie.sse import LiveStreams
from aerie.stream_server import StreamsReachable, run_mule
from aerie.system import ReadyCheck
from aerie.tenancy import TenantScope
from aerie.tenant_directory import TenantDirectory, TenantSource
from flags.cascade import flags_cascade
from flags.config import FlagsConfig
from flags.evaluator import Evaluator
from flags.resources.definitions import FlagCollection, FlagItem
from flags.resources.evaluation import Evaluate, FlagEvaluation, FlagSnapshot
from flags.resources.ofrep import OfrepFlag, OfrepFlags
from flags.resources.overrides import OverrideAccess, TenantOverride, UserOverride
from flags.resources.schedules import FlagSchedule, FlagScheduleItem
from flags.resources.stream import FlagStream
from flags.schedules import ScheduleRunner, Schedules
from flags.snapshot import FlagReplica
from flags.storage import FlagStore
from flags.stream import FlagChanges, live_flag_events
from flags.usage import UsageFlusher

__all__ = ["FlagsService", "build", "create_app", "get_app", "serve_streams"]


@dataclass
class FlagsService(Service):
    config: FlagsConfig
    tenants: TenantSource
    snapshot: FlagReplica


def build(
    settings: Settings,
    config: FlagsConfig | None = None,
    *,
    infra: Infrastructure | None = None,
    tenants: TenantSource | None = None,
    process: Process = Process(),
) -> FlagsService:
    """The service from its dependencies; what is not given is made from ``settings``.

    Open streams are capped below the process's threads and their lifetime below its
    ``harakiri``, and the Redis pool is sized above the threads (:class:`aerie.service.Process`).
    """
    config = config or FlagsConfig.from_settings(settings)
    infra = infra or Infrastructure.from_settings(pool_for_threads(settings, process.threads))
    if tenants is None:
        tenants = TenantDirectory.from_settings(settings, infra.subscriber)
    # Every flags write is in the platform shard's slot (flags.keys), and so are its events.
    events = EventPublisher(infra.redis.keyspace, shard=infra.redis.keyspace.platform)
    store = FlagStore(infra.redis, events)
    snapshot = FlagReplica(store, infra.subscriber)
    cascade = flags_cascade(store)
    infra.background.add("cascade", lambda: cascade.consumer(infra.redis, block_ms=config.consumer_block_ms))
    schedules = Schedules(infra.redis, events)
    infra.background.add(
        "schedules",
        lambda: ScheduleRunner(
            schedules, lambda event: snapshot.apply(event, local=True), interval_s=config.schedule_interval_s
        ),
    )
    evaluator = Evaluator(snapshot, tenants)
    infra.background.add(
        "usage",
        lambda: UsageFlusher(
            evaluator.usage,
            store.record_evaluated,
            lambda: snapshot.state.flags.keys(),
            flush_s=config.usage_flush_s,
        ),
    )
    scope = TenantScope(tenants)
    overrides = OverrideAccess(infra.redis, events, scope, snapshot)
    limits = config.stream_limits.for_threads(process.threads).for_harakiri(process.harakiri)
    streams = LiveStreams(
        live_flag_events(infra.subscriber),
        limits,
        infra.metrics.open_streams.labels(settings.service, "/v1/flags/stream"),
    )
    changes = FlagChanges(streams, infra.revocations.is_revoked)
    ready_checks: dict[str, ReadyCheck] = {"flags": snapshot.ready, **tenants_ready_checks(settings)}
    if process.streams_socket:
        ready_checks["streams"] = StreamsReachable(process.streams_socket)
    routes: list[Route] = [
        ("/v1/flags", FlagCollection(store)),
        ("/v1/flags/snapshot", FlagSnapshot(evaluator, snapshot, scope)),
        ("/v1/flags/stream", FlagStream(changes)),
        ("/v1/flags/{key}", FlagItem(store, snapshot)),
        ("/v1/flags/{key}/evaluation", FlagEvaluation(evaluator, snapshot, scope)),
        ("/v1/flags/{key}/schedule", FlagSchedule(schedules)),
        ("/v1/flags/{key}/schedule/{schedule_id}", FlagScheduleItem(schedules)),
        ("/v1/flags/{key}/overrides/tenant", TenantOverride(overrides)),
        ("/v1/flags/{key}/overrides/users/{user_id}", UserOverride(overrides)),
        ("/v1/evaluate", Evaluate(evaluator, scope)),
        ("/ofrep/v1/evaluate/flags", OfrepFlags(evaluator, snapshot, scope)),
        ("/ofrep/v1/evaluate/flags/{key}", OfrepFlag(evaluator, snapshot, scope)),
    ]
    app = create_service_app(
        infra,
        routes,
        ready_checks=ready_checks,
        description="Feature flags: definitions, per-tenant overrides, evaluation from an in-process snapshot.",
        tenant_language=tenant_language_of(tenants),
        tenant_plan=tenant_plan_of(tenants),
    )
    return FlagsService(app, infra, config, tenants, snapshot)


def create_app(
    settings: Settings,
    config: FlagsConfig | None = None,
    *,
    infra: Infrastructure | None = None,
    tenants: TenantSource | None = None,
) -> falcon.App:
    return build(settings, config, infra=infra, tenants=tenants).app


def get_app() -> falcon.App | None:
    return exit_on_config_error(
        "flags", lambda s: started(build(s, FlagsConfig.from_settings(s), process=Process.uwsgi_worker()))
    )


def serve_streams() -> None:
    """The stream mule (``flags/mule.py``): serves ``/v1/flags/stream``.

    The same app, built for the mule's threads; its background work (the subscriber the
    streams need among it) starts with the first request, by the per-request safety net.
    The mule has no harakiri, so streams live their full ``AERIE_SSE_MAX_SECONDS``.
    """
    run_mule("flags", lambda s: build(s, FlagsConfig.from_settings(s), process=Process.stream_mule()).app)
