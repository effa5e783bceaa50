"""Prometheus metrics of one instance, every uWSGI worker and mule summed, at ``GET /metrics``.

``prometheus_client``'s multiprocess mode does the summing: each process writes its values
to memory-mapped files in ``PROMETHEUS_MULTIPROC_DIR`` and a scrape reads them all. That
directory must be one per instance and exist before any process imports the library, so the
uWSGI master makes it (``shared-import = aerie.metrics_dir``, in every service's
``uwsgi.ini``) and every worker and mule it forks inherits it. Outside uWSGI (tests, scripts)
there is no such directory and the values are this process's own.

The library is imported when the first app is built, never at import of this module: the
master imports services' modules only to share their pages, and the choice of value class
is made at the library's import from the environment.

What Redis knows (the event stream's length, each consumer group's lag and pending count) is
read at scrape time by :class:`EventStreamCollector`, from the process that answers the
scrape; nothing per request.

``/metrics`` answers only where Cloud Foundry's metric registrar scrapes it: the internal
port ``AERIE_METRICS_PORT`` (``cf register-metrics-endpoint APP /metrics --internal-port
PORT``), which no route maps; on the public port it is 404 unless the request carries
``Authorization: Bearer $AERIE_METRICS_TOKEN``.
"""

from __future__ import annotations

import hmac
import logging
import os
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import falcon

from aerie import errors
from aerie.endpoints import PUBLIC, endpoint
from aerie.keyspace import Keyspace

__all__ = ["METRICS_PORT", "METRICS_TOKEN", "MULTIPROC_ENV", "EventStreamCollector", "Metrics", "MetricsResource"]

log = logging.getLogger("aerie.metrics")

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
#: The internal port /metrics answers on without credentials, and the token it takes elsewhere.
METRICS_PORT = "AERIE_METRICS_PORT"
METRICS_TOKEN = "AERIE_METRICS_TOKEN"  # noqa: S105 (the variable's name, not a secret)
#: Request latency buckets (seconds): a request's own CPU time is ~0.1 ms, a slow one 100 ms.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
#: The route label of a request no route matched (its path would make the label unbounded).
UNMATCHED = "unmatched"


