"""One Redis connection pool per process, made lazily after fork, and what Redis must be.

Every service keeps its only copy of tenants, clients, flags and audit trails in Redis, so
Redis must neither evict keys to make room (a trail losing entries would still verify) nor
lose them on a restart. :func:`inspect_durability` reads what the bound Redis does about
both; :mod:`aerie.readiness` turns that into ``/ready``'s verdict."""

from __future__ import annotations

import contextlib
import logging
import os
import random
import threading
from dataclasses import dataclass, replace
from typing import Any

import redis
from redis.crc import key_slot

from aerie.config import RedisSettings, Settings
from aerie.keyspace import Keyspace

__all__ = [
    "REDIS_DOWN",
    "REDIS_FULL",
    "Durability",
    "RedisProvider",
    "ThreadClient",
    "ThreadClusterClient",
    "inspect_durability",
    "is_redis_full",
    "pool_for_threads",
]

log = logging.getLogger("aerie.redis")

#: The exceptions that mean "Redis is not answering", as opposed to a bad command.
REDIS_DOWN: tuple[type[BaseException], ...] = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)
#: A write Redis refused because it is at ``maxmemory`` under ``noeviction`` (``-OOM``, also
#: what redis-py raises for a ``MULTI`` whose queued write was refused): the same write may
#: succeed once memory is freed, so it is a 503, not a bug.
REDIS_FULL: tuple[type[BaseException], ...] = (redis.exceptions.OutOfMemoryError,)


def is_redis_full(exc: BaseException) -> bool:
    """Whether ``exc`` is Redis refusing a write for want of memory.

    Besides :data:`REDIS_FULL`: a Lua script's refused write reaches redis-py 8 from
    redis-server 6 as a plain ``ResponseError`` ("Error running script ... -OOM command not
    allowed ...").
    """
    if isinstance(exc, REDIS_FULL):
        return True
    return isinstance(exc, redis.exceptions.ResponseError) and "OOM command not allowed" in str(exc)


class ThreadClient(redis.Redis):
    """A single-connection client that one thread owns.

    ``Redis.execute_command`` is written for a client any thread may call: it takes the
    single-connection lock, builds a retry closure (redis-py's default retries nothing), times
    the call for OpenTelemetry, looks for ``HIMPORT SET`` in the arguments and then parses
    through two more layers. On a GET that was about half of the client's CPU time (py-spy
    under load, ``bench/``). The owning thread instead packs, sends and reads through the
    connection's public methods (``pack_command``, ``send_packed_command``,
    ``read_response``) and applies the client's own response callbacks, as
    ``parse_response`` does: replies, errors and disconnect-on-error stay the library's.
    Options only ``parse_response`` understands (``NEVER_DECODE``, ``EMPTY_RESPONSE``), any
    other thread, and a closed client take the library's path, lock included.
    """

    def __init__(self, connection_pool: redis.ConnectionPool) -> None:
        super().__init__(connection_pool=connection_pool, single_connection_client=True)
        self._owner = threading.get_ident()

    def execute_command(self, *args: Any, **options: Any) -> Any:
        conn = self.connection
        if conn is None or threading.get_ident() != self._owner or not _LIBRARY_OPTIONS.isdisjoint(options):
            return super().execute_command(*args, **options)
        conn.send_packed_command(conn.pack_command(*args))
        response = conn.read_response()
        options.pop("keys", None)  # for client-side caching only, as parse_response drops it
        callback = self.response_callbacks.get(args[0])
        return response if callback is None else callback(response, **options)


#: ``execute_command`` options that change how ``Redis.parse_response`` reads a reply.
_LIBRARY_OPTIONS = frozenset({redis.client.NEVER_DECODE, redis.client.EMPTY_RESPONSE})

