"""Rate limits per tenant and plan (aerie.rate_limits), with a real Redis and a clock of our own."""

from __future__ import annotations

import threading
from typing import Any

import falcon
import falcon.testing
import pytest
import redis

from aerie.config import ConfigError
from aerie.rate_limits import DEFAULT_LIMITS, RateLimiter, RateLimitMiddleware, lease_size, limits_from_settings
from aerie.redis import RedisProvider, RedisSettings


class Clock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class CountingRedis:
    """The real provider, counting the pipelines the limiter sends."""

    def __init__(self, provider: RedisProvider) -> None:
        self._provider = provider
        self.pipelines = 0

    @property
    def client(self) -> Any:
        outer = self
        real = self._provider.client

        class Client:
            def pipeline(self, *args: Any, **kw: Any) -> Any:
                outer.pipelines += 1
                return real.pipeline(*args, **kw)

        return Client()


PLANS = {"ten_free": "free", "ten_team": "team", "ten_big": "enterprise"}


def limiter(provider: Any, clock: Clock, service: str = "demo", **limits: int | None) -> RateLimiter:
    return RateLimiter(provider, service, {**DEFAULT_LIMITS, **limits}, PLANS.get, clock=clock)


def allowed(lim: RateLimiter, tenant: str, n: int) -> int:
    return sum(1 for _ in range(n) if lim.check(tenant).allowed)  # type: ignore[union-attr]


def test_a_tenant_gets_its_plans_limit_each_second_and_no_more(redis_provider):
    clock = Clock()
    lim = limiter(redis_provider, clock)
    assert allowed(lim, "ten_free", 50) == 20
    assert allowed(lim, "ten_team", 150) == 100
    clock.now += 1
    assert allowed(lim, "ten_free", 50) == 20


def test_processes_share_one_limit_through_redis(redis_provider):
    clock = Clock()
    processes = [limiter(redis_provider, clock) for _ in range(4)]
    total = 0
    for _ in range(60):  # requests spread over four processes, as a router spreads them
        for lim in processes:
            total += lim.check("ten_team").allowed  # type: ignore[union-attr]
    assert 100 - 4 * lease_size(100) <= total <= 100


def test_refusals_and_most_requests_cost_no_redis_call(redis_provider):
    clock = Clock()
    counting = CountingRedis(redis_provider)
    lim = limiter(counting, clock)
    assert allowed(lim, "ten_big", 2000) == 500
    assert counting.pipelines <= 500 // lease_size(500) + 1  # one per slice, none per refusal
    before = counting.pipelines
    assert allowed(lim, "ten_big", 1000) == 0
    assert counting.pipelines == before


def test_one_tenant_over_its_limit_leaves_another_alone(redis_provider):
    clock = Clock()
    lim = limiter(redis_provider, clock)
    assert allowed(lim, "ten_free", 500) == 20
    assert allowed(lim, "ten_team", 100) == 100


def test_an_unknown_plan_has_the_free_limit_and_null_means_none(redis_provider):
    clock = Clock()
    lim = RateLimiter(
        redis_provider, "demo", {**DEFAULT_LIMITS, "team": None}, {"x": "gold", "t": "team"}.get, clock=clock
    )
    assert allowed(lim, "x", 40) == 20
    assert lim.check("t") is None


def test_a_directory_that_is_away_limits_nothing_rather_than_guessing(redis_provider):
    def away(tenant_id: str) -> str:
        raise RuntimeError("tenants is away")

    assert RateLimiter(redis_provider, "demo", DEFAULT_LIMITS, away).check("ten_free") is None


def test_without_redis_each_process_limits_alone():
    gone = RedisProvider(RedisSettings(url="redis://127.0.0.1:1/0", connect_timeout=0.2))
    lim = limiter(gone, Clock())
    assert allowed(lim, "ten_free", 50) == 20


