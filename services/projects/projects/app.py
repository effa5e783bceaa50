"""The projects service, wired: ``build(settings, ...)``, ``create_app`` and ``get_app()``."""

from __future__ import annotations

from dataclasses import dataclass

import falcon

from aerie.app import Infrastructure, Route, create_service_app, exit_on_config_error
from aerie.config import ConfigError, Settings
from aerie.events import EventPublisher, StreamConsumer
from aerie.tenant_directory import TenantDirectory, TenantSource, WriteGuard
from projects.cascade import GROUP, TenantCascade
from projects.event_stream import EventStream, StreamLimits
from projects.resources.events import ProjectEvents
from projects.resources.projects import ProjectBatchUpdate, ProjectCollection, ProjectItem, Scope

__all__ = ["ProjectsService", "build", "create_app", "get_app"]


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
) -> ProjectsService:
    infra = infra or Infrastructure.from_settings(settings)
    if status is None:
        if not (settings.tenants_url and settings.client_id and settings.client_secret):
            raise ConfigError("AERIE_TENANTS_URL, AERIE_CLIENT_ID and AERIE_CLIENT_SECRET must be set")
        status = TenantDirectory.from_settings(settings, infra.subscriber)
    forget = getattr(status, "clear", None)
    cascade = TenantCascade(infra.redis, on_deleted=(lambda _tid: forget()) if forget else None)
    infra.background.add("cascade", lambda: StreamConsumer(infra.redis, group=GROUP, handler=cascade))
    events = EventPublisher()
    scope = Scope(infra.redis, events, WriteGuard(status))
    routes: list[Route] = [
        ("/v1/projects", ProjectCollection(scope)),
        ("/v1/projects/batch-update", ProjectBatchUpdate(scope)),
        ("/v1/projects/events", ProjectEvents(scope, EventStream(infra.redis, StreamLimits.from_env(settings.extra)))),
        ("/v1/projects/{project_id}", ProjectItem(scope)),
    ]
    app = create_service_app(
        infra,
        routes,
        description="Each tenant's projects; removes a deleted tenant's projects.",
    )
    return ProjectsService(app, infra, status)


def create_app(
    settings: Settings, infra: Infrastructure | None = None, status: TenantSource | None = None
) -> falcon.App:
    return build(settings, infra, status).app


def get_app() -> falcon.App | None:
    def make(settings: Settings) -> falcon.App:
        service = build(settings)
        # lazy-apps (shared/uwsgi/base.ini): this runs in the worker, after the fork.
        service.infra.background.ensure_started()
        return service.app

    return exit_on_config_error("projects", make)
