"""The projects service, wired: ``build(settings, ...)``, ``create_app`` and ``get_app()``."""

from __future__ import annotations

from dataclasses import dataclass

import falcon

from aerie.app import Infrastructure, Route, create_service_app, exit_on_config_error
from aerie.config import ConfigError, Settings
from aerie.redis import pool_for_threads
from aerie.sse import uwsgi_threads
from aerie.stream_server import STREAM_THREADS, StreamsReachable, run_mule, socket_path
from aerie.system import ReadyCheck
from aerie.tenant_directory import TenantDirectory, TenantSource, WriteGuard
from projects.cascade import TenantCascade
from projects.event_positions import EventPositions, PositionedPublisher
from projects.event_stream import LiveProjectEvents, ProjectEventStream, StreamLimits
from projects.pages import PageCache
from projects.readiness import TenantsReachable
from projects.resources.events import ProjectEvents
from projects.resources.projects import ProjectBatchUpdate, ProjectCollection, ProjectItem, Scope

__all__ = ["ProjectsService", "build", "create_app", "get_app", "serve_streams"]


@dataclass
class ProjectsService:
    """The app and what runs beside it, so tests (and wsgi) can start and stop it."""

    app: falcon.App
    infra: Infrastructure
    status: TenantSource

    def close(self) -> None:
        self.infra.close()


def build(
    settings: Settings,
    infra: Infrastructure | None = None,
    status: TenantSource | None = None,
    *,
    threads: int | None = None,
    streams_socket: str | None = None,
) -> ProjectsService:
    """The service from its dependencies; what is not given is made from ``settings``.

    ``threads`` is the threads of the process (a uWSGI worker's, or the stream mule's):
    open event streams are capped below it, and the Redis pool sized above it. ``/ready``
    also checks the tenants service whenever it is configured (it always is in production:
    tenant status comes from it; unit tests pass a fake ``status`` instead), and the stream
    mule when ``streams_socket`` says where it listens (``aerie.stream_server``).
    """
    infra = infra or Infrastructure.from_settings(pool_for_threads(settings, threads))
    if status is None:
        if not (settings.tenants_url and settings.client_id and settings.client_secret):
            raise ConfigError("AERIE_TENANTS_URL, AERIE_CLIENT_ID and AERIE_CLIENT_SECRET must be set")
        status = TenantDirectory.from_settings(settings, infra.subscriber)
    ready_checks: dict[str, ReadyCheck] = {}
    if settings.tenants_url:
        ready_checks["tenants"] = TenantsReachable.at(settings.tenants_url, settings.service)
    if streams_socket:
        ready_checks["streams"] = StreamsReachable(streams_socket)

    events = PositionedPublisher()
    forget = getattr(status, "clear", None)
    cascade = TenantCascade(infra.redis, events, on_deleted=(lambda _tid: forget()) if forget else None)
    infra.background.add("cascade", lambda: cascade.consumer(infra.redis))

    limits = StreamLimits.from_env(settings.extra).for_threads(threads)
    stream = ProjectEventStream(EventPositions(infra.redis), LiveProjectEvents(infra.subscriber), limits)
    scope = Scope(infra.redis, events, WriteGuard(status), PageCache.from_env(settings.extra))
    routes: list[Route] = [
        ("/v1/projects", ProjectCollection(scope)),
        ("/v1/projects/batch-update", ProjectBatchUpdate(scope)),
        ("/v1/projects/events", ProjectEvents(scope, stream, infra.revocations.is_revoked)),
        ("/v1/projects/{project_id}", ProjectItem(scope)),
    ]
    app = create_service_app(
        infra,
        routes,
        ready_checks=ready_checks,
        description="Each tenant's projects; removes a deleted tenant's projects.",
    )
    return ProjectsService(app, infra, status)


def create_app(
    settings: Settings, infra: Infrastructure | None = None, status: TenantSource | None = None
) -> falcon.App:
    return build(settings, infra, status).app


def get_app() -> falcon.App | None:
    def make(settings: Settings) -> falcon.App:
        service = build(settings, threads=uwsgi_threads(), streams_socket=socket_path())
        # lazy-apps (shared/uwsgi/base.ini): this runs in the worker, after the fork.
        service.infra.background.ensure_started()
        return service.app

    return exit_on_config_error("projects", make)


def serve_streams() -> None:
    """The stream mule (``projects/mule.py``): serves ``/v1/projects/events``.

    The same app, without the background consumers the workers already run.
    """
    run_mule("projects", lambda settings: build(settings, threads=STREAM_THREADS).app)
