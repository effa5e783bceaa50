"""The audit service, wired: ``build(settings, ...)``, ``create_app`` and ``get_app()``."""

from __future__ import annotations

import os
from dataclasses import dataclass

import falcon

from aerie.app import Infrastructure, Route, create_service_app, exit_on_config_error
from aerie.config import ConfigError, Settings
from aerie.redis import pool_for_threads
from aerie.sse import uwsgi_threads
from aerie.stream_server import StreamsReachable, run_mule, socket_path
from aerie.tenant_directory import TenantDirectory, TenantSource, WriteGuard
from audit.access import Trails
from audit.config import AuditConfig
from audit.ingest import consumer
from audit.page_cache import PageCache
from audit.resources.events import AuditEvent, AuditEvents
from audit.resources.trail import AuditExport, AuditVerify
from audit.retention import Retention

__all__ = ["EXPORT_THREADS", "AuditService", "build", "create_app", "get_app", "serve_exports"]


@dataclass
class AuditService:
    """The app and what runs beside it, so tests (and wsgi) can start and stop it."""

    app: falcon.App
    infra: Infrastructure
    config: AuditConfig
    tenants: TenantSource

    def close(self) -> None:
        self.infra.close()


#: Exports the stream mule serves at once; more wait for one of them to end.
EXPORT_THREADS = 16


def build(
    settings: Settings,
    infra: Infrastructure | None = None,
    config: AuditConfig | None = None,
    tenants: TenantSource | None = None,
    *,
    threads: int | None = None,
    streams_socket: str | None = None,
) -> AuditService:
    """The service from its dependencies; what is not given is made from ``settings``.

    ``threads`` is the threads of the process (a uWSGI worker's, or the export mule's), which
    the Redis pool is sized for. ``/ready`` also checks the export mule when
    ``streams_socket`` says where it listens (``aerie.stream_server``).
    """
    infra = infra or Infrastructure.from_settings(pool_for_threads(settings, threads))
    config = config or AuditConfig()
    if tenants is None:
        if not (settings.tenants_url and settings.client_id and settings.client_secret):
            raise ConfigError("AERIE_TENANTS_URL, AERIE_CLIENT_ID and AERIE_CLIENT_SECRET must be set")
        tenants = TenantDirectory.from_settings(settings, infra.subscriber)
    infra.background.add(
        "ingest",
        lambda: consumer(
            infra.redis, batch=config.batch, reclaim_idle_ms=config.reclaim_idle_ms, block_ms=config.block_ms
        ),
    )
    if config.retention_days is not None:
        days = config.retention_days
        infra.background.add("retention", lambda: Retention(infra.redis, days, interval_s=config.retention_interval_s))
    trails = Trails(infra.redis, WriteGuard(tenants))
    routes: list[Route] = [
        ("/v1/audit/events", AuditEvents(trails, PageCache())),
        ("/v1/audit/events/{entry_id}", AuditEvent(trails)),
        ("/v1/audit/export", AuditExport(trails)),
        ("/v1/audit/verify", AuditVerify(trails)),
    ]
    app = create_service_app(
        infra,
        routes,
        ready_checks={"streams": StreamsReachable(streams_socket)} if streams_socket else None,
        description="Every security-relevant action of the suite, per tenant, in a hash chain anyone can verify.",
    )
    return AuditService(app, infra, config, tenants)


def create_app(
    settings: Settings,
    infra: Infrastructure | None = None,
    config: AuditConfig | None = None,
    tenants: TenantSource | None = None,
) -> falcon.App:
    return build(settings, infra, config, tenants).app


def get_app() -> falcon.App | None:
    def make(settings: Settings) -> falcon.App:
        service = build(
            settings, config=AuditConfig.from_env(os.environ), threads=uwsgi_threads(), streams_socket=socket_path()
        )
        # lazy-apps (shared/uwsgi/base.ini): this runs in the worker, after the fork.
        service.infra.background.ensure_started()
        return service.app

    return exit_on_config_error("audit", make)


def serve_exports() -> None:
    """The export mule (``audit/mule.py``): serves ``/v1/audit/export`` (``aerie.stream_server``)."""
    run_mule(
        "audit",
        lambda settings: build(settings, config=AuditConfig.from_env(os.environ), threads=EXPORT_THREADS).app,
        threads=EXPORT_THREADS,
    )
