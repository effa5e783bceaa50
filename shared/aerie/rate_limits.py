"""Requests per second per tenant, by plan, across every instance of a service.

Each tenant may make ``limit`` requests to a service in each one-second window (the limit
of its plan, :data:`DEFAULT_LIMITS` unless ``AERIE_RATE_LIMITS`` says otherwise). Counting
each request in Redis would put a round trip on every request, the flags evaluation among
them, so a process leases requests from the window's shared counter a slice at a time
(:func:`lease_size`: a twentieth of the limit) and spends them locally; one ``INCRBY`` on
a key of its own per tenant and window hands out a slice, and no more than the limit is
ever handed out in a window, whatever the number of instances. What a process leased and
did not spend is lost at the window's end, so a tenant spread over many processes may get
a little less than its limit, never more.

A tenant over its limit is refused from memory until its window ends: its refusals cost no
Redis and no other tenant's requests wait on them. Platform tokens (the services calling
each other) are not limited. When Redis cannot be asked, each process allows the whole
limit by itself for that window rather than refusing everyone while Redis is away.

This is a fixed window, so a tenant may burst to twice its limit across a window's edge;
the sliding or token-bucket algorithms of maintained limiters (``limits``) cost a Redis
call per request, which is what the leases avoid.
"""

from __future__ import annotations

import contextvars
import json
import logging
import math
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import falcon
import redis
from cachetools import TTLCache

from aerie import errors
from aerie.config import ConfigError
from aerie.i18n import msg
from aerie.redis import RedisProvider

__all__ = [
    "DEFAULT_LIMITS",
    "RATE_LIMITS",
    "RateLimitMiddleware",
    "RateLimiter",
    "lease_size",
    "limits_from_settings",
    "tenant_plan_of",
]

log = logging.getLogger("aerie.rate_limits")

#: Requests per second a tenant of each plan may make to each service.
DEFAULT_LIMITS: Mapping[str, int] = {"free": 20, "team": 100, "enterprise": 500}
#: The setting that overrides them: a JSON object of plan to requests per second (or null: no limit).
RATE_LIMITS = "AERIE_RATE_LIMITS"
#: The plan of a tenant whose plan is not known (a tenant document without one).
DEFAULT_PLAN = "free"
#: Seconds a tenant's plan is trusted once looked up: a plan change bites within this.
PLAN_TTL_S = 5.0

TenantPlan = Callable[[str], "str | None"]


class PlanUnknown(LookupError):
    """The tenant's plan is being looked up: this request is not limited."""


#: Tenants whose plan one process looks up at once in the background.
MAX_PLAN_FETCHES = 16


def tenant_plan_of(tenants: Any) -> TenantPlan:
    """The plan lookup over a :class:`~aerie.tenant_directory.TenantSource`, never waiting on it.

    A read needs nothing of the tenants service, and its limit must not make it wait there
    (a silent tenants service would hold every worker): a plan the directory has cached is
    used, and one it has not is fetched on a thread of its own while the request goes
    unlimited. A source without a cache (a test's fake) is asked directly.
    """
    cached = getattr(tenants, "cached", None)

    def plan_in(tenant: Any) -> str | None:
        value = tenant.get("plan") if tenant else None
        return value if isinstance(value, str) else None

    if cached is None:
        return lambda tenant_id: plan_in(tenants.get(tenant_id))
    fetching: set[str] = set()
    lock = threading.Lock()

    def fetch(tenant_id: str) -> None:
        try:
            tenants.get(tenant_id)  # caches it for the next request
        except Exception:  # tenants away: the next request of the tenant tries again
            log.debug("tenant plan lookup failed", exc_info=True)
        finally:
            with lock:
                fetching.discard(tenant_id)

    def plan(tenant_id: str) -> str | None:
        try:
            return plan_in(cached(tenant_id))
        except KeyError:
            with lock:
                start = tenant_id not in fetching and len(fetching) < MAX_PLAN_FETCHES
                if start:
                    fetching.add(tenant_id)
            if start:
                # In the request's context, so the fetch belongs to its trace (aerie.tracing).
                run = contextvars.copy_context().run
                threading.Thread(target=run, args=(fetch, tenant_id), name="aerie-plan-fetch", daemon=True).start()
            raise PlanUnknown(tenant_id) from None

    return plan


def limits_from_settings(extra: Mapping[str, str]) -> dict[str, int | None]:
    """The limit of each plan: the defaults, with ``AERIE_RATE_LIMITS`` laid over them."""
    limits: dict[str, int | None] = dict(DEFAULT_LIMITS)
    raw = (extra.get(RATE_LIMITS) or "").strip()
    if not raw:
        return limits
    try:
        given = json.loads(raw)
    except ValueError:
        raise ConfigError(f'{RATE_LIMITS} must be a JSON object such as {{"free": 20, "team": 100}}') from None
    if not isinstance(given, dict):
        raise ConfigError(f'{RATE_LIMITS} must be a JSON object such as {{"free": 20, "team": 100}}')
    for plan, limit in given.items():
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 10**9):
            raise ConfigError(f"{RATE_LIMITS}: the limit of {plan!r} must be a whole number from 1, or null")
        limits[plan] = limit
    return limits


