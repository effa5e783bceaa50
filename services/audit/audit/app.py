"""The audit service, wired: ``build(settings, ...)``, ``create_app`` and ``get_app()``."""

from __future__ import annotations

import os
from dataclasses import dataclass

import falcon

from aerie.app import Infrastructure, Route, create_service_app, exit_on_config_error
from aerie.config import ConfigError, Settings
from aerie.tenant_directory import TenantDirectory, TenantSource, WriteGuard
from audit.access import Trails
from audit.config import AuditConfig
from audit.ingest import consumer
from audit.page_cache import PageCache
from audit.resources.events import AuditEvent, AuditEvents
from audit.resources.trail import AuditExport, AuditVerify
from audit.retention import Retention

__all__ = ["AuditService", "build", "create_app", "get_app"]


@dataclass
class AuditService:
    """The app and what runs beside it, so tests (and wsgi) can start and stop it."""

    app: falcon.App
    infra: Infrastructure
    config: AuditConfig
    tenants: TenantSource

    def close(self) -> None:
        self.infra.close()


def build(
    settings: Settings,
    infra: Infrastructure | None = None,
    config: AuditConfig | None = None,
    tenants: TenantSource | None = None,
) -> AuditService:
    infra = infra or Infrastructure.from_settings(settings)
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
        service = build(settings, config=AuditConfig.from_env(os.environ))
        # lazy-apps (shared/uwsgi/base.ini): this runs in the worker, after the fork.
        service.infra.background.ensure_started()
        return service.app

    return exit_on_config_error("audit", make)
