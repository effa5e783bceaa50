"""The tenant-deletion cascade: ``tenant.deleted`` on the durable stream removes the tenant's projects.

It reads the stream as consumer group ``projects`` (created from the stream's beginning, so
a deletion that happened while this service was down, or before it first ran, is still
handled). Purging is idempotent, so a redelivered event does no harm.

Starting: the consumer thread must run in each uWSGI worker, after the fork (threads do not
survive a fork). ``base.ini`` sets ``lazy-apps``, so ``projects.wsgi`` is imported in each
worker after it forked, and :meth:`Background.ensure_started` is called there; it is also
called on every request and every ``/ready`` probe, and notices a fork by its pid, so a
worker never runs without its consumer for longer than one request.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from typing import Any

from aerie.events import StreamConsumer
from aerie.redis import RedisProvider
from projects.storage import UnsafeAllTenants

__all__ = ["GROUP", "Background", "TenantCascade"]

log = logging.getLogger("projects.cascade")

GROUP = "projects"


class TenantCascade:
    """The stream handler: the only caller of :class:`UnsafeAllTenants`."""

    def __init__(self, redis_provider: RedisProvider, on_deleted: Callable[[str], None] | None = None) -> None:
        self._unsafe = UnsafeAllTenants(redis_provider)
        self._on_deleted = on_deleted

    def __call__(self, event: dict[str, Any]) -> None:
        if event.get("type") != "tenant.deleted":
            return
        tenant_id = event.get("tenant_id")
        if not isinstance(tenant_id, str) or not tenant_id:
            log.error("tenant.deleted without a tenant id skipped", extra={"event_id": event.get("id")})
            return
        removed = self._unsafe.purge_tenant(tenant_id)
        log.info("tenant's projects removed", extra={"tenant_id": tenant_id, "keys": removed})
        if self._on_deleted is not None:
            self._on_deleted(tenant_id)


class Background:
    """This process's stream consumer, started lazily and restarted after a fork."""

    def __init__(self, make_consumer: Callable[[], StreamConsumer]) -> None:
        self._make_consumer = make_consumer
        self._lock = threading.Lock()
        self._pid: int | None = None
        self.consumer: StreamConsumer | None = None

    def ensure_started(self) -> bool:
        if self._pid == os.getpid():
            return True
        with self._lock:
            if self._pid != os.getpid():
                self.consumer = self._make_consumer()
                self.consumer.start()
                self._pid = os.getpid()
        return True

    def stop(self) -> None:
        with self._lock:
            if self.consumer is not None and self._pid == os.getpid():
                self.consumer.stop()
            self.consumer = None
            self._pid = None
