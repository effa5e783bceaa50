"""The tenants service, wired: ``build(settings, config, ...)``, ``create_app`` and ``get_app()``."""

from __future__ import annotations

from dataclasses import dataclass

import falcon

from aerie.app import Infrastructure, Route, create_service_app, exit_on_config_error
from aerie.auth.tokens import StaticKeySource
from aerie.config import Settings
from aerie.dead_letters import DeadLetters
from aerie.events import EventPublisher
from aerie.redis import pool_for_threads
from aerie.service import Process, Service, started
from tenants.auth_failures import AuthFailures
from tenants.config import TenantsConfig
from tenants.exchange import TokenExchange
from tenants.issuer import Issuer
from tenants.members import BootstrapAdmin, UnsafeMemberDirectory
from tenants.resources.clients import ClientCollection, ClientItem
from tenants.resources.dead_letters import DeadLetterCollection, DeadLetterItem, DeadLetterReplay
from tenants.resources.members import (
    MemberAccess,
    PlatformMemberCollection,
    PlatformMemberItem,
    TenantMemberCollection,
    TenantMemberItem,
)
from tenants.resources.oauth import TokenResource
from tenants.resources.tenants import TenantAction, TenantCollection, TenantItem
from tenants.resources.wellknown import AuthorizationServerMetadata, JWKSResource
from tenants.storage import ClientStore, TenantStore

__all__ = ["TenantsService", "build", "create_app", "get_app"]


@dataclass
class TenantsService(Service):
    config: TenantsConfig


def build(
    settings: Settings,
    config: TenantsConfig | None = None,
    *,
    infra: Infrastructure | None = None,
    process: Process = Process(),
) -> TenantsService:
    """The service from its dependencies; what is not given is made from ``settings``.

    The one service without a tenant directory: it is the directory the others ask. The
    Redis pool is sized for the process's threads (:class:`aerie.service.Process`).
    """
    config = config or TenantsConfig.from_settings(settings)
    # The issuer verifies its own tokens with its own keys: no HTTP call to itself.
    infra = infra or Infrastructure.from_settings(
        pool_for_threads(settings, process.threads), keys=StaticKeySource(config.keys.jwks())
    )
    events = EventPublisher(infra.redis.keyspace)
    tenants = TenantStore(infra.redis, events)
    clients = ClientStore(infra.redis, events, token_ttl_s=config.token_ttl_s)
    issuer = Issuer(
        keys=config.keys,
        issuer=settings.issuer,
        audience=settings.audience,
        ttl_s=config.token_ttl_s,
        platform_clients=config.platform_clients,
        clients=clients,
        tenants=tenants,
    )
    members = MemberAccess(infra.redis, events, tenants, config.token_ttl_s)
    bootstrap = BootstrapAdmin(infra.redis, members.store(None), config.bootstrap_admin_email)
    exchange = TokenExchange(
        issuer=issuer,
        providers=config.identity_providers,
        directory=UnsafeMemberDirectory(infra.redis, events),
        tenants=tenants,
        bootstrap=bootstrap,
    )
    letters = DeadLetters(infra.redis)
    failures = AuthFailures(infra.redis, config.auth_failures_per_client, config.auth_failures_per_address)
    routes: list[Route] = [
        ("/v1/oauth/token", TokenResource(issuer, exchange, events, infra.redis, failures)),
        ("/.well-known/jwks.json", JWKSResource(config.keys.jwks())),
        ("/.well-known/oauth-authorization-server", AuthorizationServerMetadata(settings.issuer)),
        ("/v1/tenants", TenantCollection(tenants)),
        ("/v1/tenants/{tenant_id}", TenantItem(tenants, clients, members)),
        ("/v1/tenants/{tenant_id}/suspend", TenantAction(tenants, "suspend")),
        ("/v1/tenants/{tenant_id}/reactivate", TenantAction(tenants, "reactivate")),
        ("/v1/tenants/{tenant_id}/clients", ClientCollection(tenants, clients)),
        ("/v1/tenants/{tenant_id}/clients/{client_id}", ClientItem(tenants, clients)),
        ("/v1/tenants/{tenant_id}/members", TenantMemberCollection(members)),
        ("/v1/tenants/{tenant_id}/members/{member_id}", TenantMemberItem(members)),
        ("/v1/platform/members", PlatformMemberCollection(members, bootstrap)),
        ("/v1/platform/members/{member_id}", PlatformMemberItem(members)),
        # The event stream is one for the whole suite: its dead letters are managed here,
        # with the platform's other people and tenants.
        ("/v1/platform/dead-letters", DeadLetterCollection(letters)),
        ("/v1/platform/dead-letters/{letter_id}", DeadLetterItem(letters)),
        ("/v1/platform/dead-letters/{letter_id}/replay", DeadLetterReplay(letters)),
    ]

    def tenant_language(tenant_id: str) -> str | None:
        tenant = tenants.get(tenant_id)
        return tenant.get("language") if tenant else None

    def tenant_plan(tenant_id: str) -> str | None:
        tenant = tenants.get(tenant_id)
        return tenant.get("plan") if tenant else None

    app = create_service_app(
        infra,
        routes,
        tenant_language=tenant_language,
        tenant_plan=tenant_plan,
        description="Tenant lifecycle, API clients, members and roles, and the OAuth2 token endpoint (client "
        "credentials, and token exchange for people) and JWKS every service trusts.",
    )
    return TenantsService(app, infra, config)


def create_app(
    settings: Settings, config: TenantsConfig | None = None, *, infra: Infrastructure | None = None
) -> falcon.App:
    return build(settings, config, infra=infra).app


def get_app() -> falcon.App | None:
    return exit_on_config_error(
        "tenants", lambda s: started(build(s, TenantsConfig.from_settings(s), process=Process.uwsgi_worker()))
    )