#: Commands whose one key is their first argument: the cluster client's fast path takes these.
_ONE_KEY = frozenset(
    {
        "GET", "SET", "GETDEL", "INCR", "INCRBY", "EXPIRE", "PEXPIRE", "TTL", "PTTL",
        "HGET", "HMGET", "HGETALL", "HSET", "HDEL", "HEXISTS", "HLEN", "HKEYS", "HVALS", "HINCRBY",
        "SISMEMBER", "SMEMBERS", "SADD", "SREM", "SCARD",
        "ZSCORE", "ZRANGE", "ZRANGEBYLEX", "ZRANGEBYSCORE", "ZREVRANGE", "ZCARD", "ZADD", "ZREM",
        "XLEN", "XRANGE", "XREVRANGE", "XADD", "XACK",
    }
)  # fmt: skip
#: Scripts, routed by their first key; a script whose keys span slots is refused by Redis
#: itself (CROSSSLOT), which no fast path could make legal.
_SCRIPTS = frozenset({"EVAL", "EVALSHA"})
#: Errors after which the cluster client itself must redo the command: the slot moved or the
#: node is gone, and redis-py then refreshes its map of the cluster.
_REROUTE = (
    redis.exceptions.MovedError,
    redis.exceptions.AskError,
    redis.exceptions.TryAgainError,
    redis.exceptions.ClusterDownError,
    redis.exceptions.ReadOnlyError,
    *REDIS_DOWN,
)


