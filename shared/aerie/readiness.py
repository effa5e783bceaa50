"""``/ready``'s checks beyond "the process runs": Redis is safe to keep data in, tenants answers.

**Redis** (every service): it must answer, and it must keep what it is given. A Redis whose
``maxmemory-policy`` evicts drops tenants, clients, flags and whole audit trails when full
while every write still succeeds; one without persistence (neither AOF nor RDB save points)
loses everything on a restart. Either makes the instance not ready, with the reason in
``/ready``'s ``details``. What Redis does is read with ``CONFIG GET``, else ``INFO``
(:func:`aerie.redis.inspect_durability`), once per ``ttl_s``: probes come every few seconds,
configuration changes rarely, so a probe costs its ``PING`` and nothing more.

When Redis will not tell (both commands refused, or only ``INFO`` answers and it shows no AOF
and no snapshot yet), the instance stays ready: blocking every deployment that cannot be
inspected would make the check the outage. ``details`` then says ``unverified`` and one
warning is logged per worker. An operator who knows the plan persists (the provider takes
snapshots the app cannot see) sets ``AERIE_REDIS_PERSISTENCE=unchecked``: persistence is
then not judged at all, while an evicting policy, whenever it can be read, still fails.

**Tenants**: without tenants a service has no token key and cannot check a write (a suspended tenant's
writes are refused), so it is not ready while tenants is away.

The probe is the tenants service's own ``GET /health`` (no token, no Redis on its side),
asked with a short timeout and no retries, and its verdict is kept for a few seconds:
readiness is probed often (by Cloud Foundry, per instance, and by every ``make run`` poll),
and a probe must neither hammer tenants nor hang while it is away.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import redis

from aerie.config import ConfigError, Settings
from aerie.redis import Durability, RedisProvider, inspect_durability
from aerie.system import NotReady, ReadyCheck
from aerie_client.http import PeerUnavailable, ServiceClient

__all__ = [
    "PERSISTENCE_SETTING",
    "RedisReady",
    "TenantsReachable",
    "judge_durability",
    "redis_ready_check",
    "tenants_ready_checks",
]

log = logging.getLogger("aerie.ready")

#: ``unchecked``: the operator vouches for persistence the app cannot see.
PERSISTENCE_SETTING = "AERIE_REDIS_PERSISTENCE"
_PERSISTENCE_VALUES = ("", "checked", "unchecked")


def judge_durability(d: Durability, *, persistence_checked: bool = True) -> tuple[str | None, str | None]:
    """``(failure, doubt)``: why Redis is unsafe (None: it is not known to be) and what could
    not be verified (None: everything judged was seen)."""
    failures: list[str] = []
    doubts: list[str] = []
    if d.policy is None:
        doubts.append(f"maxmemory-policy could not be read ({d.source})")
    elif d.policy != "noeviction":
        failures.append(f"maxmemory-policy is {d.policy}: Redis evicts keys when full; it must be noeviction")
    if persistence_checked:
        if d.aof is False and d.rdb is False:
            failures.append("no persistence: appendonly is no and there are no save points")
        elif not d.aof and d.rdb is None:
            doubts.append(
                f"persistence could not be confirmed ({d.source}: AOF "
                f"{'off' if d.aof is False else 'unknown'}, no RDB snapshot seen); "
                f"set {PERSISTENCE_SETTING}=unchecked if the plan persists"
            )
    return ("; ".join(failures) or None, "; ".join(doubts) or None)


class RedisReady:
    """The ``redis`` ready check: ``PING`` on every probe, durability at most once per ``ttl_s``;
    on a Redis Cluster, of every master, and the cluster must serve every slot.

    Returns a note (``unverified: ...``) when Redis would not say enough, raises
    :class:`NotReady` with the reason when it evicts or does not persist, and lets connection
    errors through (not cached: the next probe asks again).
    """

    def __init__(
        self,
        client: Callable[[], redis.Redis],
        *,
        persistence_checked: bool = True,
        ttl_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client
        self._persistence_checked = persistence_checked
        self._ttl_s = ttl_s
        self._clock = clock
        self._lock = threading.Lock()
        self._verdict: tuple[str | None, str | None, float] | None = None

    def __call__(self) -> str | None:
        client = self._client()
        if isinstance(client, redis.RedisCluster):
            return self._cluster(client)
        client.ping()
        failure, doubt = self._durability()
        if failure is not None:
            raise NotReady(failure)
        return f"unverified: {doubt}" if doubt else None

    def _durability(self) -> tuple[str | None, str | None]:
        with self._lock:
            verdict = self._verdict
            if verdict is not None and self._clock() - verdict[2] < self._ttl_s:
                return verdict[0], verdict[1]
            failure, doubt = judge_durability(
                inspect_durability(self._client()), persistence_checked=self._persistence_checked
            )
            if doubt is not None and (verdict is None or verdict[1] != doubt):
                log.warning("redis durability unverified", extra={"check": "redis", "reason": doubt})
            self._verdict = (failure, doubt, self._clock())
            return failure, doubt

    def _cluster(self, cluster: redis.RedisCluster) -> str | None:
        """Every master answers and is durable, and the cluster serves every slot.

        ``PING`` and ``CLUSTER INFO`` on every probe, each master's durability at most once
        per ``ttl_s``; a master that fails is named in the reason.
        """
        primaries = cluster.get_primaries()
        for node in primaries:
            client = cluster.get_redis_connection(node)
            client.ping()
        state = cluster.get_redis_connection(primaries[0]).cluster("info").get("cluster_state")
        if state != "ok":
            raise NotReady(f"the Redis Cluster's state is {state}: some slots have no master")
        with self._lock:
            verdict = self._verdict
            if verdict is None or self._clock() - verdict[2] >= self._ttl_s:
                failures: list[str] = []
                doubts: list[str] = []
                for node in primaries:
                    failure, doubt = judge_durability(
                        inspect_durability(cluster.get_redis_connection(node)),
                        persistence_checked=self._persistence_checked,
                    )
                    if failure:
                        failures.append(f"master {node.name}: {failure}")
                    if doubt:
                        doubts.append(f"master {node.name}: {doubt}")
                verdict = ("; ".join(failures) or None, "; ".join(doubts) or None, self._clock())
                if verdict[1] is not None and (self._verdict is None or self._verdict[1] != verdict[1]):
                    log.warning("redis durability unverified", extra={"check": "redis", "reason": verdict[1]})
                self._verdict = verdict
        if verdict[0] is not None:
            raise NotReady(verdict[0])
        return f"unverified: {verdict[1]}" if verdict[1] else None


def redis_ready_check(settings: Settings, provider: RedisProvider) -> RedisReady:
    """The ``redis`` check, with ``AERIE_REDIS_PERSISTENCE`` read from ``settings``."""
    value = (settings.extra.get(PERSISTENCE_SETTING) or "").strip().lower()
    if value not in _PERSISTENCE_VALUES:
        raise ConfigError(f"{PERSISTENCE_SETTING} must be 'checked' or 'unchecked', not {value!r}")
    return RedisReady(lambda: provider.client, persistence_checked=value != "unchecked")


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
