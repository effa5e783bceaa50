"""The projects service, wired: ``build(settings, config, ...)``, ``create_app`` and ``get_app()``."""

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
from projects.cascade import projects_cascade
from projects.config import ProjectsConfig
from projects.event_positions import EventPositions, PositionedPublisher
from projects.event_stream import LiveProjectEvents, ProjectEventStream
from projects.pages import ProjectPageCache
from projects.resources.events import ProjectEvents
from projects.resources.projects import ProjectAccess, ProjectBatchUpdate, ProjectCollection, ProjectItem

__all__ = ["ProjectsService", "build", "create_app", "get_app", "serve_streams"]


@dataclass
class ProjectsService(Service):
    config: ProjectsConfig
    tenants: TenantSource


def build(
    settings: Settings,
    config: ProjectsConfig | None = None,
    *,
    infra: Infrastructure | None = None,
    tenants: TenantSource | None = None,
    process: Process = Process(),
) -> ProjectsService:
    """The service from its dependencies; what is not given is made from ``settings``.

    Open event streams are capped below the process's threads, and the Redis pool sized
    above them (:class:`aerie.service.Process`).
    """
    config = config or ProjectsConfig.from_settings(settings)
    infra = infra or Infrastructure.from_settings(pool_for_threads(settings, process.threads))
    if tenants is None:
        tenants = TenantDirectory.from_settings(settings, infra.subscriber)
    ready_checks: dict[str, ReadyCheck] = tenants_ready_checks(settings)
    if process.streams_socket:
        ready_checks["streams"] = StreamsReachable(process.streams_socket)

    events = PositionedPublisher(infra.redis.keyspace)
    forget = getattr(tenants, "clear", None)
    cascade = projects_cascade(infra.redis, events, on_deleted=(lambda _tid: forget()) if forget else None)
    infra.background.add("cascade", lambda: cascade.consumer(infra.redis))

    limits = config.stream_limits.for_threads(process.threads)
    stream = ProjectEventStream(
        EventPositions(infra.redis),
        LiveProjectEvents(infra.subscriber),
        limits,
        infra.metrics.open_streams.labels(settings.service, "/v1/projects/events"),
    )
    pages = ProjectPageCache(config.page_cache_bytes) if config.page_cache_bytes else None
    projects = ProjectAccess(infra.redis, events, TenantScope(tenants), pages)
    routes: list[Route] = [
        ("/v1/projects", ProjectCollection(projects)),
        ("/v1/projects/batch-update", ProjectBatchUpdate(projects)),
        ("/v1/projects/events", ProjectEvents(projects, stream, infra.revocations.is_revoked)),
        ("/v1/projects/{project_id}", ProjectItem(projects)),
    ]
    app = create_service_app(
        infra,
        routes,
        ready_checks=ready_checks,
        description="Each tenant's projects; removes a deleted tenant's projects.",
        tenant_language=tenant_language_of(tenants),
        tenant_plan=tenant_plan_of(tenants),
    )
    return ProjectsService(app, infra, config, tenants)


def create_app(
    settings: Settings,
    config: ProjectsConfig | None = None,
    *,
    infra: Infrastructure | None = None,
    tenants: TenantSource | None = None,
) -> falcon.App:
    return build(settings, config, infra=infra, tenants=tenants).app


def get_app() -> falcon.App | None:
    return exit_on_config_error(
        "projects", lambda s: started(build(s, ProjectsConfig.from_settings(s), process=Process.uwsgi_worker()))
    )


def serve_streams() -> None:
    """The stream mule (``projects/mule.py``): serves ``/v1/projects/events``.

    The same app, built for the mule's threads; its background work (the subscriber the
    streams need among it) starts with the first request, by the per-request safety net.
    """
    run_mule("projects", lambda s: build(s, ProjectsConfig.from_settings(s), process=Process.stream_mule()).app)