def test_threads_of_one_process_never_exceed_the_limit(redis_provider):
    clock = Clock()
    lim = limiter(redis_provider, clock)
    counts: list[int] = []
    threads = [threading.Thread(target=lambda: counts.append(allowed(lim, "ten_team", 100))) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(counts) == 100


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("", DEFAULT_LIMITS),
        ('{"free": 5}', {**DEFAULT_LIMITS, "free": 5}),
        ('{"team": null}', {**DEFAULT_LIMITS, "team": None}),
    ],
)
def test_limits_come_from_the_setting(raw, expected):
    assert limits_from_settings({"AERIE_RATE_LIMITS": raw}) == expected


@pytest.mark.parametrize(
    "raw", ["[", "[1]", '{"free": 0}', '{"free": -1}', '{"free": 1.5}', '{"free": true}', '{"free": "5"}']
)
def test_a_malformed_setting_is_one_configuration_error(raw):
    with pytest.raises(ConfigError) as caught:
        limits_from_settings({"AERIE_RATE_LIMITS": raw})
    assert "AERIE_RATE_LIMITS" in str(caught.value)


def test_the_answer_carries_the_policy_and_a_refusal_is_429_with_retry_after(redis_provider):
    from aerie.auth.principal import Principal

    class Resource:
        def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
            resp.media = {"ok": True}

    class Authenticated:
        def process_resource(self, req: falcon.Request, resp: falcon.Response, resource: object, params: Any) -> None:
            req.context.principal = Principal(
                subject="cli_1", client_id="cli_1", tenant_id="ten_free", scopes=frozenset(), token_id="j", expires_at=0
            )

    from aerie.errors import install_error_handling

    clock = Clock()
    app = falcon.App(middleware=[Authenticated(), RateLimitMiddleware(limiter(redis_provider, clock))])
    install_error_handling(app)
    app.add_route("/", Resource())
    client = falcon.testing.TestClient(app)
    first = client.simulate_get("/")
    assert first.status_code == 200
    assert first.headers["RateLimit-Policy"] == '"tenant";q=20;w=1'
    assert first.headers["RateLimit"] == '"tenant";r=19;t=1'
    statuses = [client.simulate_get("/").status_code for _ in range(25)]
    assert statuses.count(200) == 19
    refused = client.simulate_get("/")
    assert refused.status_code == 429
    assert refused.headers["Retry-After"] == "1" and refused.headers["RateLimit"] == '"tenant";r=0;t=1'
    assert refused.json["code"] == "rate_limited" and "20" in refused.json["detail"]


def test_counters_expire(redis_provider):
    lim = limiter(redis_provider, Clock())
    lim.check("ten_free")
    r: redis.Redis = redis_provider.client
    (key,) = r.keys("aerie:ratelimit:*")
    assert 0 < r.ttl(key) <= 3 and "{ten_free}" in key


def test_a_plan_not_cached_is_fetched_aside_and_the_request_does_not_wait(redis_provider):
    import time as _time

    from aerie.rate_limits import tenant_plan_of

    release = threading.Event()

    class SlowDirectory:
        def __init__(self) -> None:
            self.known: dict[str, dict[str, str]] = {}

        def cached(self, tenant_id: str) -> dict[str, str]:
            return self.known[tenant_id]

        def get(self, tenant_id: str) -> dict[str, str]:
            release.wait(5)  # a tenants service that takes its time
            self.known[tenant_id] = {"plan": "free"}
            return self.known[tenant_id]

    directory = SlowDirectory()
    lim = RateLimiter(redis_provider, "demo", DEFAULT_LIMITS, tenant_plan_of(directory), clock=Clock())
    started = _time.monotonic()
    assert lim.check("ten_slow") is None  # unlimited while the plan is fetched
    assert _time.monotonic() - started < 0.5
    release.set()
    deadline = _time.monotonic() + 5
    while "ten_slow" not in directory.known and _time.monotonic() < deadline:
        _time.sleep(0.01)
    assert allowed(lim, "ten_slow", 30) == 20
