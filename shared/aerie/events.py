"""Events between services: the envelope, atomic publication, and a durable consumer.

A write and its event are one Redis transaction: the caller queues its data change on a
``MULTI`` pipeline, :meth:`EventPublisher.add` queues the ``XADD`` to the durable stream and
the ``PUBLISH`` for live fan-out on the same pipeline, and ``EXEC`` applies all or nothing.
So an acknowledged write always has its event and no event exists without its write.

Consumers that must not miss an event (audit, cascades) read the stream through a consumer
group with :class:`StreamConsumer`: acknowledged after handling, reclaimed from a consumer
that died with entries pending, and idempotent by event id.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import falcon
import redis
from ulid import ULID

from aerie import tracing
from aerie.auth.principal import Principal
from aerie.keyspace import LEGACY_DEAD_LETTERS, LEGACY_STREAM, UNSHARDED, Keyspace, Shard
from aerie.logs import truncated
from aerie.redis import REDIS_DOWN, RedisProvider

__all__ = [
    "DEAD_LETTER_STREAM",
    "ENVELOPE_VERSION",
    "EVENT_CHANNEL_PREFIX",
    "MAX_EVENT_CHARS",
    "STREAM_KEY",
    "BatchHandler",
    "EventContext",
    "EventPublisher",
    "StreamConsumer",
    "client_ip",
    "new_event",
    "utcnow",
]

log = logging.getLogger("aerie.events")

#: The one stream of a single-node deployment (:data:`aerie.keyspace.UNSHARDED`).
STREAM_KEY = LEGACY_STREAM
#: Where an event goes that a group failed to handle ``max_deliveries`` times (poison); a
#: sharded deployment has one beside each stream shard.
DEAD_LETTER_STREAM = LEGACY_DEAD_LETTERS
EVENT_CHANNEL_PREFIX = "aerie:event:"
#: The envelope's major version. During a rolling push old and new instances publish and
#: consume side by side, so additions (a new field in the envelope or in ``data``) keep this
#: number and every consumer ignores fields it does not know; only an incompatible change
#: bumps it, and a consumer leaves an event newer than it understands pending for a newer
#: member of its group (see ``StreamConsumer``'s ``max_version``).
ENVELOPE_VERSION = 1

#: The longest value an envelope keeps of each field that comes from a request's headers or
#: from what a caller claims (a token request's client id): whatever arrived, longer values
#: are cut, with a marker saying how long they were (:func:`aerie.logs.truncated`). These
#: are the lengths the audit trail keeps of them (``audit.entry``), so nothing downstream is
#: lost; uWSGI alone would let a User-Agent or X-Forwarded-For of 32 KiB into every event.
MAX_ENVELOPE_CHARS: Mapping[str, int] = {
    "tenant_id": 200,
    "request_id": 128,
    "ip": 64,
    "user_agent": 512,
}
#: ... and of each string in ``actor`` (its type, id and client id).
MAX_ACTOR_CHARS = 200
_TENANT_ID_CHARS, _REQUEST_ID_CHARS, _IP_CHARS, _USER_AGENT_CHARS = MAX_ENVELOPE_CHARS.values()
#: An event whose JSON is longer than this (in characters) has its ``data`` replaced by
#: ``{"truncated": true, "chars": <its length>, "sha256": <of its JSON>}`` when published,
#: and a warning is logged. Twice the 1 MiB body limit: no event of a validated request
#: comes near it, so this is a backstop for a route that copies unbounded input into an
#: event (the token endpoint once wrote 2.7 MB per denied request) and never alters a real
#: event. It replaces rather than cuts strings because consumers apply ``data`` as state
#: (the flags snapshot compiles ``data.flag``): a flags process that sees no ``revision``
#: reloads from Redis, where a silently shortened value would be served as it is.
MAX_EVENT_CHARS = 2 * 1024 * 1024


def utcnow() -> str:
    """Now as RFC 3339 UTC with millisecond precision."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def client_ip(req: falcon.Request) -> str | None:
    """The caller's address as the nearest proxy (Cloud Foundry's router) saw it.

    Routers append the address they saw to ``X-Forwarded-For``; entries before it are
    whatever the client sent, so only the last one is trusted.
    """
    forwarded = req.get_header("X-Forwarded-For")
    if forwarded:
        last = forwarded.split(",")[-1].strip()
        if last:
            return last
    return req.remote_addr


