"""What the other services know of a tenant: asked of the tenants service, cached here.

A tenant comes from ``GET /v1/tenants/{id}`` with this service's own platform:read token.
Answers are cached per process and kept fresh by ``tenant.*`` events on pub/sub (each
carries the tenant document), so a suspension or a plan change bites within the pub/sub
delay instead of a cache TTL. While the subscriber is not connected, events may be missed,
so the cache is trusted only for ``unsubscribed_ttl_s``. When tenants cannot be reached and
nothing usable is cached, :class:`~aerie_client.http.PeerUnavailable` (a 503) is raised:
callers never act on a guess.

Services take a :class:`TenantSource` as a dependency, so unit tests pass a fake and service
tests the real :class:`TenantDirectory`.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from cachetools import LRUCache

from aerie import errors
from aerie.config import ConfigError, Settings
from aerie.i18n import msg
from aerie.pubsub import Subscriber
from aerie_client.http import ClientCredentials, PeerUnavailable, ServiceClient

__all__ = ["TENANT_EVENTS", "TenantDirectory", "TenantSource", "WriteGuard"]

log = logging.getLogger("aerie.tenant_directory")

TENANT_EVENTS = "aerie:event:tenant.*"
#: Tenants a process keeps; past this the least recently asked for is dropped (and fetched
#: again when next asked for), so a platform with many tenants cannot grow every worker.
MAX_CACHED_TENANTS = 4096
#: The status of a tenant that the tenants service does not know.
MISSING = "deleted"

Tenant = Mapping[str, Any]


class TenantSource(Protocol):
    def get(self, tenant_id: str) -> Tenant | None:
        """The tenant document, or None when tenants does not know it; PeerUnavailable when unknown."""
        ...

    def status(self, tenant_id: str) -> str:
        """``active``, ``suspended`` or ``deleted``; raises PeerUnavailable when unknown."""
        ...


class TenantDirectory:
    def __init__(
        self,
        client: ServiceClient,
        subscriber: Subscriber | None = None,
        *,
        subscribed_ttl_s: float = 300.0,
        unsubscribed_ttl_s: float = 1.0,
        max_tenants: int = MAX_CACHED_TENANTS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client
        self._subscriber = subscriber
        self._subscribed_ttl_s = subscribed_ttl_s
        self._unsubscribed_ttl_s = unsubscribed_ttl_s
        self._clock = clock
        self._lock = threading.Lock()
        # An LRU reorders on every read, so reads take the lock too (uncontended: well under a µs).
        self._cache: LRUCache[str, tuple[Tenant | None, float]] = LRUCache(maxsize=max_tenants)
        #: Bumped by every event and reset; a fetch that raced one is not cached (it may be older).
        self._generation = 0
        self._listeners: list[Callable[[str], None]] = []
        if subscriber is not None:
            subscriber.on(TENANT_EVENTS, self._on_event)
            subscriber.on_connect(self.clear)

    @classmethod
    def from_settings(cls, settings: Settings, subscriber: Subscriber | None) -> TenantDirectory:
        """The directory a service asks with its own client credentials."""
        if not (settings.tenants_url and settings.client_id and settings.client_secret):
            raise ConfigError("AERIE_TENANTS_URL, AERIE_CLIENT_ID and AERIE_CLIENT_SECRET must be set")
        provider = ClientCredentials.from_settings(settings, scope="platform:read")
        # One lookup at a time per process: a silent tenants service then holds one thread of
        # a worker until the read timeout, and the others answer 503 at once (aerie_client.http).
        client = ServiceClient(
            settings.tenants_url,
            token_provider=provider,
            service_name=settings.service,
            peer="tenants",
            max_in_flight=1,
        )
        return cls(client, subscriber)

    def on_change(self, listener: Callable[[str], None]) -> None:
        """Call ``listener(tenant_id)`` after a ``tenant.*`` event changed what is cached."""
        self._listeners.append(listener)

    def get(self, tenant_id: str) -> Tenant | None:
        now = self._clock()
        with self._lock:
            hit = self._cache.get(tenant_id)
            generation = self._generation
        connected = self._subscriber is not None and self._subscriber.connected
        ttl = self._subscribed_ttl_s if connected else self._unsubscribed_ttl_s
        if hit is not None and now - hit[1] < ttl:
            return hit[0]
        try:
            tenant = self._fetch(tenant_id)
        except PeerUnavailable:
            # Only a fresh-enough answer may stand in for tenants; nothing known is a 503.
            if hit is not None and now - hit[1] < self._subscribed_ttl_s and connected:
                return hit[0]
            raise
        with self._lock:
            if generation == self._generation:
                self._cache[tenant_id] = (tenant, self._clock())
        return tenant

    def cached(self, tenant_id: str) -> Tenant | None:
        """The tenant as this process knows it now, never asking tenants: KeyError when it
        would have to (not cached, or no longer fresh). For what must not wait on a peer."""
        now = self._clock()
        with self._lock:
            hit = self._cache.get(tenant_id)
        connected = self._subscriber is not None and self._subscriber.connected
        ttl = self._subscribed_ttl_s if connected else self._unsubscribed_ttl_s
        if hit is None or now - hit[1] >= ttl:
            raise KeyError(tenant_id)
        return hit[0]

    def status(self, tenant_id: str) -> str:
        tenant = self.get(tenant_id)
        if tenant is None:
            return MISSING
        return str(tenant.get("status", MISSING))

    def _fetch(self, tenant_id: str) -> Tenant | None:
        response = self._client.get(f"/v1/tenants/{tenant_id}")
        with response:
            if response.status_code == 404:
                return None
            if response.status_code != 200:
                # Our own credentials refused (401/403) is an outage of ours, not the caller's fault.
                log.error("tenant lookup refused", extra={"status": response.status_code})
                raise PeerUnavailable("tenants")
            try:
                tenant = response.json()
                if not isinstance(tenant, dict) or not isinstance(tenant["status"], str):
                    raise TypeError("not a tenant")
            except (ValueError, KeyError, TypeError):
                raise PeerUnavailable("tenants") from None
        return tenant

    def clear(self) -> None:
        with self._lock:
            self._generation += 1
            self._cache.clear()

    def _on_event(self, channel: str, message: str) -> None:
        """A ``tenant.*`` event: take the tenant it carries, or forget the tenant.

        Every process sees every tenant's events, so a new tenant is known everywhere before
        its first request; the LRU bound keeps that from growing without end.
        """
        try:
            event = json.loads(message)
            tenant_id = event["tenant_id"]
        except (ValueError, KeyError, TypeError):
            return
        if not isinstance(tenant_id, str):
            return
        tenant = (event.get("data") or {}).get("tenant") if isinstance(event, dict) else None
        with self._lock:
            self._generation += 1
            if isinstance(tenant, dict) and isinstance(tenant.get("status"), str):
                self._cache[tenant_id] = (tenant, self._clock())
            else:
                self._cache.pop(tenant_id, None)
        for listener in self._listeners:
            try:
                listener(tenant_id)
            except Exception:
                log.exception("tenant change listener failed")


class WriteGuard:
    """Refuses writes of a tenant that is not active (403 tenant_suspended)."""

    def __init__(self, source: TenantSource) -> None:
        self._source = source

    def require_active(self, tenant_id: str) -> None:
        status = self._source.status(tenant_id)
        if status != "active":
            raise errors.forbidden(
                msg("The tenant is %(status)s; only reads are allowed.", status=status), code="tenant_suspended"
            )
