"""Redis must not evict and must persist: ``/ready`` says so, and a full Redis is a 503.

Real redis-server processes configured each way the check must tell apart, and a real app
from ``create_service_app`` for what a client sees.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import falcon
import falcon.testing
import pytest
import redis

from aerie.app import Infrastructure, create_service_app
from aerie.auth.tokens import StaticKeySource
from aerie.config import ConfigError, Settings
from aerie.endpoints import PUBLIC, endpoint
from aerie.local.redis_server import RedisServer
from aerie.readiness import PERSISTENCE_SETTING, RedisReady, judge_durability, redis_ready_check
from aerie.redis import Durability, RedisProvider, inspect_durability, is_redis_full
from aerie.system import NotReady, ReadyResource
from aerie.testing.http import assert_problem
from aerie.testing.keys import TestKey

ISSUER = "https://issuer.test"


@pytest.fixture
def server_for(tmp_path: Path) -> Iterator[Any]:
    """Starts a redis-server with the given options; stops every one at the end."""
    started: list[RedisServer] = []

    def start(**options: Any) -> RedisServer:
        server = RedisServer(tmp_path / f"r{len(started)}", **options).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


def client_of(server: RedisServer, **kw: Any) -> redis.Redis:
    return redis.Redis.from_url(server.url, decode_responses=True, **kw)


def calls(client: redis.Redis, command: str) -> int:
    """How often ``command`` ran on the server (INFO commandstats), for counting a probe's cost."""
    stats = client.info("commandstats")
    return int(stats.get(f"cmdstat_{command}", {}).get("calls", 0))


# -- reading what Redis does --------------------------------------------------------------------


def test_the_local_and_test_servers_pass(server_for) -> None:
    for options in ({}, {"appendonly": False}):
        d = inspect_durability(client_of(server_for(**options)))
        assert d.source == "CONFIG GET" and d.policy == "noeviction"
        assert judge_durability(d) == (None, None), options


def test_an_evicting_policy_fails(server_for) -> None:
    d = inspect_durability(client_of(server_for(maxmemory_policy="allkeys-lru")))
    failure, doubt = judge_durability(d)
    assert failure is not None and "allkeys-lru" in failure and "noeviction" in failure and doubt is None


def test_no_persistence_fails_unless_the_operator_vouches_for_it(server_for) -> None:
    d = inspect_durability(client_of(server_for(appendonly=False, save="")))
    assert (d.aof, d.rdb) == (False, False)
    failure, _ = judge_durability(d)
    assert failure is not None and "no persistence" in failure
    assert judge_durability(d, persistence_checked=False) == (None, None)


def test_without_config_get_info_tells_the_policy_and_the_aof(server_for) -> None:
    """An ACL user that may not run CONFIG, as managed Redis often has it."""
    server = server_for(maxmemory_policy="volatile-lru")
    admin = client_of(server)
    admin.acl_setuser("app", enabled=True, passwords=["+app-pass"], keys=["*"], commands=["+@all", "-config"])
    app = redis.Redis(port=server.port, username="app", password="app-pass", decode_responses=True)
    with pytest.raises(redis.exceptions.NoPermissionError):
        app.config_get("maxmemory-policy")
    d = inspect_durability(app)
    assert (d.source, d.policy, d.aof) == ("INFO", "volatile-lru", True)
    assert "volatile-lru" in (judge_durability(d)[0] or "")


def test_info_without_aof_or_a_snapshot_is_unverified_not_failed(server_for) -> None:
    server = server_for(appendonly=False)  # save points INFO cannot show, and no snapshot yet
    client_of(server).acl_setuser("app", enabled=True, passwords=["+p"], keys=["*"], commands=["+@all", "-config"])
    app = redis.Redis(port=server.port, username="app", password="p", decode_responses=True)
    d = inspect_durability(app)
    assert (d.source, d.aof, d.rdb) == ("INFO", False, None)
    failure, doubt = judge_durability(d)
    assert failure is None and doubt is not None and PERSISTENCE_SETTING in doubt
    app.bgsave()  # ACL allows it: a snapshot seen is persistence seen
    assert _eventually(lambda: inspect_durability(app).rdb is True)
    assert judge_durability(inspect_durability(app)) == (None, None)


