"""The audit service, wired: ``build(settings, config, ...)``, ``create_app`` and ``get_app()``."""

from __future__ import annotations

from dataclasses import dataclass

import falcon

from aerie.app import Infrastructure, Route, create_service_app, exit_on_config_error
from aerie.config import Settings
from aerie.i18n import tenant_language_of
from aerie.rate_limits import tenant_plan_of
from aerie.readiness import tenants_ready_checks
from aerie.redis import pool_for_threads
from aerie.service import Process, Service, started
from aerie.stream_server import StreamsReachable, run_mule
from aerie.system import ReadyCheck
from aerie.tenancy import TenantScope
from aerie.tenant_directory import TenantDirectory, TenantSource
from audit.access import TrailAccess
from audit.config import AuditConfig
from audit.ingest import consumer
from audit.page_cache import TrailPageCache
from audit.resources.events import AuditEvent, AuditEvents
from audit.resources.trail import AuditExport, AuditVerify
from audit.retention import Retention

__all__ = ["EXPORT_THREADS", "AuditService", "build", "create_app", "get_app", "serve_exports"]


@dataclass
class AuditService(Service):
    config: AuditConfig
    tenants: TenantSource


#: Exports the stream mule serves at once; more wait for one of them to end.
EXPORT_THREADS = 16


def build(
    settings: Settings,
    config: AuditConfig | None = None,
    *,
    infra: Infrastructure | None = None,
    tenants: TenantSource | None = None,
    process: Process = Process(),
) -> AuditService:
    """The service from its dependencies; what is not given is made from ``settings``.

    The Redis pool is sized for the process's threads (:class:`aerie.service.Process`).
    """
    config = config or AuditConfig.from_settings(settings)
    infra = infra or Infrastructure.from_settings(pool_for_threads(settings, process.threads))
    if tenants is None:
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
    ready_checks: dict[str, ReadyCheck] = tenants_ready_checks(settings)
    if process.streams_socket:
        ready_checks["streams"] = StreamsReachable(process.streams_socket)
    trails = TrailAccess(infra.redis, TenantScope(tenants))
    routes: list[Route] = [
        ("/v1/audit/events", AuditEvents(trails, TrailPageCache())),
        ("/v1/audit/events/{entry_id}", AuditEvent(trails)),
        ("/v1/audit/export", AuditExport(trails)),
        ("/v1/audit/verify", AuditVerify(trails)),
    ]
    app = create_service_app(
        infra,
        routes,
        ready_checks=ready_checks,
        description="Every security-relevant action of the suite, per tenant, in a hash chain anyone can verify.",
        tenant_language=tenant_language_of(tenants),
        tenant_plan=tenant_plan_of(tenants),
    )
    return AuditService(app, infra, config, tenants)


def create_app(
    settings: Settings,
    config: AuditConfig | None = None,
    *,
    infra: Infrastructure | None = None,
    tenants: TenantSource | None = None,
) -> falcon.App:
    return build(settings, config, infra=infra, tenants=tenants).app


def get_app() -> falcon.App | None:
    return exit_on_config_error(
        "audit", lambda s: started(build(s, AuditConfig.from_settings(s), process=Process.uwsgi_worker()))
    )


def serve_exports() -> None:
    """The export mule (``audit/mule.py``): serves ``/v1/audit/export`` (``aerie.stream_server``)."""
    run_mule(
        "audit",
        lambda s: build(s, AuditConfig.from_settings(s), process=Process.stream_mule(EXPORT_THREADS)).app,
        threads=EXPORT_THREADS,
    )