class ThreadClusterClient(redis.RedisCluster):
    """The process's ``RedisCluster``, with :class:`ThreadClient`'s fast path for one-key commands.

    ``RedisCluster.execute_command`` resolves the command's policies, its keys and their
    slot, checks a connection out of the node's pool and back, and wraps all of it in its
    retry loop: on a GET that came to ~60 us on top of the round trip, which made every
    request on a cluster about half as fast as on one Redis (``bench/run.py --redis-cluster``).
    For a command of :data:`_ONE_KEY` (or a script, by its first key) without options, the
    calling thread instead asks
    redis-py's own slot map for the key's master and sends through a connection of that
    node's pool it keeps (a :class:`ThreadClient`). Anything the fast path cannot take, and
    any redirection or lost connection, goes to ``RedisCluster.execute_command``, which
    follows ``MOVED``/``ASK``, refreshes the map and retries as the library does: the
    routing is the library's, only the per-call overhead is skipped.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._local = threading.local()

    def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        # ``keys`` (redis-py's client-side cache hint, on most commands) is no option of the reply.
        if (kwargs and kwargs.keys() != {"keys"}) or len(args) < 2:
            return super().execute_command(*args, **kwargs)
        if args[0] in _ONE_KEY:
            key = args[1]
        elif args[0] in _SCRIPTS and len(args) > 3 and args[2] not in (0, "0"):
            key = args[3]  # EVAL script numkeys key...: our scripts keep every key in one slot
        else:
            return super().execute_command(*args, **kwargs)
        if not isinstance(key, str):
            return super().execute_command(*args, **kwargs)
        try:
            client = self.thread_client_for(key)
        except redis.exceptions.RedisClusterException:
            return super().execute_command(*args, **kwargs)
        return self._send(client, args, kwargs)

    def thread_client_for(self, key: str) -> ThreadClient:
        """This thread's client of the master that holds ``key``'s slot (as the map says now)."""
        slot = key_slot(key.encode("utf-8", "surrogatepass"))
        local = self._local
        if getattr(local, "pid", None) != os.getpid():
            local.by_slot, local.by_node, local.pid = {}, {}, os.getpid()
        client = local.by_slot.get(slot)
        if client is None:
            node = self.nodes_manager.get_node_from_slot(slot)
            client = local.by_node.get(node.name)
            if client is None:
                client = local.by_node[node.name] = ThreadClient(self.get_redis_connection(node).connection_pool)
            local.by_slot[slot] = client
        return client

    def _send(self, client: ThreadClient, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        try:
            return client.execute_command(*args, **kwargs)
        except _REROUTE:
            self.forget(client)
            return super().execute_command(*args, **kwargs)

    def replicas_of(self, key: str) -> int:
        """How many replicas the master of ``key``'s slot has, as redis-py's map says."""
        nodes = self.nodes_manager.slots_cache.get(key_slot(key.encode("utf-8", "surrogatepass"))) or []
        return max(len(nodes) - 1, 0)

    def forget(self, client: ThreadClient) -> None:
        """Drop this thread's client of a node and every slot it served: the next command of
        each slot asks the map again."""
        local = self._local
        local.by_slot = {k: v for k, v in getattr(local, "by_slot", {}).items() if v is not client}
        local.by_node = {k: v for k, v in getattr(local, "by_node", {}).items() if v is not client}
        with contextlib.suppress(Exception):
            client.close()


class RedisProvider:
    """Hands out Redis clients for this process, created on first use.

    Everything is keyed by the process id, so a provider built in a uWSGI master and used
    in a worker (or any forked child) gets a fresh pool instead of sharing sockets. Clients
    decode responses to ``str``.

    On a Redis Cluster (``settings.cluster``) every thread shares the process's one
    ``redis.RedisCluster``, which routes each command (and each single-slot transaction) to
    the master owning its slot and follows failovers; :attr:`keyspace` says which slot a
    service's keys are in. Callers use either client the same way.
    """

    def __init__(self, settings: RedisSettings) -> None:
        self._settings = settings
        self._lock = threading.Lock()
        self._pid: int | None = None
        self._pool: redis.ConnectionPool | None = None
        self._cluster: redis.RedisCluster | None = None
        self._local = threading.local()
        self.keyspace = Keyspace(settings.shards)

    @property
    def settings(self) -> RedisSettings:
        return self._settings

    @property
    def cluster(self) -> bool:
        return self._settings.cluster

    @property
    def client(self) -> redis.Redis:
        """This thread's client, holding one connection of the process's pool.

        A pooled client checks a connection out and back in around every command, which
        costs redis-py 8 about 30 us of each call, as much again as the round trip itself
        (``bench/``). A uWSGI thread serves one request at a time, so it keeps a
        connection of its own (a :class:`ThreadClient`); pipelines and transactions still
        draw theirs from the pool.
        The connection goes back to the pool when its thread ends.

        Like the pool's checkout, each hand-out first polls the connection (one syscall): one
        the server closed (a Redis restart) or left with unread data is dropped, and the next
        command reconnects, instead of failing once per thread after every restart.
        """
        if self._settings.cluster:
            return self._cluster_client()
        local = self._local
        pid = os.getpid()
        if getattr(local, "pid", None) != pid:
            local.client = ThreadClient(self.pool)
            local.pid = pid
        client: redis.Redis = local.client
        conn = client.connection
        if conn is not None:
            try:
                stale = conn.can_read()
            except REDIS_DOWN:
                stale = True
            if stale:
                conn.disconnect()
        return client

    @property
    def pool(self) -> redis.ConnectionPool:
        """This process's connection pool."""
        pool = self._pool
        if pool is not None and self._pid == os.getpid():
            return pool
        with self._lock:
            if self._pool is None or self._pid != os.getpid():
                self._pool = self._make_pool()
                self._pid = os.getpid()
            return self._pool

    def _cluster_client(self) -> redis.Redis:
        client = self._cluster
        if client is not None and self._pid == os.getpid():
            return client  # type: ignore[return-value]
        with self._lock:
            if self._cluster is None or self._pid != os.getpid():
                self._cluster = self._make_cluster(self._settings.read_timeout)
                self._pid = os.getpid()
            return self._cluster  # type: ignore[return-value]

    def _make_cluster(self, read_timeout: float | None) -> redis.RedisCluster:
        s = self._settings
        return ThreadClusterClient.from_url(
            s.url,
            startup_nodes=[redis.cluster.ClusterNode(host, port) for host, port in s.seeds] or None,
            max_connections=s.max_connections,
            socket_connect_timeout=s.connect_timeout,
            socket_timeout=read_timeout,
            health_check_interval=30,
            decode_responses=True,
        )

    def _make_pool(self) -> redis.ConnectionPool:
        s = self._settings
        # A plain pool, not BlockingConnectionPool: pool_for_threads sizes it for every
        # thread holding its own connection plus one more for a pipeline, so it never runs
        # dry, and the blocking pool's queue and locks cost ~11 us of every checkout.
        return redis.ConnectionPool.from_url(
            s.url,
            max_connections=s.max_connections,
            socket_connect_timeout=s.connect_timeout,
            socket_timeout=s.read_timeout,
            health_check_interval=30,
            decode_responses=True,
        )

    def transaction(self, func: Any, *watches: str) -> Any:
        """``client.transaction(func, *watches)``, then :meth:`replicated` for its slot.

        Every write a caller is told succeeded goes through here (or calls :meth:`replicated`
        itself), so that on a deployment with replicas it is on them before the answer.
        """
        result = self.client.transaction(func, *watches)
        self.replicated(watches[0])
        return result

    def replicated(self, key: str) -> int | None:
        """Wait until ``wait_replicas`` replicas hold every write made so far to ``key``'s slot.

        Redis replicates asynchronously: a write acknowledged just before its master dies
        can be missing on the replica promoted in its place. ``WAIT`` blocks until replicas
        have acknowledged everything the *calling connection* wrote; the write to wait for
        was made on another (a pipeline's), so this connection first writes a marker in the
        same slot (its replication offset is past that write's) and then waits, two commands
        in one round trip. At most ``wait_ms``: with a replica down the write still stands,
        only without the promise (logged). Returns how many replicas acknowledged, None when
        nothing is waited for (no replicas configured).
        """
        s = self._settings
        if s.wait_replicas <= 0:
            return None
        marker = f"aerie:replicated:{{{hash_tag(key)}}}"
        client = self.client
        wanted = s.wait_replicas
        if isinstance(client, ThreadClusterClient):
            # A slot whose master has no replica left (one failed over, or died) has nothing to
            # wait for: WAIT would hold every write for wait_ms and still answer 0.
            wanted = min(wanted, client.replicas_of(key))
            if wanted == 0:
                return 0
            thread = client.thread_client_for(key)
        else:
            thread = client
        try:
            conn = thread.connection
            if conn is None:
                raise RuntimeError("the thread's client holds no connection")
            commands = [("SET", marker, "1", "PX", 60_000), ("WAIT", wanted, s.wait_ms)]
            conn.send_packed_command(conn.pack_commands(commands))
            conn.read_response()
            acked = int(conn.read_response())
        except (*REDIS_DOWN, redis.exceptions.ResponseError, RuntimeError) as exc:
            # The write itself stands: only the promise is missing. A connection left half-read,
            # or a slot that moved, must not serve the next command.
            if thread.connection is not None:
                thread.connection.disconnect()
            if isinstance(client, ThreadClusterClient):
                client.forget(thread)
            log.warning("write not confirmed on replicas", extra={"error_type": type(exc).__name__})
            return 0
        if acked < wanted:
            log.warning("write not on enough replicas in time", extra={"replicas": acked, "wanted": wanted})
        return acked

    def pubsub_client(self) -> redis.Redis:
        """A client for a long-lived subscriber: no read timeout, its own connection."""
        s = self._settings
        if s.cluster:
            return self._subscriber_node()
        return redis.Redis.from_url(
            s.url,
            socket_connect_timeout=s.connect_timeout,
            socket_timeout=None,
            socket_keepalive=True,
            health_check_interval=15,
            decode_responses=True,
        )

    def _subscriber_node(self) -> redis.Redis:
        """A plain client of one live node of the cluster, picked at random.

        A cluster delivers a ``PUBLISH`` on every node, so one subscription on any node
        hears everything. The node comes from the process's cluster client, which already
        knows them all: a second ``RedisCluster`` would build a second slot map (about 3.4
        MiB of RSS a process, measured with tracemalloc and ``VmRSS``). Random, so that the
        subscribers of many instances spread over the nodes, and so that a reconnect after a
        node died tries the others.
        """
        cluster = self._cluster_client()
        assert isinstance(cluster, redis.RedisCluster)
        nodes = cluster.get_nodes()
        random.shuffle(nodes)
        failure: BaseException | None = None
        for node in nodes:
            pool = cluster.get_redis_connection(node).connection_pool
            kwargs = {
                **pool.connection_kwargs,
                "socket_timeout": None,
                "socket_keepalive": True,
                "health_check_interval": 15,
            }
            client = redis.Redis(connection_pool=redis.ConnectionPool(connection_class=pool.connection_class, **kwargs))
            try:
                client.ping()
            except REDIS_DOWN as exc:
                client.close()
                failure = exc
                continue
            return client
        raise failure or redis.exceptions.ConnectionError("the cluster client knows no node")

    def ping(self) -> bool:
        return bool(self.client.ping())