def test_a_redis_that_says_nothing_is_unverified() -> None:
    d = Durability(None, None, None, source="nothing")
    failure, doubt = judge_durability(d)
    assert failure is None and "maxmemory-policy could not be read" in (doubt or "")
    assert "persistence could not be confirmed" in (doubt or "")


def _eventually(predicate: Any, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


# -- the check and its cost ---------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_probe_costs_one_ping_and_durability_is_read_once_per_interval(server_for) -> None:
    server = server_for()
    client = client_of(server)
    clock = Clock()
    check = RedisReady(lambda: client, ttl_s=30.0, clock=clock)
    probes = 50
    pings, configs = calls(client, "ping"), calls(client, "config")
    for _ in range(probes):
        assert check() is None
        clock.now += 0.5  # 25 s of probes every half second
    assert calls(client, "ping") - pings == probes  # the PING of every probe
    assert calls(client, "config") - configs == 3  # one pipelined round trip: 3 CONFIG GETs
    clock.now += 30
    check()
    assert calls(client, "config") - configs == 6


def test_the_verdict_follows_a_change_after_the_interval(server_for) -> None:
    server = server_for()
    client = client_of(server)
    clock = Clock()
    check = RedisReady(lambda: client, ttl_s=30.0, clock=clock)
    check()
    client.config_set("maxmemory-policy", "allkeys-lru")
    check()  # cached
    clock.now += 30
    with pytest.raises(NotReady, match="allkeys-lru"):
        check()


def test_redis_down_is_not_cached(server_for) -> None:
    server = server_for()
    client = client_of(server, socket_connect_timeout=0.5)
    clock = Clock()
    check = RedisReady(lambda: client, clock=clock)
    server.stop()
    with pytest.raises(redis.exceptions.ConnectionError):
        check()
    server.start()
    assert check() is None


def test_the_persistence_setting_is_checked_or_unchecked(redis_url: str) -> None:
    provider = RedisProvider(Settings.from_env("demo", env(redis_url)).redis)
    assert redis_ready_check(Settings.from_env("demo", env(redis_url, **{PERSISTENCE_SETTING: "unchecked"})), provider)
    with pytest.raises(ConfigError, match=PERSISTENCE_SETTING):
        redis_ready_check(Settings.from_env("demo", env(redis_url, **{PERSISTENCE_SETTING: "maybe"})), provider)


# -- /ready: details, and one log line per change -----------------------------------------------


def test_ready_logs_a_failure_once_and_its_recovery_once(caplog: pytest.LogCaptureFixture) -> None:
    state = {"reason": "maxmemory-policy is allkeys-lru"}

    def check() -> None:
        if state["reason"]:
            raise NotReady(state["reason"])

    client = falcon.testing.TestClient(_app_with(ReadyResource({"redis": check})))
    caplog.set_level(logging.INFO, logger="aerie.ready")
    for _ in range(5):
        r = client.simulate_get("/ready")
        assert r.status_code == 503 and r.headers["Retry-After"]
        assert r.json["failed"] == ["redis"] and r.json["details"] == {"redis": state["reason"]}
    state["reason"] = ""
    for _ in range(5):
        r = client.simulate_get("/ready")
        assert r.status_code == 200 and "details" not in r.json
    messages = [(rec.getMessage(), getattr(rec, "reason", None)) for rec in caplog.records]
    assert messages == [
        ("readiness check failed", "maxmemory-policy is allkeys-lru"),
        ("readiness check recovered", None),
    ]


def _app_with(ready: ReadyResource) -> falcon.App:
    app = falcon.App()
    app.add_route("/ready", ready)
    return app


# -- a full Redis answers 503 with Retry-After ----------------------------------------------------


FORM = "application/x-www-form-urlencoded"


class WriteResource:
    def __init__(self, provider: RedisProvider) -> None:
        self._redis = provider

    @endpoint("A write", scopes=PUBLIC, status=201, body={"v": {"type": "string"}})
    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        self._redis.client.set("written", "x" * 10_000)
        resp.status = 201


class ScriptWriteResource(WriteResource):
    @endpoint("A write by a script", scopes=PUBLIC, status=201, body={"v": {"type": "string"}})
    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        self._redis.client.eval("return redis.call('SET', KEYS[1], ARGV[1])", 1, "scripted", "x" * 10_000)


class TransactionResource(WriteResource):
    @endpoint("Two writes in a MULTI", scopes=PUBLIC, status=201, body={"v": {"type": "string"}})
    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        pipe = self._redis.client.pipeline(transaction=True)
        pipe.set("first-half", "x").xadd("events", {"v": "x" * 10_000})
        pipe.execute()


class TokenLikeResource(WriteResource):
    @endpoint("A form endpoint, as the OAuth token endpoint is", scopes=PUBLIC, media=FORM)
    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        self._redis.client.xadd("events", {"v": "x" * 10_000})


def env(redis_url: str, **extra: str) -> dict[str, str]:
    return {"REDIS_URL": redis_url, "AERIE_ISSUER": ISSUER, "AERIE_JWKS_URL": "http://unused.test/jwks", **extra}


@pytest.fixture
def full_app(server_for) -> Iterator[tuple[falcon.testing.TestClient, redis.Redis]]:
    server = server_for()
    settings = Settings.from_env("demo", env(server.url))
    infra = Infrastructure.from_settings(settings, keys=StaticKeySource({"keys": [TestKey("k").public_jwk()]}))
    routes = [
        ("/write", WriteResource(infra.redis)),
        ("/script", ScriptWriteResource(infra.redis)),
        ("/multi", TransactionResource(infra.redis)),
        ("/token", TokenLikeResource(infra.redis)),
    ]
    client = falcon.testing.TestClient(create_service_app(infra, routes))
    control = client_of(server)
    assert client.simulate_get("/ready").status_code == 200
    # Below what Redis already uses: every write is refused, however memory moves meanwhile
    # (a margin above it let a small script's write through now and then).
    control.config_set("maxmemory", 1)
    yield client, control
    infra.close()


@pytest.mark.parametrize("path", ["/write", "/script", "/multi"])
def test_a_write_redis_refuses_as_full_is_a_503_with_retry_after(
    full_app, path: str, caplog: pytest.LogCaptureFixture
) -> None:
    client, control = full_app
    caplog.set_level(logging.WARNING, logger="aerie.errors")
    r = client.simulate_post(path, json={"v": "x"})
    body = assert_problem(r, 503, "unavailable")
    assert int(r.headers["Retry-After"]) >= 1 and "full" in body["detail"]
    assert [rec.getMessage() for rec in caplog.records] == ["redis is full: write refused"]
    assert control.exists("written", "scripted", "first-half", "events") == 0  # nothing half-written
    assert client.simulate_get("/ready").status_code == 200  # full is not misconfigured: reads go on


def test_a_form_endpoint_answers_rfc_6749_json_when_redis_is_full(full_app) -> None:
    client, _ = full_app
    r = client.simulate_post("/token", body="grant_type=client_credentials", headers={"Content-Type": FORM})
    assert r.status_code == 503 and int(r.headers["Retry-After"]) >= 1
    assert r.json["error"] == "temporarily_unavailable" and r.headers["Cache-Control"] == "no-store"


def test_only_the_oom_error_reply_counts_as_full() -> None:
    assert is_redis_full(redis.exceptions.OutOfMemoryError("command not allowed when used memory > 'maxmemory'."))
    assert is_redis_full(
        redis.exceptions.ResponseError(
            "Error running script (call to f_1): @user_script:1: "
            "-OOM command not allowed when used memory > 'maxmemory'."
        )
    )
    assert not is_redis_full(redis.exceptions.ResponseError("WRONGTYPE Operation against a key"))


def test_an_unverified_redis_stays_ready_with_a_note_and_one_warning(
    server_for, caplog: pytest.LogCaptureFixture
) -> None:
    server = server_for(appendonly=False)
    client_of(server).acl_setuser("app", enabled=True, passwords=["+p"], keys=["*"], commands=["+@all", "-config"])
    app = redis.Redis(port=server.port, username="app", password="p", decode_responses=True)
    clock = Clock()
    check = RedisReady(lambda: app, clock=clock)
    caplog.set_level(logging.WARNING, logger="aerie.ready")
    for _ in range(3):
        note = check()
        assert note is not None and note.startswith("unverified: persistence could not be confirmed")
        clock.now += 31
    assert [r.getMessage() for r in caplog.records] == ["redis durability unverified"]
    assert RedisReady(lambda: app, persistence_checked=False)() is None
