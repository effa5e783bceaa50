"""The Python flags client against the real flags service under uWSGI, beside the real tenants.

``shared/tests/test_flags_client.py`` drives the client against a small server the tests
script; this module checks the same promises against the service itself, so a drift between
the two (the snapshot's shape, the stream's framing, a token the service refuses) shows here:

* a change made through the API reaches the client by the stream, not by polling (the poll
  interval is set far beyond the wait);
* the service stopped: the client keeps answering the last known values, marked ``STALE``;
* the service back on the same address: the client recovers by itself, and changes flow
  through the stream again.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from conftest import REPO, SVC_ID, SVC_SECRET, Http, service_env

from aerie.local.redis_server import RedisServer, free_port
from aerie.testing.polling import wait_for
from aerie.testing.process import UwsgiService
from aerie_client.flags.client import Flag, FlagsClient
from aerie_client.flags.evaluation import DEFAULT, STALE, TARGETING_MATCH
from aerie_client.http import ClientCredentials

pytestmark = pytest.mark.flags

#: Far beyond every wait below: a change seen in time came through the stream, not a poll.
NEVER_POLL_S = 600.0
#: Generous bounds for asynchronous hops on a busy two-core machine; the client normally
#: takes tens of milliseconds (stream event, debounce, snapshot fetch).
SEEN_WITHIN_S = 10.0


@pytest.fixture
def flags(
    redis_server: RedisServer, tenants: UwsgiService, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[UwsgiService]:
    """One flags instance of this test's own, since the test stops and restarts it."""
    logs: Path = tmp_path_factory.mktemp("logs")
    env = service_env(redis_server, tenants.url)
    service = UwsgiService(REPO / "services" / "flags", free_port(), env, log_path=logs / "flags.log")
    service.start()
    try:
        yield service
    finally:
        service.stop()


def tenant_credentials(http: Http) -> tuple[dict[str, Any], ClientCredentials, dict[str, str]]:
    """A fresh tenant; a token provider of its own flags:read client (as an application holds
    one); and headers of a flags:write client, to change the tenant's overrides."""
    admin = http.bearer()
    r = http.request(
        "POST", "/v1/tenants", json={"slug": f"fc-{uuid.uuid4().hex[:12]}", "name": "Client"}, headers=admin
    )
    assert r.status_code == 201, r.text
    tenant = r.json()

    def client(scopes: list[str]) -> dict[str, Any]:
        r = http.request(
            "POST", f"/v1/tenants/{tenant['id']}/clients", json={"name": "app", "scopes": scopes}, headers=admin
        )
        assert r.status_code == 201, r.text
        return r.json()

    reader, writer = client(["flags:read"]), client(["flags:write"])
    provider = ClientCredentials(http.base, reader["client_id"], reader["client_secret"], service_name="app")
    return tenant, provider, http.bearer(http.token(writer["client_id"], writer["client_secret"]))


def test_the_client_follows_the_service_through_changes_an_outage_and_a_restart(http: Http, flags: UwsgiService):
    _tenant, provider, writer = tenant_credentials(http)
    admin = http.bearer()
    key = f"client-{uuid.uuid4().hex[:8]}"
    flag = Flag(key, default=False)
    url = f"{flags.url}/v1/flags/{key}"
    r = requests.put(url, json={"default": False, "allow_overrides": "tenant"}, headers=admin, timeout=5)
    assert r.status_code == 201, r.text

    client = FlagsClient(
        flags.url,
        provider,
        poll_interval_s=NEVER_POLL_S,
        safety_poll_s=NEVER_POLL_S,
        backoff_initial_s=0.2,
        backoff_max_s=1.0,
        reconnect_delay_s=0.2,
        connect_timeout_s=1.0,
        read_timeout_s=2.0,
    )
    with client:
        assert client.start(timeout_s=SEEN_WITHIN_S), "no first snapshot"
        # The flag was created a moment ago: on a Redis Cluster its fan-out may reach the service
        # after the client's first snapshot, and then reaches the client by the stream.
        assert wait_for(lambda: client.evaluate(flag, user_id="u1").reason == DEFAULT, SEEN_WITHIN_S), client
        syncer = client.syncer
        assert syncer is not None
        assert wait_for(lambda: syncer.stream_connected, SEEN_WITHIN_S), "the stream never connected"

        # 1. A change through the API arrives by the stream (polling is off for the test's length).
        r = requests.put(f"{url}/overrides/tenant", json={"value": True}, headers=writer, timeout=5)
        assert r.status_code == 200, r.text
        assert wait_for(lambda: client.is_enabled(flag, user_id="u1"), SEEN_WITHIN_S), client
        seen = client.evaluate(flag, user_id="u1")
        assert (seen.value, seen.reason, seen.rule) == (True, TARGETING_MATCH, "override:tenant")

        # 2. The service goes away: the last known values, marked STALE; never an exception.
        # SIGKILL, as a crash or a lost cell: a graceful stop waits out the client's open
        # stream (uWSGI's mercy, about 8 s), which is not what this test is about.
        flags.kill()
        assert wait_for(lambda: client.evaluate(flag, user_id="u1").reason == STALE, SEEN_WITHIN_S), client
        stale = client.evaluate(flag, user_id="u1")
        assert (stale.value, stale.rule) == (True, "override:tenant")
        assert client.evaluate(Flag("never-defined", default="fallback")).value == "fallback"

        # 3. Back on the same address: the client recovers by itself (refetch with backoff,
        # stream reconnected), and the next change again comes through the stream.
        flags.start()
        assert wait_for(lambda: client.evaluate(flag, user_id="u1").reason == TARGETING_MATCH, SEEN_WITHIN_S), client
        assert not client.stale
        assert wait_for(lambda: syncer.stream_connected, SEEN_WITHIN_S), "the stream did not reconnect"
        r = requests.delete(f"{url}/overrides/tenant", headers=writer, timeout=5)
        assert r.status_code == 204, r.text
        assert wait_for(lambda: client.evaluate(flag, user_id="u1").reason == DEFAULT, SEEN_WITHIN_S), client
        assert client.value(flag, user_id="u1") is False

    requests.delete(url, headers=admin, timeout=5)


def test_a_platform_client_runs_the_flags_client_for_one_tenant(http: Http, flags: UwsgiService):
    """An Aerie service (a platform:read client) evaluates a tenant's flags as that tenant."""
    tenant, _provider, writer = tenant_credentials(http)
    admin = http.bearer()
    key = f"acting-{uuid.uuid4().hex[:8]}"
    url = f"{flags.url}/v1/flags/{key}"
    r = requests.put(url, json={"default": False, "allow_overrides": "tenant"}, headers=admin, timeout=5)
    assert r.status_code == 201, r.text
    r = requests.put(f"{url}/overrides/tenant", json={"value": True}, headers=writer, timeout=5)
    assert r.status_code == 200, r.text
    acting = ClientCredentials(http.base, SVC_ID, SVC_SECRET, scope="flags:read", tenant_id=tenant["id"])
    try:
        with FlagsClient(flags.url, acting) as client:
            assert client.start(timeout_s=SEEN_WITHIN_S), "no first snapshot"
            seen = client.evaluate(Flag(key, default=False), user_id="u1")
            assert (seen.value, seen.reason, seen.rule) == (True, TARGETING_MATCH, "override:tenant")
    finally:
        requests.delete(url, headers=admin, timeout=5)
