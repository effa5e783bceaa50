"""The flags service, wired: ``build(settings, ...)``, ``create_app`` and ``get_app()``."""

from __future__ import annotations

from dataclasses import dataclass

import falcon

from aerie.app import Infrastructure, Route, create_service_app, exit_on_config_error
from aerie.config import ConfigError, Settings
from aerie.events import EventPublisher
from aerie.redis import pool_for_threads
from aerie.sse import LiveStreams, StreamLimits, uwsgi_harakiri, uwsgi_threads
from aerie.stream_server import STREAM_THREADS, StreamsReachable, run_mule, socket_path
from aerie.system import ReadyCheck
from aerie.tenant_directory import TenantDirectory, TenantSource, WriteGuard
from flags.cascade import TenantCascade
from flags.evaluator import Evaluator
from flags.resources.definitions import FlagCollection, FlagItem
from flags.resources.evaluation import Evaluate, FlagEvaluation, FlagSnapshot
from flags.resources.overrides import Overrides, TenantOverride, UserOverride
from flags.resources.stream import FlagStream
from flags.snapshot import Snapshot
from flags.storage import FlagStore
from flags.stream import DEFAULT_LIMITS, LONGEST_SECONDS, FlagChanges, live_flag_events

__all__ = ["FlagsService", "build", "create_app", "get_app", "serve_streams"]


@dataclass
class FlagsService:
    """The app and what runs beside it, so tests (and wsgi) can start and stop it."""

    app: falcon.App
    infra: Infrastructure
    tenants: TenantSource
    snapshot: Snapshot

    def close(self) -> None:
        self.infra.close()


def build(
    settings: Settings,
    infra: Infrastructure | None = None,
    tenants: TenantSource | None = None,
    *,
    consumer_block_ms: int = 1000,
    threads: int | None = None,
    harakiri: int | None = None,
    streams_socket: str | None = None,
) -> FlagsService:
    """Wire the service. ``consumer_block_ms`` bounds how long stopping the cascade takes (tests).

    ``threads`` and ``harakiri`` are the process's (a uWSGI worker's, or the stream mule's, which
    has no harakiri; None outside uWSGI): open streams are capped below the threads, their
    lifetime below ``harakiri``, and the Redis pool is sized above the threads. ``/ready``
    checks the stream mule when ``streams_socket`` says where it listens (``aerie.stream_server``).
    """
    infra = infra or Infrastructure.from_settings(pool_for_threads(settings, threads))
    if tenants is None:
        if not (settings.tenants_url and settings.client_id and settings.client_secret):
            raise ConfigError("AERIE_TENANTS_URL, AERIE_CLIENT_ID and AERIE_CLIENT_SECRET must be set")
        tenants = TenantDirectory.from_settings(settings, infra.subscriber)
    events = EventPublisher()
    store = FlagStore(infra.redis, events)
    snapshot = Snapshot(store, infra.subscriber)
    cascade = TenantCascade(store)
    infra.background.add(
        "cascade",
        lambda: cascade.consumer(infra.redis, block_ms=consumer_block_ms),
    )
    evaluator = Evaluator(snapshot, tenants)
    overrides = Overrides(infra.redis, events, WriteGuard(tenants), snapshot)
    limits = StreamLimits.from_env(settings.extra, DEFAULT_LIMITS, longest=LONGEST_SECONDS)
    streams = LiveStreams(live_flag_events(infra.subscriber), limits.for_threads(threads).for_harakiri(harakiri))
    changes = FlagChanges(streams, infra.revocations.is_revoked)
    ready_checks: dict[str, ReadyCheck] = {"flags": snapshot.ready}
    if streams_socket:
        ready_checks["streams"] = StreamsReachable(streams_socket)
    routes: list[Route] = [
        ("/v1/flags", FlagCollection(store)),
        ("/v1/flags/snapshot", FlagSnapshot(evaluator, snapshot)),
        ("/v1/flags/stream", FlagStream(changes)),
        ("/v1/flags/{key}", FlagItem(store, snapshot)),
        ("/v1/flags/{key}/evaluation", FlagEvaluation(evaluator, snapshot)),
        ("/v1/flags/{key}/overrides/tenant", TenantOverride(overrides)),
        ("/v1/flags/{key}/overrides/users/{user_id}", UserOverride(overrides)),
        ("/v1/evaluate", Evaluate(evaluator)),
    ]
    app = create_service_app(
        infra,
        routes,
        ready_checks=ready_checks,
        description="Feature flags: definitions, per-tenant overrides, evaluation from an in-process snapshot.",
    )
    return FlagsService(app, infra, tenants, snapshot)


def create_app(
    settings: Settings, infra: Infrastructure | None = None, tenants: TenantSource | None = None
) -> falcon.App:
    return build(settings, infra, tenants).app


def get_app() -> falcon.App | None:
    def make(settings: Settings) -> falcon.App:
        service = build(settings, threads=uwsgi_threads(), harakiri=uwsgi_harakiri(), streams_socket=socket_path())
        # lazy-apps (shared/uwsgi/base.ini): this runs in the worker, after the fork.
        service.infra.background.ensure_started()
        service.infra.subscriber.ensure_started()
        return service.app

    return exit_on_config_error("flags", make)


def serve_streams() -> None:
    """The stream mule (``flags/mule.py``): serves ``/v1/flags/stream``.

    The same app, without the background consumers the workers already run; the mule has no
    harakiri, so streams live their full ``AERIE_SSE_MAX_SECONDS``.
    """
    run_mule("flags", lambda settings: build(settings, threads=STREAM_THREADS).app)
