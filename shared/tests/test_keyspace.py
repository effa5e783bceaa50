"""The keyspace: which slot a tenant's writes and their events share, and how shards spread."""

from __future__ import annotations

import json
from collections import Counter

import pytest
import redis
from redis.crc import REDIS_CLUSTER_HASH_SLOTS, key_slot

from aerie.config import ConfigError, Settings
from aerie.events import EventContext, EventPublisher, StreamConsumer, new_event
from aerie.keyspace import UNSHARDED, Keyspace, Shard, tag_of
from aerie.redis import RedisProvider
from aerie.stream_janitor import StreamJanitor


def test_unsharded_is_the_single_node_layout() -> None:
    assert UNSHARDED.streams == ("aerie:events",)
    assert UNSHARDED.of_tenant("ten_1").key("projects:{ten_1}:p:x") == "projects:{ten_1}:p:x"
    assert UNSHARDED.platform.dead_letters == "aerie:events:dead"


def test_each_shard_is_in_its_own_equal_range_of_slots() -> None:
    keyspace = Keyspace(16)
    width = REDIS_CLUSTER_HASH_SLOTS / 16
    for shard in keyspace.shards:
        slot = key_slot(shard.stream.encode())
        assert int(shard.index * width) <= slot < int((shard.index + 1) * width)
        assert key_slot(shard.dead_letters.encode()) == slot
        assert key_slot(shard.key("projects:{ten_x}:p:1").encode()) == slot, "the shard's tag decides, not the tenant's"


def test_tenants_spread_evenly_and_stably_over_the_shards() -> None:
    keyspace = Keyspace(16)
    counts = Counter(keyspace.of_tenant(f"ten_{i:05d}").index for i in range(16_000))
    assert min(counts.values()) > 900 and max(counts.values()) < 1100, counts
    assert Keyspace(16).of_tenant("ten_42") == keyspace.of_tenant("ten_42")
    assert keyspace.of_tenant(None) is keyspace.platform


def test_tag_of_reads_only_a_leading_tag() -> None:
    assert tag_of("{e3.1}aerie:events") == "{e3.1}"
    assert tag_of("aerie:events") == ""
    assert tag_of("{}x") == ""


def test_shards_are_bounded() -> None:
    with pytest.raises(ValueError):
        Keyspace(257)


def _settings(**env: str) -> Settings:
    return Settings.from_env("projects", {"REDIS_URL": "redis://127.0.0.1:6379/0", "AERIE_ISSUER": "http://t", **env})


def test_a_cluster_is_recognised_from_the_environment_or_its_binding() -> None:
    assert _settings().redis.cluster is False and _settings().redis.shards == 0
    s = _settings(AERIE_REDIS_CLUSTER="true", AERIE_REDIS_SEEDS="10.0.0.2:6379, 10.0.0.3:6380")
    assert s.redis.cluster and s.redis.shards == 16
    assert s.redis.seeds == (("10.0.0.2", 6379), ("10.0.0.3", 6380))
    binding = {
        "p.redis": [
            {"name": "r", "tags": ["redis", "cluster"], "credentials": {"host": "h", "port": 6379, "password": "p"}}
        ]
    }
    bound = Settings.from_env("projects", {"VCAP_SERVICES": json.dumps(binding), "AERIE_ISSUER": "http://t"})
    assert bound.redis.cluster and bound.redis.url == "redis://:p@h:6379/0"
    creds = {"uri": "rediss://h:1", "cluster_mode": True}
    marked = {"user-provided": [{"name": "r", "tags": ["redis"], "credentials": creds}]}
    assert Settings.from_env(
        "projects", {"VCAP_SERVICES": json.dumps(marked), "AERIE_ISSUER": "http://t"}
    ).redis.cluster


@pytest.mark.parametrize(
    "env",
    [
        {"AERIE_REDIS_CLUSTER": "maybe"},
        {"AERIE_REDIS_CLUSTER": "true", "AERIE_REDIS_SHARDS": "0"},
        {"AERIE_REDIS_SHARDS": "300"},
        {"AERIE_REDIS_SEEDS": "nohost"},
    ],
)
def test_a_bad_cluster_setting_stops_start_up(env: dict[str, str]) -> None:
    with pytest.raises(ConfigError):
        _settings(**env)


