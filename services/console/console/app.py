"""The console, wired: ``build(settings, config, ...)``, ``create_app`` and ``get_app()``.

Unlike the API services it answers HTML to browsers, so it has its own middleware (the
security headers, HTML error pages) instead of the JSON API's; it shares their settings,
``/health``, ``/ready`` and ``/info``, and acts only through the services' public APIs
with the signed-in person's token.
"""

from __future__ import annotations

from dataclasses import dataclass

import falcon

from aerie.app import Infrastructure, exit_on_config_error
from aerie.config import Settings
from aerie.readiness import redis_ready_check
from aerie.redis import pool_for_threads
from aerie.service import Process, Service, started
from aerie.stream_server import StreamsReachable, run_mule
from aerie.system import HealthResource, InfoResource, ReadyResource
from aerie.tenant_directory import TenantSource
from aerie.tracing import tracing_middleware
from console.api import Api
from console.config import ConsoleConfig
from console.oidc import SignInFlow
from console.resources.audit import AuditEntry, AuditExport, AuditPage
from console.resources.auth import Callback, Home, PickTenant, SignInStart, SignOut
from console.resources.flags import (
    MULE_RELAY_SECONDS,
    CancelSchedule,
    FlagDefinition,
    FlagList,
    FlagPage,
    FlagStream,
    KillSwitch,
    Rollout,
    Schedules,
)
from console.resources.members import Member, Members
from console.resources.overrides import Override, Overrides
from console.resources.platform import DeleteTenant, Tenants, TenantStatus
from console.resources.projects import DeleteProject, Project, Projects
from console.resources.static import StaticAsset
from console.resources.tenant import Clients, RevokeClient, TenantPage
from console.session import Cookies
from console.web import Pages, SecurityHeaders

__all__ = ["STREAM_THREADS", "ConsoleService", "build", "create_app", "get_app", "serve_streams"]

#: Threads of the stream mule: each open flag-list relay or audit export holds one; three
#: quarters of them may be relays, so exports always find some.
STREAM_THREADS = 32


@dataclass
class ConsoleService(Service):
    config: ConsoleConfig
    pages: Pages
    flow: SignInFlow


def build(
    settings: Settings,
    config: ConsoleConfig | None = None,
    *,
    infra: Infrastructure | None = None,
    tenants: TenantSource | None = None,
    process: Process = Process(),
    api: Api | None = None,
    flow: SignInFlow | None = None,
) -> ConsoleService:
    """The console from its dependencies; what is not given is made from ``settings``.

    ``tenants`` is accepted for the shape every service has; the console asks the tenants
    service with the person's token instead of a directory of its own.
    """
    config = config or ConsoleConfig.from_settings(settings)
    infra = infra or Infrastructure.from_settings(pool_for_threads(settings, process.threads))
    pages = Pages(Cookies(config.session_key, secure=config.secure_cookies), api or Api(config))
    flow = flow or SignInFlow(config)
    app = falcon.App(middleware=[SecurityHeaders(), *tracing_middleware()])
    app.req_options.strip_url_path_trailing_slash = True
    pages.install(app)
    overrides = Overrides(pages)
    checks = {"redis": redis_ready_check(settings, infra.redis), "background": infra.background.ensure_started}
    if process.streams_socket:
        checks["streams"] = StreamsReachable(process.streams_socket)
    # In the stream mule (threads of its own, no harakiri) a relay lasts as long as the
    # person's token; in a worker, or without uWSGI, it is short and one at a time.
    mule_threads = process.threads if process.harakiri is None else None
    flag_stream = (
        FlagStream(pages, relays=mule_threads * 3 // 4, relay_seconds=MULE_RELAY_SECONDS)
        if mule_threads
        else FlagStream(pages)
    )
    routes: list[tuple[str, object]] = [
        ("/health", HealthResource()),
        ("/ready", ReadyResource(checks)),
        ("/info", InfoResource(settings)),
        ("/static/{name}", StaticAsset()),
        ("/", Home(pages)),
        ("/sign-in", SignInStart(pages, flow)),
        ("/sign-in/tenant", PickTenant(pages, flow)),
        ("/auth/callback", Callback(pages, flow)),
        ("/sign-out", SignOut(pages)),
        ("/flags", FlagList(pages)),
        ("/flags/stream", flag_stream),
        ("/flags/{key}", FlagPage(pages)),
        ("/flags/{key}/definition", FlagDefinition(pages)),
        ("/flags/{key}/schedules", Schedules(pages)),
        ("/flags/{key}/schedules/{schedule_id}/cancel", CancelSchedule(pages)),
        ("/flags/{key}/kill-switch", KillSwitch(pages)),
        ("/flags/{key}/rollout", Rollout(pages)),
        ("/tenants", Tenants(pages)),
        ("/tenants/{tenant_id}", TenantPage(pages)),
        ("/tenants/{tenant_id}/suspend", TenantStatus(pages, "suspend")),
        ("/tenants/{tenant_id}/reactivate", TenantStatus(pages, "reactivate")),
        ("/tenants/{tenant_id}/delete", DeleteTenant(pages)),
        ("/tenants/{tenant_id}/clients", Clients(pages)),
        ("/tenants/{tenant_id}/clients/{client_id}/revoke", RevokeClient(pages)),
        ("/tenants/{tenant_id}/members", Members(pages)),
        ("/tenants/{tenant_id}/members/{member_id}", Member(pages)),
        ("/projects", Projects(pages)),
        ("/projects/{project_id}", Project(pages)),
        ("/projects/{project_id}/delete", DeleteProject(pages)),
        ("/overrides", overrides),
        ("/overrides/{key}", Override(pages, overrides)),
        ("/audit", AuditPage(pages)),
        ("/audit/export", AuditExport(pages)),
        ("/audit/{entry_id}", AuditEntry(pages)),
    ]
    for path, resource in routes:
        app.add_route(path, resource)
    return ConsoleService(app, infra, config, pages, flow)


def create_app(
    settings: Settings,
    config: ConsoleConfig | None = None,
    *,
    infra: Infrastructure | None = None,
    tenants: TenantSource | None = None,
) -> falcon.App:
    return build(settings, config, infra=infra, tenants=tenants).app


def get_app() -> falcon.App | None:
    return exit_on_config_error(
        "console", lambda s: started(build(s, ConsoleConfig.from_settings(s), process=Process.uwsgi_worker()))
    )


def serve_streams() -> None:
    """The stream mule (``console/mule.py``): serves ``/flags/stream`` and ``/audit/export``."""
    run_mule(
        "console",
        lambda s: build(s, ConsoleConfig.from_settings(s), process=Process.stream_mule(STREAM_THREADS)).app,
        threads=STREAM_THREADS,
    )