def lease_size(limit: int) -> int:
    """Requests a process takes from the shared counter at once: a twentieth of the limit.

    At most twenty Redis calls per tenant, process and second, whatever the traffic, and at
    most that slice left unspent in each process at a window's end.
    """
    return max(1, math.ceil(limit / 20))


@dataclass
class _Window:
    second: int
    tokens: int  # leased here and not spent
    shared_left: int  # what the shared counter had left after our last lease
    exhausted: bool = False


@dataclass(frozen=True)
class Decision:
    allowed: bool
    limit: int
    remaining: int
    reset_s: int


class RateLimiter:
    """One service's limits in one process (thread-safe)."""

    def __init__(
        self,
        redis: RedisProvider,
        service: str,
        limits: Mapping[str, int | None],
        tenant_plan: TenantPlan,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._redis = redis
        self._service = service
        self._limits = dict(limits)
        self._tenant_plan = tenant_plan
        self._clock = clock
        self._lock = threading.Lock()
        self._windows: dict[str, _Window] = {}
        self._plans: TTLCache[str, str] = TTLCache(maxsize=4096, ttl=PLAN_TTL_S)

    def limit_of(self, tenant_id: str) -> int | None:
        plan = self._plans.get(tenant_id)
        if plan is None:
            try:
                plan = self._tenant_plan(tenant_id) or DEFAULT_PLAN
            except Exception:  # not known yet (being fetched), or the directory is away: no guess
                return None
            self._plans[tenant_id] = plan
        return self._limits.get(plan, self._limits.get(DEFAULT_PLAN))

    def check(self, tenant_id: str) -> Decision | None:
        """Spend one of the tenant's requests: None when its plan has no limit."""
        limit = self.limit_of(tenant_id)
        if limit is None:
            return None
        now = self._clock()
        second = int(now)
        reset_s = 1
        with self._lock:
            window = self._windows.get(tenant_id)
            if window is None or window.second != second:
                if len(self._windows) > 4096:
                    self._windows = {k: w for k, w in self._windows.items() if w.second == second}
                window = _Window(second, 0, limit)
                self._windows[tenant_id] = window
            if window.tokens > 0:
                window.tokens -= 1
                return Decision(True, limit, window.tokens + window.shared_left, reset_s)
            if window.exhausted:
                return Decision(False, limit, 0, reset_s)
        granted, left, last = self._lease(tenant_id, second, limit)
        with self._lock:
            if window.second == second:
                window.tokens += granted
                window.shared_left = left
                # Nothing more to lease this window: the counter is spent, or Redis is away.
                window.exhausted = window.exhausted or last
                if window.tokens > 0:
                    window.tokens -= 1
                    return Decision(True, limit, window.tokens + left, reset_s)
                window.exhausted = True
        return Decision(False, limit, 0, reset_s)

    def _lease(self, tenant_id: str, second: int, limit: int) -> tuple[int, int, bool]:
        """Take a slice of the window's shared counter: requests granted, left after it, and
        whether that was the last slice this window can give."""
        want = lease_size(limit)
        key = f"aerie:ratelimit:{{{tenant_id}}}:{self._service}:{second}"
        try:
            pipe = self._redis.client.pipeline(transaction=False)
            pipe.incrby(key, want)
            pipe.expire(key, 3)
            used, _ = pipe.execute()
        except redis.RedisError as exc:  # away, or full (noeviction refuses the INCRBY)
            log.warning("rate limit counter unusable: limiting in this process", extra={"error": type(exc).__name__})
            return limit, 0, True
        before = int(used) - want
        granted = max(0, min(want, limit - before))
        left = max(0, limit - int(used))
        return granted, left, left == 0


def _headers(resp: falcon.Response, decision: Decision) -> None:
    # draft-ietf-httpapi-ratelimit-headers (08 on): the policy by name with its quota and
    # window, and what is left of it with the seconds until it is whole again.
    resp.set_header("RateLimit-Policy", f'"tenant";q={decision.limit};w=1')
    resp.set_header("RateLimit", f'"tenant";r={decision.remaining};t={decision.reset_s}')


class RateLimitMiddleware:
    """Refuses a tenant's request over its plan's limit with 429 ``rate_limited``.

    Runs after :class:`~aerie.middleware.AuthMiddleware` (the tenant comes from the verified
    token alone) and before the body is read: a refused request costs no parsing.
    """

    def __init__(self, limiter: RateLimiter) -> None:
        self._limiter = limiter

    def process_resource(self, req: falcon.Request, resp: falcon.Response, resource: object, params: Any) -> None:
        principal = getattr(req.context, "principal", None)
        tenant_id = principal.tenant_id if principal is not None else None
        if tenant_id is None:
            return
        decision = self._limiter.check(tenant_id)
        if decision is None:
            return
        _headers(resp, decision)
        if not decision.allowed:
            # Counted with every other answer: aerie_http_request_duration_seconds_count{status="429"}.
            raise errors.Problem(
                429,
                "rate_limited",
                msg("The tenant has made more than %(limit)s requests this second.", limit=decision.limit),
                headers={
                    "Retry-After": str(decision.reset_s),
                    "RateLimit-Policy": f'"tenant";q={decision.limit};w=1',
                    "RateLimit": f'"tenant";r=0;t={decision.reset_s}',
                },
            )