def hash_tag(key: str) -> str:
    """What Redis hashes of ``key`` to find its slot: the first non-empty ``{...}``, else all of it."""
    start = key.find("{")
    if start >= 0:
        end = key.find("}", start + 1)
        if end > start + 1:
            return key[start + 1 : end]
    return key


def pool_for_threads(settings: Settings, threads: int | None) -> Settings:
    """``settings`` with a Redis pool of two connections per thread, and some to spare.

    Every uWSGI thread holds its own connection (:attr:`RedisProvider.client`) and may take
    a second one for a pipeline; the pool refuses connections beyond its size rather than
    waiting, which a request would see as Redis being down.
    """
    wanted = 2 * (threads or 0) + 8
    if settings.redis.max_connections >= wanted:
        return settings
    return replace(settings, redis=replace(settings.redis, max_connections=wanted))


@dataclass(frozen=True)
class Durability:
    """What the bound Redis does when full and on a restart; None where it would not say.

    ``rdb`` is True when save points are configured (``CONFIG GET save``) or, when only
    ``INFO`` answers, when a snapshot was taken in this server's life: ``INFO`` does not show
    save points, so a server that has them but has not saved yet reads as None (unknown).
    """

    policy: str | None
    aof: bool | None
    rdb: bool | None
    #: Where it was read: ``CONFIG GET``, ``INFO``, or ``nothing`` (both refused).
    source: str


