"""/metrics under uWSGI: both workers summed, by route template, with the event stream seen
from Redis; only with the metrics token on the public port."""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import KEYSPACE, Http, redis_client, start_service, tenant_with_token

from aerie.local.redis_server import RedisServer, free_port
from aerie.testing.process import UwsgiService

pytestmark = pytest.mark.flags

TOKEN = uuid.uuid4().hex
METRICS_PORT = free_port()


@pytest.fixture(scope="module")
def flags(
    redis_server: RedisServer, tenants: UwsgiService, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[UwsgiService]:
    logs: Path = tmp_path_factory.mktemp("logs")
    service = start_service(
        "flags", redis_server, tenants.url, logs, AERIE_METRICS_TOKEN=TOKEN, AERIE_METRICS_PORT=str(METRICS_PORT)
    )
    yield service
    service.stop()


def _sample(text: str, name: str, **labels: str) -> float:
    """The value of the one sample of ``name`` whose labels include ``labels``."""
    found = []
    for line in text.splitlines():
        match = re.match(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)\{(.*)\} (\S+)$", line)
        if not match or match.group(1) != name:
            continue
        have = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', match.group(2)))
        if all(have.get(k) == v for k, v in labels.items()):
            found.append(float(match.group(3)))
    assert len(found) == 1, (name, labels, found)
    return found[0]


def _metrics(http: Http, flags: UwsgiService) -> str:
    r = http.s.get(f"{flags.url}/metrics", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=5)
    assert r.status_code == 200, r.text
    assert r.headers["Content-Type"].startswith("text/plain")
    return r.text


def test_requests_of_every_worker_are_summed_by_route(http: Http, flags: UwsgiService) -> None:
    _, token = tenant_with_token(http, ["flags:read"])
    before = _metrics(http, flags)

    def count(text: str) -> float:
        try:
            return _sample(
                text, "aerie_http_request_duration_seconds_count", route="/v1/evaluate", method="POST", status="200"
            )
        except AssertionError:
            return 0.0

    for _ in range(40):  # over Connection: close, the two workers take turns
        r = http.s.post(
            f"{flags.url}/v1/evaluate", json={"context": {}}, headers={"Authorization": f"Bearer {token}"}, timeout=5
        )
        assert r.status_code == 200, r.text
    after = _metrics(http, flags)
    assert count(after) - count(before) == 40
    assert _sample(after, "aerie_token_verifications_total", result="ok") >= 40
    # A request no route matched is counted under one label, not under its path.
    http.s.get(f"{flags.url}/no/such/{uuid.uuid4().hex}", timeout=5)
    text = _metrics(http, flags)
    assert (
        _sample(text, "aerie_http_request_duration_seconds_count", route="unmatched", method="GET", status="404") >= 1
    )
    assert "/no/such/" not in text
    assert (
        _sample(text, "aerie_http_request_duration_seconds_bucket", route="/v1/evaluate", status="200", le="+Inf") >= 40
    )
    # What Redis knows, read at scrape time.
    assert _sample(text, "aerie_event_stream_readable", service="flags") == 1
    for shard in KEYSPACE.shards:
        assert _sample(text, "aerie_event_stream_length", stream=shard.stream) >= 0


def test_dead_letters_are_counted(http: Http, flags: UwsgiService, redis_server: RedisServer) -> None:
    r = redis_client(redis_server)
    dead = KEYSPACE.platform.dead_letters
    letter = r.xadd(dead, {"event": "{}", "group": "svc-test", "deliveries": "5"})
    try:
        assert _sample(_metrics(http, flags), "aerie_dead_letters", stream=dead) == r.xlen(dead)
    finally:
        r.xdel(dead, letter)


def test_the_public_port_needs_the_metrics_token(http: Http, flags: UwsgiService) -> None:
    internal = http.s.get(f"http://127.0.0.1:{METRICS_PORT}/metrics", timeout=5)
    assert internal.status_code == 200 and "aerie_http_request_duration_seconds_count" in internal.text
    # The Host header names the metrics port, the socket does not: still the public port.
    spoofed = http.s.get(f"{flags.url}/metrics", headers={"Host": f"127.0.0.1:{METRICS_PORT}"}, timeout=5)
    assert spoofed.status_code == 404
    assert http.s.get(f"{flags.url}/metrics", timeout=5).status_code == 404
    wrong = http.s.get(f"{flags.url}/metrics", headers={"Authorization": "Bearer nope"}, timeout=5)
    assert wrong.status_code == 404 and wrong.headers["Content-Type"] == "application/problem+json"


def test_open_streams_count_the_stream_mules_too(http: Http, flags: UwsgiService) -> None:
    _, token = tenant_with_token(http, ["flags:read"])

    def open_now() -> float:
        try:
            return _sample(_metrics(http, flags), "aerie_open_streams", stream="/v1/flags/stream")
        except AssertionError:
            return 0.0

    before = open_now()
    url = f"{flags.url}/v1/flags/stream"
    with http.s.get(url, headers={"Authorization": f"Bearer {token}"}, stream=True, timeout=10) as feed:
        assert feed.status_code == 200
        next(feed.iter_lines())  # the stream has begun
        assert open_now() == before + 1
    deadline = time.monotonic() + 10
    while open_now() != before and time.monotonic() < deadline:
        time.sleep(0.1)
    assert open_now() == before


def test_request_metrics_can_be_turned_off_and_the_rest_stays(
    http: Http, redis_server: RedisServer, tenants: UwsgiService, tmp_path: Path
) -> None:
    """``AERIE_REQUEST_METRICS=off``: requests and token checks are not counted (what
    ``bench/run.py --overhead`` measures without), the stream and consumer gauges still are."""
    port = free_port()
    quiet = start_service(
        "flags", redis_server, tenants.url, tmp_path, AERIE_METRICS_PORT=str(port), AERIE_REQUEST_METRICS="off"
    )
    try:
        _, token = tenant_with_token(http, ["flags:read"])
        for _ in range(5):
            r = http.s.post(
                f"{quiet.url}/v1/evaluate",
                json={"context": {}},
                headers={"Authorization": f"Bearer {token}"},
                timeout=5,
            )
            assert r.status_code == 200, r.text
        r = http.s.get(f"http://127.0.0.1:{port}/metrics", timeout=5)
        assert r.status_code == 200, r.text
        assert "aerie_http_request_duration_seconds_count{" not in r.text
        assert "aerie_token_verifications_total{" not in r.text
        assert _sample(r.text, "aerie_event_stream_readable", service="flags") == 1
    finally:
        quiet.stop()


def test_a_request_metrics_setting_that_is_neither_on_nor_off_stops_start_up() -> None:
    from aerie.app import request_metrics
    from aerie.config import ConfigError, Settings

    settings = Settings.from_env("flags", {"REDIS_URL": "redis://127.0.0.1:1/0", "AERIE_ISSUER": "http://t"})
    assert request_metrics(settings)
    with pytest.raises(ConfigError):
        request_metrics(
            Settings.from_env("flags", {**settings.extra, "REDIS_URL": "redis://x:1/0", "AERIE_REQUEST_METRICS": "no"})
        )