@pytest.fixture
def sharded(redis_url: str) -> RedisProvider:
    settings = _settings(REDIS_URL=redis_url, AERIE_REDIS_SHARDS="4")
    return RedisProvider(settings.redis)


def test_sharded_events_go_to_their_tenants_shard_and_every_shard_is_consumed(sharded: RedisProvider) -> None:
    keyspace = sharded.keyspace
    publisher = EventPublisher(keyspace)
    ctx = EventContext.system("test")
    tenants = [f"ten_{i}" for i in range(12)]
    for tenant_id in tenants:
        publisher.publish(sharded.client, new_event("project.created", tenant_id, {"n": 1}, ctx))
    publisher.publish(sharded.client, new_event("flag.created", None, {}, ctx), keyspace.platform)
    for tenant_id in tenants:
        entries = sharded.client.xrange(keyspace.of_tenant(tenant_id).stream)
        assert tenant_id in {fields["tenant_id"] for _id, fields in entries}
    assert len({keyspace.of_tenant(t).index for t in tenants}) > 1

    seen: list[str] = []
    consumer = StreamConsumer(sharded, group="g", handler=lambda e: seen.append(e["tenant_id"] or "-"), idle_ms=10)
    while consumer.poll_once():
        pass
    assert sorted(seen) == sorted([*tenants, "-"])
    pending = sum(sharded.client.xpending(s, "g")["pending"] for s in keyspace.streams)
    assert pending == 0
    markers = [k for k in sharded.client.scan_iter(match="*aerie:processed:g:*")]
    assert markers and all(tag_of(k) for k in markers), "markers sit in their stream's slot"


def test_the_janitor_sweeps_every_shard(sharded: RedisProvider) -> None:
    keyspace = sharded.keyspace
    ctx = EventContext.system("test")
    for i in range(8):
        EventPublisher(keyspace).publish(sharded.client, new_event("x.y", f"ten_{i}", {}, ctx))
    consumer = StreamConsumer(sharded, group="g", handler=lambda e: None, idle_ms=10)
    while consumer.poll_once():
        pass
    result = StreamJanitor(sharded, min_age_s=0).sweep()
    assert result["trimmed"] == 8 and result["length"] == 0
    assert all(sharded.client.xlen(s) == 0 for s in keyspace.streams)


def test_an_unsharded_provider_reads_the_one_stream(redis_url: str) -> None:
    provider = RedisProvider(_settings(REDIS_URL=redis_url).redis)
    assert provider.keyspace == UNSHARDED
    assert isinstance(provider.client, redis.Redis)


def test_hash_tag_is_what_redis_hashes() -> None:
    from aerie.redis import hash_tag

    assert hash_tag("{e3.1}aerie:events") == "e3.1"
    assert hash_tag("audit:{ten_1}:meta") == "ten_1"
    assert hash_tag("tenants:t:x") == "tenants:t:x"
    assert hash_tag("a{}b{c}") == "a{}b{c}", "an empty first tag means the whole key"


def test_a_write_waits_for_replicas_only_when_asked_and_never_fails_for_want_of_one(redis_url: str) -> None:
    none = RedisProvider(_settings(REDIS_URL=redis_url).redis)
    assert none.replicated("projects:{ten_1}:index") is None, "no replicas configured: nothing to wait for"
    asked = RedisProvider(_settings(REDIS_URL=redis_url, AERIE_REDIS_WAIT_REPLICAS="1", AERIE_REDIS_WAIT_MS="50").redis)
    asked.client.set("projects:{ten_1}:x", "1")
    assert asked.replicated("projects:{ten_1}:x") == 0, "this Redis has no replica: WAIT times out at 0"
    assert asked.client.get("aerie:replicated:{ten_1}") == "1", "the marker was written in the key's slot"
    assert asked.client.get("projects:{ten_1}:x") == "1", "the connection is usable afterwards"


@pytest.mark.parametrize("stream", ["aerie:test-rolling:abc", "{t1}aerie:events"])
def test_a_stream_named_alone_keeps_its_markers_and_dead_letters_in_its_slot(stream: str) -> None:
    shard = Shard.named(stream)
    slot = key_slot(stream.encode())
    assert key_slot(shard.key("aerie:processed:g:evt_1").encode()) == slot
    assert key_slot(shard.dead_letters.encode()) == slot
    assert Shard.named(stream, "elsewhere").dead_letters == "elsewhere"
