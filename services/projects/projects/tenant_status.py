"""Is the caller's tenant allowed to write? Asked of the tenants service, cached here.

The status comes from ``GET /v1/tenants/{id}`` with this service's own platform:read token.
Answers are cached per process and kept fresh by ``tenant.*`` events on pub/sub (each
carries the tenant document), so a suspension bites within the pub/sub delay instead of a
cache TTL. While the subscriber is not connected, events may be missed, so the cache is
trusted only for ``unsubscribed_ttl_s``. When tenants cannot be reached and nothing usable
is cached, the write is refused with 503: a write is never let through unchecked.

The source is a dependency of the app (:class:`TenantStatusSource`), so unit tests pass a
fake and service tests the real HTTP one.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from typing import Protocol

from aerie import errors
from aerie.http_client import ClientCredentials, PeerUnavailable, ServiceClient
from aerie.pubsub import Subscriber

__all__ = ["TENANT_EVENTS", "HttpTenantStatus", "TenantStatusSource", "WriteGuard"]

log = logging.getLogger("projects.tenant_status")

TENANT_EVENTS = "aerie:event:tenant.*"
#: What a tenant that the tenants service does not know counts as.
MISSING = "deleted"


class TenantStatusSource(Protocol):
    def status(self, tenant_id: str) -> str:
        """``active``, ``suspended`` or ``deleted``; raises PeerUnavailable when unknown."""
        ...


class HttpTenantStatus:
    def __init__(
        self,
        client: ServiceClient,
        subscriber: Subscriber | None = None,
        *,
        subscribed_ttl_s: float = 300.0,
        unsubscribed_ttl_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client
        self._subscriber = subscriber
        self._subscribed_ttl_s = subscribed_ttl_s
        self._unsubscribed_ttl_s = unsubscribed_ttl_s
        self._clock = clock
        self._lock = threading.Lock()
        self._cache: dict[str, tuple[str, float]] = {}
        #: Bumped by every event and reset; a fetch that raced one is not cached (it may be older).
        self._generation = 0
        if subscriber is not None:
            subscriber.on(TENANT_EVENTS, self._on_event)
            subscriber.on_connect(self.clear)

    @classmethod
    def from_settings(cls, settings: object, subscriber: Subscriber | None) -> HttpTenantStatus:
        tenants_url = getattr(settings, "tenants_url", None)
        if not tenants_url:
            raise ValueError("AERIE_TENANTS_URL is needed to ask for tenant status")
        provider = ClientCredentials.from_settings(settings, scope="platform:read")
        client = ServiceClient(
            tenants_url, token_provider=provider, service_name=getattr(settings, "service", "projects"), peer="tenants"
        )
        return cls(client, subscriber)

    def status(self, tenant_id: str) -> str:
        now = self._clock()
        with self._lock:
            hit = self._cache.get(tenant_id)
        connected = self._subscriber is not None and self._subscriber.wait_connected(0)
        ttl = self._subscribed_ttl_s if connected else self._unsubscribed_ttl_s
        if hit is not None and now - hit[1] < ttl:
            return hit[0]
        with self._lock:
            generation = self._generation
        try:
            status = self._fetch(tenant_id)
        except PeerUnavailable:
            # Only a fresh-enough answer may stand in for tenants; nothing known is a 503.
            if hit is not None and now - hit[1] < self._subscribed_ttl_s and connected:
                return hit[0]
            raise
        with self._lock:
            if generation == self._generation:
                self._cache[tenant_id] = (status, self._clock())
        return status

    def _fetch(self, tenant_id: str) -> str:
        response = self._client.get(f"/v1/tenants/{tenant_id}")
        with response:
            if response.status_code == 404:
                return MISSING
            if response.status_code != 200:
                # Our own credentials refused (401/403) is an outage of ours, not the caller's fault.
                log.error("tenant status refused", extra={"status": response.status_code})
                raise PeerUnavailable("tenants")
            try:
                status = response.json()["status"]
            except (ValueError, KeyError, TypeError):
                raise PeerUnavailable("tenants") from None
        return str(status)

    def clear(self) -> None:
        with self._lock:
            self._generation += 1
            self._cache.clear()

    def _on_event(self, channel: str, message: str) -> None:
        """A ``tenant.*`` event: take the status it carries, or forget the tenant."""
        try:
            event = json.loads(message)
            tenant_id = event["tenant_id"]
        except (ValueError, KeyError, TypeError):
            return
        tenant = (event.get("data") or {}).get("tenant") if isinstance(event, dict) else None
        with self._lock:
            self._generation += 1
            if isinstance(tenant, dict) and isinstance(tenant.get("status"), str):
                self._cache[tenant_id] = (tenant["status"], self._clock())
            else:
                self._cache.pop(tenant_id, None)


class WriteGuard:
    """Refuses writes of a tenant that is not active (403 tenant_suspended)."""

    def __init__(self, source: TenantStatusSource) -> None:
        self._source = source

    def require_active(self, tenant_id: str) -> None:
        status = self._source.status(tenant_id)
        if status != "active":
            raise errors.forbidden(f"The tenant is {status}; only reads are allowed.", code="tenant_suspended")
