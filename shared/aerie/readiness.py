"""``/ready``'s check of the tenants service, for every service that asks it about tenants.

Without tenants a service has no token key and cannot check a write (a suspended tenant's
writes are refused), so it is not ready while tenants is away.

The probe is the tenants service's own ``GET /health`` (no token, no Redis on its side),
asked with a short timeout and no retries, and its verdict is kept for a few seconds:
readiness is probed often (by Cloud Foundry, per instance, and by every ``make run`` poll),
and a probe must neither hammer tenants nor hang while it is away.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from aerie.config import Settings
from aerie.http_client import PeerUnavailable, ServiceClient
from aerie.system import ReadyCheck

__all__ = ["TenantsReachable", "tenants_ready_checks"]


class TenantsReachable:
    """A ready check: returns when tenants answered lately, raises PeerUnavailable when not."""

    def __init__(
        self, client: ServiceClient, *, ttl_s: float = 3.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._client = client
        self._ttl_s = ttl_s
        self._clock = clock
        self._lock = threading.Lock()
        self._verdict: tuple[bool, float] | None = None

    @classmethod
    def at(cls, tenants_url: str, service: str) -> TenantsReachable:
        client = ServiceClient(
            tenants_url, connect_timeout=0.5, read_timeout=1.0, retries=0, service_name=service, peer="tenants"
        )
        return cls(client)

    def __call__(self) -> None:
        with self._lock:
            verdict = self._verdict
            if verdict is None or self._clock() - verdict[1] >= self._ttl_s:
                verdict = (self._probe(), self._clock())
                self._verdict = verdict
        if not verdict[0]:
            raise PeerUnavailable("tenants")

    def _probe(self) -> bool:
        try:
            with self._client.get("/health") as response:
                return response.status_code == 200
        except PeerUnavailable:
            return False


def tenants_ready_checks(settings: Settings) -> dict[str, ReadyCheck]:
    """``{"tenants": ...}`` when the service is configured to ask tenants (production always
    is; unit tests that pass a fake tenant directory are not), else nothing."""
    if not settings.tenants_url:
        return {}
    return {"tenants": TenantsReachable.at(settings.tenants_url, settings.service)}