def inspect_durability(client: redis.Redis) -> Durability:
    """One round trip of ``CONFIG GET``; when that is refused (managed Redis often disables or
    renames ``CONFIG``, or an ACL denies it), one of ``INFO memory`` and ``INFO persistence``.

    Connection errors propagate: a Redis that does not answer says nothing about itself.
    """
    try:
        with client.pipeline(transaction=False) as pipe:
            pipe.config_get("maxmemory-policy")
            pipe.config_get("appendonly")
            pipe.config_get("save")
            policy, aof, save = pipe.execute()
        if policy and aof and save is not None:
            return Durability(
                policy=str(policy.get("maxmemory-policy") or "") or None,
                aof=str(aof.get("appendonly", "")).lower() == "yes",
                rdb=bool(str(save.get("save", "")).strip()),
                source="CONFIG GET",
            )
    except redis.exceptions.ResponseError:
        pass
    try:
        with client.pipeline(transaction=False) as pipe:
            pipe.info("memory")
            pipe.info("persistence")
            memory, persistence = pipe.execute()
    except redis.exceptions.ResponseError:
        return Durability(None, None, None, source="nothing")
    policy_info = memory.get("maxmemory_policy")
    aof_info = persistence.get("aof_enabled")
    snapshots = persistence.get("rdb_saves", 0) or 0
    last_bgsave = persistence.get("rdb_last_bgsave_time_sec", -1)
    saved = _int(snapshots, 0) > 0 or _int(last_bgsave, -1) >= 0
    return Durability(
        policy=str(policy_info) if policy_info else None,
        aof=None if aof_info is None else _int(aof_info, 0) == 1,
        rdb=True if saved else None,
        source="INFO",
    )


def _int(value: object, default: int) -> int:
    try:
        return int(value)  # type: ignore[call-overload]
    except (TypeError, ValueError):
        return default