class Metrics:
    """This process's metrics of one service; :meth:`exposition` is the whole instance's text."""

    def __init__(self, service: str) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.service = service
        self.multiprocess = bool(os.environ.get(MULTIPROC_ENV))
        # In multiprocess mode the values live in the files, and a scrape builds a registry of
        # its own over them; registering here too would only expose this process's share.
        self._registry = CollectorRegistry(auto_describe=True)
        registry = None if self.multiprocess else self._registry
        # One histogram answers both "how many" (its _count, by status too) and "how long": each
        # request costs two locked writes to the memory-mapped file (its bucket and the sum).
        # Under uWSGI every such write costs a few microseconds (bench/: tenants-get with the
        # counter beside it paid ~18 us a request more than without metrics).
        self.latency = Histogram(
            "aerie_http_request_duration_seconds",
            "Requests answered and their time from reaching the app to the answer, by route template, method "
            "and status (the _count is the number of requests)",
            ["service", "route", "method", "status"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.tokens = Counter(
            "aerie_token_verifications",
            "Bearer tokens checked, by result: ok, invalid (refused: 401), unavailable (keys unreachable: 503)",
            ["service", "result"],
            registry=registry,
        )
        self.open_streams = Gauge(
            "aerie_open_streams",
            "Event streams (SSE) open now",
            ["service", "stream"],
            registry=registry,
            multiprocess_mode="livesum",
        )
        self._children: dict[tuple[str, str, int], Any] = {}
        self._token_children: dict[str, Any] = {}
        self._collectors: list[Any] = []

    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
        """Count one answered request: a dict lookup and one observation once the labels are known."""
        key = (route, method, status)
        child = self._children.get(key)
        if child is None:
            child = self.latency.labels(self.service, route, method, str(status))
            if len(self._children) < 10_000:  # routes x methods x statuses: bounded by the app
                self._children[key] = child
        child.observe(seconds)

    def token(self, result: str) -> None:
        child = self._token_children.get(result)
        if child is None:
            child = self._token_children[result] = self.tokens.labels(self.service, result)
        child.inc()

    def add_collector(self, collector: Any) -> None:
        """A collector read at scrape time by the process that answers it (:class:`EventStreamCollector`)."""
        self._collectors.append(collector)
        if not self.multiprocess:
            self._registry.register(collector)

    def exposition(self) -> tuple[bytes, str]:
        """The text format of every process of this instance, and its content type."""
        from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

        if not self.multiprocess:
            return generate_latest(self._registry), CONTENT_TYPE_LATEST
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        for collector in self._collectors:
            registry.register(collector)
        return generate_latest(registry), CONTENT_TYPE_LATEST


class EventStreamCollector:
    """The durable event stream seen from Redis at scrape time: each shard's length, each
    consumer group's lag (entries not yet delivered to it) and pending (delivered, not
    acknowledged) over all shards, and the dead letters waiting for an operator
    (:mod:`aerie.dead_letters`)."""

    def __init__(self, service: str, client: Callable[[], Any], keyspace: Keyspace) -> None:
        self._service = service
        self._client = client
        self._shards = keyspace.shards

    def describe(self) -> Iterable[Any]:
        return []

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import GaugeMetricFamily

        up = GaugeMetricFamily("aerie_event_stream_readable", "Whether Redis answered this scrape", labels=["service"])
        try:
            redis = self._client()
            seen = []
            for shard in self._shards:
                length = redis.xlen(shard.stream)
                groups = redis.xinfo_groups(shard.stream) if length else []
                seen.append((shard, length, groups, redis.xlen(shard.dead_letters)))
        except Exception as exc:  # a scrape must answer while Redis does not
            log.warning("event stream not readable for metrics", extra={"error_type": type(exc).__name__})
            up.add_metric([self._service], 0)
            yield up
            return
        up.add_metric([self._service], 1)
        yield up
        family = GaugeMetricFamily("aerie_event_stream_length", "Entries in the event stream", labels=["stream"])
        letters = GaugeMetricFamily(
            "aerie_dead_letters", "Events a consumer group gave up on, waiting for an operator", labels=["stream"]
        )
        lags: dict[str, int] = {}
        pendings: dict[str, int] = {}
        for shard, length, groups, dead in seen:
            family.add_metric([shard.stream], length)
            letters.add_metric([shard.dead_letters], dead)
            for group in groups:
                name = _text(group.get("name"))
                if group.get("lag") is not None:  # Redis 7 reports it; null while it cannot tell
                    lags[name] = lags.get(name, 0) + int(group["lag"])
                pendings[name] = pendings.get(name, 0) + int(group.get("pending") or 0)
        yield family
        lag = GaugeMetricFamily("aerie_consumer_group_lag", "Entries not yet delivered to the group", labels=["group"])
        pending = GaugeMetricFamily(
            "aerie_consumer_group_pending", "Entries delivered to the group and not acknowledged", labels=["group"]
        )
        for name, value in lags.items():
            lag.add_metric([name], value)
        for name, value in pendings.items():
            pending.add_metric([name], value)
        yield lag
        yield pending
        yield letters


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class MetricsResource:
    """``GET /metrics``: the instance's metrics, on the metrics port or with the metrics token."""

    def __init__(self, metrics: Metrics, port: str | None, token: str | None) -> None:
        self._metrics = metrics
        self._port = port
        self._token = token.encode() if token else None

    def _allowed(self, req: falcon.Request) -> bool:
        # SERVER_PORT is the port of the socket uWSGI accepted on (not the Host header's).
        if self._port is not None and req.env.get("SERVER_PORT") == self._port:
            return True
        if self._token is None:
            return False
        scheme, _, given = (req.env.get("HTTP_AUTHORIZATION") or "").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), self._token)

    @endpoint(
        "Prometheus metrics of the whole instance",
        scopes=PUBLIC,
        response_media="text/plain",
        responses={404: "Asked on the public port without the metrics token"},
        description="Every worker and mule of the instance, summed. Answered on the internal port "
        "`AERIE_METRICS_PORT` (what `cf register-metrics-endpoint --internal-port` scrapes); on the public port "
        "only with `Authorization: Bearer <AERIE_METRICS_TOKEN>`, else 404.",
    )
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        if not self._allowed(req):
            raise errors.not_found()
        body, content_type = self._metrics.exposition()
        resp.content_type = content_type
        resp.data = body