@dataclass(frozen=True)
class EventContext:
    """Who caused an event, from where: carried from the request into the envelope."""

    actor: Mapping[str, Any] | None
    request_id: str | None
    ip: str | None
    user_agent: str | None

    @classmethod
    def from_request(cls, req: falcon.Request, principal: Principal | None = None) -> EventContext:
        principal = principal or getattr(req.context, "principal", None)
        return cls(
            actor=principal.actor() if principal else None,
            request_id=getattr(req.context, "request_id", None),
            ip=client_ip(req),
            user_agent=req.user_agent,
        )

    @classmethod
    def system(cls, service: str) -> EventContext:
        actor = {"type": "service", "id": service, "client_id": None}
        return cls(actor=actor, request_id=None, ip=None, user_agent=None)

    @classmethod
    def caused_by(cls, event: Mapping[str, Any], service: str) -> EventContext:
        """The context of ``event``, for the events a consumer publishes because of it.

        A cascade's events (a deleted tenant's projects, its flag overrides) then name the
        admin and request that deleted the tenant, so the audit trail tells one story.
        """

        def text(value: object) -> str | None:
            return value if isinstance(value, str) else None

        actor = event.get("actor")
        return cls(
            actor=actor if isinstance(actor, Mapping) else cls.system(service).actor,
            request_id=text(event.get("request_id")),
            ip=text(event.get("ip")),
            user_agent=text(event.get("user_agent")),
        )


def _bounded(value: Any, limit: int) -> Any:
    return truncated(value, limit) if isinstance(value, str) and len(value) > limit else value


def _bounded_envelope(event: dict[str, Any]) -> None:
    for name, limit in MAX_ENVELOPE_CHARS.items():
        event[name] = _bounded(event[name], limit)
    if event["actor"]:
        event["actor"] = {k: _bounded(v, MAX_ACTOR_CHARS) for k, v in event["actor"].items()}


def new_event(type_: str, tenant_id: str | None, data: Mapping[str, Any], ctx: EventContext) -> dict[str, Any]:
    """The envelope of one event; request-borne fields cut to :data:`MAX_ENVELOPE_CHARS`.

    ``data`` is the caller's, unchanged: routes bound their own input (see
    :data:`MAX_EVENT_CHARS` for the backstop applied when publishing). While every field is
    short (always, short of an attack) the check is a few ``len`` calls: about 0.3 us of the
    6 us this takes.
    """
    actor = dict(ctx.actor) if ctx.actor else None
    event = {
        "id": f"evt_{ULID()}",
        "type": type_,
        "version": ENVELOPE_VERSION,
        "occurred_at": utcnow(),
        "tenant_id": tenant_id,
        "actor": actor,
        "request_id": ctx.request_id,
        "ip": ctx.ip,
        "user_agent": ctx.user_agent,
        "data": dict(data),
    }
    if tracing.enabled():
        parent = tracing.traceparent()
        if parent:
            event["traceparent"] = parent
    # Inline and call-free where it can be: this runs for every event.
    if (
        len(ctx.user_agent or "") > _USER_AGENT_CHARS
        or len(ctx.ip or "") > _IP_CHARS
        or len(ctx.request_id or "") > _REQUEST_ID_CHARS
        or len(tenant_id or "") > _TENANT_ID_CHARS
        or (actor and _has_long_string(actor))
    ):
        _bounded_envelope(event)
    return event


def _has_long_string(actor: Mapping[str, Any]) -> bool:
    # A loop, not any() over a generator, which doubled what these checks add to every event.
    for value in actor.values():  # noqa: SIM110
        if isinstance(value, str) and len(value) > MAX_ACTOR_CHARS:
            return True
    return False


def _dumps(event: Mapping[str, Any]) -> str:
    return json.dumps(event, separators=(",", ":"), ensure_ascii=False)


def _within_bound(event: Mapping[str, Any], payload: str) -> tuple[Mapping[str, Any], str]:
    """``event`` and its JSON, its ``data`` replaced by a marker (``payload`` is over :data:`MAX_EVENT_CHARS`)."""
    data_json = json.dumps(event.get("data"), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    marker = {
        "truncated": True,
        "chars": len(data_json),
        "sha256": hashlib.sha256(data_json.encode("utf-8", "surrogatepass")).hexdigest(),
    }
    log.warning(
        "event data over the size bound replaced by a marker",
        extra={"event_id": event.get("id"), "event_type": event.get("type"), "chars": len(payload)},
    )
    bounded = {**event, "data": marker}
    return bounded, _dumps(bounded)


#: The event's ``XADD`` and its ``PUBLISH`` as one script: redis-py's cluster pipeline refuses
#: ``PUBLISH`` (it has no key to route by), and a script is routed by the stream, runs in the
#: writes' ``MULTI`` on either kind of Redis, and keeps the fan-out atomic with the event. Sent
#: as ``EVAL`` each time, never ``EVALSHA``: inside a ``MULTI`` a ``NOSCRIPT`` (a failed-over
#: master's empty script cache) would fail only this command while the write around it lands.
_PUBLISH_SCRIPT = """
local id = redis.call('XADD', KEYS[1], '*', 'event', ARGV[1], 'type', ARGV[2], 'tenant_id', ARGV[3])
redis.call('PUBLISH', ARGV[4], ARGV[1])
return id
"""


class EventPublisher:
    """Queues events on the writes' transactions. The streams have no length cap: they are
    trimmed only below what every consumer group acknowledged (:mod:`aerie.stream_janitor`).

    An event goes to the stream shard of its tenant (:class:`~aerie.keyspace.Keyspace`),
    which shares the hash slot of that tenant's keys; a write whose keys are in another
    shard's slot (the platform shard's, for the tenants service) names that shard; a
    publisher built with ``shard`` sends every event there (the flags service's, whose writes
    are all in the platform shard's slot).
    """

    def __init__(
        self, keyspace: Keyspace = UNSHARDED, shard: Shard | None = None, *, stream: str | None = None
    ) -> None:
        """``stream`` is a publisher to that one stream (a scratch stream, a test's)."""
        self.keyspace = keyspace
        if stream is not None:
            shard = Shard.named(stream)
        self._shard = shard

    def add(self, pipe: Any, event: Mapping[str, Any], shard: Shard | None = None) -> None:
        """Queue ``event`` on a transaction pipeline, beside the write that causes it.

        An event over :data:`MAX_EVENT_CHARS` goes out with its ``data`` replaced by a marker:
        the check is one ``len`` of the JSON made here anyway.
        """
        pipe.execute_command(*self._script(event, self.stream_for(event, shard)))

    def stream_for(self, event: Mapping[str, Any], shard: Shard | None = None) -> str:
        """The stream shard ``event`` goes to (see the class)."""
        return (shard or self._shard or self.keyspace.of_tenant(event.get("tenant_id"))).stream

    def publish(self, redis_client: redis.Redis, event: Mapping[str, Any], shard: Shard | None = None) -> str:
        """Publish an event that accompanies no other write (a token issued, say); its stream.

        One ``EVAL``, atomic by itself: no ``MULTI`` around it (on a cluster a transaction
        pipeline costs several times the command).
        """
        stream = self.stream_for(event, shard)
        redis_client.execute_command(*self._script(event, stream))
        return stream

    @staticmethod
    def _script(event: Mapping[str, Any], stream: str) -> tuple[Any, ...]:
        payload = _dumps(event)
        if len(payload) > MAX_EVENT_CHARS:
            event, payload = _within_bound(event, payload)
        type_ = event["type"]
        return (
            "EVAL",
            _PUBLISH_SCRIPT,
            1,
            stream,
            payload,
            type_,
            event.get("tenant_id") or "",
            EVENT_CHANNEL_PREFIX + type_,
        )


Handler = Callable[[dict[str, Any]], None]
#: Batch mode: the events of one read, in stream order, as ``(entry_id, event)`` pairs.
BatchHandler = Callable[[list[tuple[str, dict[str, Any]]]], None]


class StreamConsumer:
    """Reads the durable stream as one member of a consumer group.

    Each entry is handled, then marked processed and acknowledged in one transaction. An
    entry whose event id was already processed (redelivered after a crash between the two
    steps, or published twice) is acknowledged without calling the handler again. Entries
    left pending longer than ``min_idle_ms`` by a consumer that died are claimed and handled
    here. A handler that raises leaves its entry pending, to be retried after ``min_idle_ms``.

    Batch mode (``batch_handler=`` instead of ``handler=``) hands over every well-formed
    event of one read at once and acknowledges them with one ``XACK`` after it returns; a
    handler that raises leaves the whole read pending. There is no processed-marker: the
    batch handler must itself be idempotent by event id (audit dedupes inside the very
    transaction that records the events, which a separate marker could not be part of).
    One round trip per read instead of three per event is what makes thousands of events
    per second possible.

    Rolling pushes: an event whose envelope ``version`` is above ``max_version`` is neither
    handled nor acknowledged; it stays pending until a consumer of a newer release in the
    same group claims it after ``min_idle_ms``, so old code never half-understands it and it
    is never lost.

    Poison: an entry delivered ``max_deliveries`` times without being acknowledged (its
    handler keeps failing) moves to :data:`DEAD_LETTER_STREAM`, with the group, its entry id
    and the number of deliveries, in the transaction that acknowledges it; the events behind
    it were never held up (new entries are read whatever is pending), and an operator can
    list and replay it. In batch mode a retried read that fails again is handled one event at
    a time, so one poison event does not keep its batch's good ones pending. An event too new
    for this consumer is never dead-lettered here: it waits for a newer one.
    """

    def __init__(
        self,
        redis_provider: RedisProvider,
        *,
        group: str,
        handler: Handler | None = None,
        consumer: str | None = None,
        stream: str | None = None,
        batch: int = 100,
        block_ms: int = 1000,
        min_idle_ms: int = 30_000,
        processed_ttl_s: int = 7 * 24 * 3600,
        batch_handler: BatchHandler | None = None,
        max_version: int = ENVELOPE_VERSION,
        types: Sequence[str] | None = None,
        max_deliveries: int = 5,
        dead_letters: str | None = None,
        idle_ms: int = 100,
    ) -> None:
        if (handler is None) == (batch_handler is None):
            raise ValueError("give exactly one of handler and batch_handler")
        self._batch_handler = batch_handler
        self._redis = redis_provider
        self.group = group
        self.consumer = consumer or f"{socket.gethostname()}-{os.getpid()}"
        self._handler = handler
        if stream is None:
            self._shards = redis_provider.keyspace.shards
        else:
            self._shards = (Shard.named(stream, dead_letters),)
        if dead_letters is not None and stream is None:
            self._shards = tuple(Shard(s.index, s.tag, s.stream, dead_letters) for s in self._shards)
        self._batch = batch
        self._block_ms = block_ms
        self._min_idle_ms = min_idle_ms
        self._processed_ttl_s = processed_ttl_s
        self._max_version = max_version
        self._max_deliveries = max_deliveries
        self._idle_s = idle_ms / 1000
        #: Pending entries are claimed and poison buried at most this often: with many
        #: shards, doing it on every round would cost three commands per shard per round.
        self._maintain_every_s = min(1.0, min_idle_ms / 1000)
        self._maintained_at = 0.0
        #: Per-event mode: only events whose type starts with one of these reach the handler;
        #: the rest are acknowledged in one XACK per read, with no marker written. A consumer
        #: that joins late (its group starts at the stream's beginning) catches up quickly.
        self._types = tuple(types) if types is not None else None
        self._group_ready = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def streams(self) -> tuple[str, ...]:
        return tuple(s.stream for s in self._shards)

    def ensure_group(self) -> None:
        if self._group_ready:
            return
        r = self._redis.client
        for shard in self._shards:
            try:
                # From the start of the stream: a consumer that joins late still sees old events.
                r.xgroup_create(shard.stream, self.group, id="0", mkstream=True)
            except redis.ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise
        self._group_ready = True

    def poll_once(self) -> int:
        """Handle what is pending for too long, then what is new; returns how many entries."""
        self.ensure_group()
        try:
            return self._poll()
        except redis.ResponseError as exc:
            # The group vanished (Redis restarted without its data, or the key was deleted)
            # without a connection error to tell us: create it again on the next poll.
            if "NOGROUP" in str(exc):
                self._group_ready = False
            raise

    def _poll(self) -> int:
        handled = 0
        now = time.monotonic()
        if now - self._maintained_at >= self._maintain_every_s:
            self._maintained_at = now
            for shard in self._shards:
                handled += self._maintain(shard)
        if len(self._shards) == 1:
            shard = self._shards[0]
            read = self._redis.client.xreadgroup(
                self.group, self.consumer, {shard.stream: ">"}, count=self._batch, block=self._block_ms
            )
            for _stream, entries in read or ():
                handled += self._handle_read(shard, entries)
            return handled
        # One read per shard, pipelined (one round trip per node): a blocking read can wait
        # on one slot only, so an idle round sleeps ``idle_ms`` instead.
        pipe = self._redis.client.pipeline(transaction=False)
        for shard in self._shards:
            pipe.xreadgroup(self.group, self.consumer, {shard.stream: ">"}, count=self._batch)
        reads = pipe.execute()
        got = 0
        for shard, read in zip(self._shards, reads, strict=True):
            for _stream, entries in read or ():
                got += len(entries)
                handled += self._handle_read(shard, entries)
        if not got:
            self._stop.wait(self._idle_s)
        return handled

    def _maintain(self, shard: Shard) -> int:
        """Bury poison and handle entries other consumers left pending too long, in one shard."""
        self._bury_poison(shard)
        claimed = self._redis.client.xautoclaim(
            shard.stream, self.group, self.consumer, self._min_idle_ms, "0-0", count=self._batch
        )
        # A trimmed entry comes back without fields: nothing left to handle, only to ack.
        if self._batch_handler is not None:
            return self._handle_batch(shard, claimed[1], retried=True)
        return self._handle_each(shard, claimed[1])

    def _handle_read(self, shard: Shard, entries: list[tuple[str, Mapping[str, str] | None]]) -> int:
        if self._batch_handler is not None:
            return self._handle_batch(shard, entries)
        return self._handle_each(shard, entries)

    def _handle_each(self, shard: Shard, entries: list[tuple[str, Mapping[str, str] | None]]) -> int:
        """Per-event mode; what needs no handling (trimmed, or a type not asked for) is acked at once."""
        handled = 0
        skipped: list[str] = []
        for entry_id, fields in entries:
            if not fields or not self._wanted(fields):
                skipped.append(entry_id)
            else:
                handled += self._handle(shard, entry_id, fields)
        if skipped:
            self._redis.client.xack(shard.stream, self.group, *skipped)
        return handled

    def _wanted(self, fields: Mapping[str, str]) -> bool:
        if self._types is None:
            return True
        try:
            type_ = json.loads(fields["event"])["type"]
        except (KeyError, TypeError, ValueError):
            return True  # malformed: _handle logs and acknowledges it
        return isinstance(type_, str) and type_.startswith(self._types)

    def _bury_poison(self, shard: Shard) -> int:
        """Move entries delivered ``max_deliveries`` times (and idle) to the shard's dead letters."""
        r = self._redis.client
        pending = r.xpending_range(
            shard.stream, self.group, min="-", max="+", count=self._batch, idle=self._min_idle_ms
        )
        buried = 0
        for item in pending:
            if int(item["times_delivered"]) < self._max_deliveries:
                continue
            entry_id = item["message_id"]
            found = r.xrange(shard.stream, entry_id, entry_id)
            fields = dict(found[0][1]) if found else {}
            try:
                event = json.loads(fields["event"]) if "event" in fields else None
            except ValueError:
                event = None
            if isinstance(event, dict) and self._too_new(entry_id, event):
                continue  # not poison: a newer consumer will handle it
            pipe = r.pipeline(transaction=True)
            pipe.xadd(
                shard.dead_letters,
                {
                    **fields,
                    "group": self.group,
                    "entry_id": entry_id,
                    "deliveries": str(item["times_delivered"]),
                    "dead_at": utcnow(),
                },
            )
            pipe.xack(shard.stream, self.group, entry_id)
            pipe.execute()
            buried += 1
            log.error(
                "event moved to the dead letters after repeated failures",
                extra={"entry_id": entry_id, "group": self.group, "deliveries": item["times_delivered"]},
            )
        return buried

    def _handle_batch(
        self, shard: Shard, entries: list[tuple[str, Mapping[str, str] | None]], retried: bool = False
    ) -> int:
        if not entries:
            return 0
        assert self._batch_handler is not None
        events: list[tuple[str, dict[str, Any]]] = []
        too_new: set[str] = set()
        for entry_id, fields in entries:
            try:
                event = json.loads(fields["event"]) if fields else None
                if event is not None and not isinstance(event.get("id"), str):
                    raise TypeError("event without an id")
            except (KeyError, TypeError, ValueError, AttributeError):
                log.error("malformed stream entry acknowledged and skipped", extra={"entry_id": entry_id})
                continue
            if event is not None and self._too_new(entry_id, event):
                too_new.add(entry_id)
            elif event is not None:
                events.append((entry_id, event))
        failed: set[str] = set()
        if events and retried:
            # A read that failed before: one event at a time, so a poison one holds up only itself.
            for pair in events:
                try:
                    with tracing.consuming_batch([pair], self.group, shard.stream):
                        self._batch_handler([pair])
                except REDIS_DOWN:
                    raise
                except Exception:
                    log.exception(
                        "event handler failed; entry stays pending", extra={"entry_id": pair[0], "group": self.group}
                    )
                    failed.add(pair[0])
        elif events:
            with tracing.consuming_batch(events, self.group, shard.stream):
                self._batch_handler(events)  # raises: everything of this read stays pending
        done = [entry_id for entry_id, _ in entries if entry_id not in too_new and entry_id not in failed]
        if done:
            self._redis.client.xack(shard.stream, self.group, *done)
        return len(events) - len(failed)

    def _too_new(self, entry_id: str, event: Mapping[str, Any]) -> bool:
        """Whether ``event``'s envelope is of a later major version than this consumer knows."""
        version = event.get("version", 1)
        if isinstance(version, int) and version > self._max_version:
            log.warning(
                "event of a newer envelope version left pending for a newer consumer",
                extra={"entry_id": entry_id, "envelope_version": version, "group": self.group},
            )
            return True
        return False

    def _handle(self, shard: Shard, entry_id: str, fields: Mapping[str, str]) -> int:
        r = self._redis.client
        try:
            event = json.loads(fields["event"])
            event_id = event["id"]
        except (KeyError, TypeError, ValueError):
            log.error("malformed stream entry acknowledged and skipped", extra={"entry_id": entry_id})
            r.xack(shard.stream, self.group, entry_id)
            return 0
        if self._too_new(entry_id, event):
            return 0
        # In the stream's slot, so that marking and acknowledging are one MULTI on a cluster.
        marker = f"{shard.tag}aerie:processed:{self.group}:{event_id}"
        if r.exists(marker):
            r.xack(shard.stream, self.group, entry_id)
            return 0
        try:
            with tracing.consuming(event, self.group, shard.stream):
                self._handler(event)
        except REDIS_DOWN:
            raise
        except Exception:
            log.exception(
                "event handler failed; entry stays pending", extra={"event_id": event_id, "group": self.group}
            )
            return 0
        pipe = r.pipeline(transaction=True)
        pipe.set(marker, "1", ex=self._processed_ttl_s)
        pipe.xack(shard.stream, self.group, entry_id)
        pipe.execute()
        return 1

    def run(self) -> None:
        backoff = 0.1
        while not self._stop.is_set():
            try:
                self.poll_once()
                backoff = 0.1
            except REDIS_DOWN as exc:
                log.warning("event consumer lost Redis; retrying", extra={"error_type": type(exc).__name__})
                self._group_ready = False
                time.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
            except Exception:
                log.exception("event consumer failed; retrying")
                time.sleep(backoff)
                backoff = min(backoff * 2, 5.0)

    def start(self) -> threading.Thread:
        self._stop.clear()
        self._thread = threading.Thread(target=self.run, name=f"consumer-{self.group}", daemon=True)
        self._thread.start()
        return self._thread

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
