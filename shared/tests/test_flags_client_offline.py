"""The native client's listeners, snapshot files and offline mode, and the FixedFlags double.

Listeners are exercised against test_flags_client's real HTTP FakeFlagsService, so a change
travels the way it does in production (event, refetch, new snapshot, listener).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import queue
import subprocess
import sys
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from test_flags_client import CHECKOUT, NEW_DASHBOARD, UNKNOWN, FakeFlagsService, Token, free_port, snapshot_body

from aerie.testing.polling import wait_for
from aerie_client.flags.client import Flag, FlagsClient
from aerie_client.flags.evaluation import Evaluation
from aerie_client.flags.snapshot import parse_snapshot
from aerie_client.flags.testing import FixedFlags


@pytest.fixture
def service() -> Iterator[FakeFlagsService]:
    server = FakeFlagsService()
    yield server
    with contextlib.suppress(Exception):
        server.stop()


@pytest.fixture
def clients() -> Iterator[list[FlagsClient]]:
    made: list[FlagsClient] = []
    yield made
    for client in made:
        client.close()


def started(clients: list[FlagsClient], url: str, *, wait: bool = True, **options: Any) -> FlagsClient:
    settings: dict[str, Any] = {
        "poll_interval_s": 60.0,
        "safety_poll_s": 60.0,
        "debounce_s": 0.02,
        "reconnect_delay_s": 0.05,
        "backoff_initial_s": 0.05,
        "backoff_max_s": 0.3,
        "connect_timeout_s": 0.5,
        "read_timeout_s": 2.0,
        **options,
    }
    client = FlagsClient(url, Token(), **settings)
    clients.append(client)
    if wait:
        assert client.start(timeout_s=5)
    return client


def refetch(client: FlagsClient, fetches: int) -> None:
    """Ask for a fetch and wait until it is done (listeners run before the counter moves on)."""
    client.syncer.request_refresh()
    assert wait_for(lambda: client.syncer.fetches >= fetches and not client.syncer.refresh_pending)


# -- change listeners ---------------------------------------------------------------------


def test_the_first_snapshot_reports_every_key_and_a_change_only_its_keys(service, clients):
    heard: queue.Queue[tuple[frozenset[str], str]] = queue.Queue()
    client = started(clients, service.url, wait=False, stream=False)
    client.on_change(lambda keys: heard.put((keys, threading.current_thread().name)))
    assert client.start(timeout_s=5)
    keys, thread = heard.get(timeout=5)
    assert keys == {"new-dashboard", "checkout"}
    assert thread == "aerie-flags-refresher"  # the sync thread, not the caller's

    refetch(client, 2)  # the same snapshot again: nothing changed, nobody called
    assert heard.empty()

    service.set_snapshot(snapshot_body(2, checkout_default="treatment"))
    refetch(client, 3)
    assert heard.get(timeout=5)[0] == {"checkout"}

    body = snapshot_body(3, checkout_default="treatment")
    body["overrides"]["users"]["new-dashboard"]["vip"] = True
    service.set_snapshot(body)
    refetch(client, 4)
    assert heard.get(timeout=5)[0] == {"new-dashboard"}

    body = snapshot_body(4, checkout_default="treatment")
    body["tenant"]["plan"] = "enterprise"  # any rule may read the tenant: every key
    service.set_snapshot(body)
    refetch(client, 5)
    assert heard.get(timeout=5)[0] == {"new-dashboard", "checkout"}


def test_a_value_changed_from_1_to_true_is_a_change(service, clients):
    body = snapshot_body(1)
    body["flags"]["checkout"]["default"] = 1
    service.set_snapshot(body)
    client = started(clients, service.url, stream=False)
    heard: queue.Queue[frozenset[str]] = queue.Queue()
    client.on_change(heard.put)
    body = snapshot_body(2)
    body["flags"]["checkout"]["default"] = True  # Python's 1 == True, JSON's not
    service.set_snapshot(body)
    refetch(client, 2)
    assert heard.get(timeout=5) == {"checkout"}


def test_a_change_arrives_through_the_stream_to_the_listener(service, clients):
    client = started(clients, service.url)
    heard: queue.Queue[frozenset[str]] = queue.Queue()
    client.on_change(heard.put)
    assert wait_for(lambda: client.syncer.stream_connected and client.syncer.fetches >= 2)
    with contextlib.suppress(queue.Empty):
        heard.get(timeout=0.2)  # the connect's refetch may race the subscription; nothing else
    service.set_snapshot(snapshot_body(2, dashboard_for_team=False))
    service.push()
    assert heard.get(timeout=5) == {"new-dashboard"}


def test_a_raising_listener_is_logged_and_neither_stops_the_others_nor_the_sync(service, clients, caplog):
    client = started(clients, service.url, stream=False)
    heard: list[frozenset[str]] = []

    def broken(keys: frozenset[str]) -> None:
        raise RuntimeError("listener bug")

    client.on_change(broken)
    client.on_change(heard.append)
    with caplog.at_level(logging.ERROR, logger="aerie_client.flags.client"):
        for revision, default in ((2, "treatment"), (3, "control")):
            service.set_snapshot(snapshot_body(revision, checkout_default=default))
            refetch(client, revision)
    assert heard == [{"checkout"}, {"checkout"}]
    assert client.revision == 3 and client.value(CHECKOUT) == "control"
    failures = [r for r in caplog.records if r.message == "flags listener failed"]
    assert len(failures) == 2 and failures[0].exc_info[0] is RuntimeError


def test_unsubscribing_stops_the_calls(service, clients):
    client = started(clients, service.url, stream=False)
    heard: list[frozenset[str]] = []
    unsubscribe = client.on_change(heard.append)
    service.set_snapshot(snapshot_body(2, checkout_default="treatment"))
    refetch(client, 2)
    unsubscribe()
    service.set_snapshot(snapshot_body(3, checkout_default="control"))
    refetch(client, 3)
    assert heard == [{"checkout"}]


def test_stale_listeners_hear_the_outage_once_and_the_recovery(service, clients):
    client = started(clients, service.url)
    heard: queue.Queue[bool] = queue.Queue()
    client.on_stale(heard.put)
    assert wait_for(lambda: client.syncer.stream_connected)
    port = service.port
    service.stop()
    assert heard.get(timeout=5) is True
    failures = client.syncer.failed_fetches
    assert wait_for(lambda: client.syncer.failed_fetches >= failures + 2)
    assert heard.empty()  # every failed fetch after the first changes nothing
    back = FakeFlagsService(port)
    try:
        assert heard.get(timeout=10) is False
        assert client.evaluate(NEW_DASHBOARD, user_id="u1").reason == "TARGETING_MATCH"
    finally:
        back.stop()


# -- snapshot files and offline mode ------------------------------------------------------


def test_save_and_load_round_trips_every_answer(service, clients, tmp_path):
    body = snapshot_body(9)
    body["overrides"]["tenant"]["checkout"] = "treatment"
    service.set_snapshot(body)
    online = started(clients, service.url, stream=False)
    path = tmp_path / "flags.json"
    online.save_snapshot(path)
    assert parse_snapshot(json.loads(path.read_text())).to_body() == online.snapshot.to_body() == body

    offline = FlagsClient.from_file(path)
    clients.append(offline)
    assert offline.offline and offline.revision == 9
    for flag in (NEW_DASHBOARD, CHECKOUT, UNKNOWN):
        for user in ("u1", "vip", "anyone"):
            assert offline.evaluate(flag, user_id=user) == online.evaluate(flag, user_id=user)
    assert offline.evaluate(CHECKOUT) == Evaluation("treatment", "treatment", "TARGETING_MATCH", "override:tenant")


def test_an_offline_client_never_touches_the_network(tmp_path):
    path = tmp_path / "flags.json"
    path.write_text(json.dumps(snapshot_body(3)))
    before = {t for t in threading.enumerate() if t.name.startswith("aerie-flags-")}
    client = FlagsClient.from_file(path)
    assert client.start(timeout_s=0) is True
    assert client.evaluate(NEW_DASHBOARD, user_id="vip") == Evaluation(False, None, "TARGETING_MATCH", "override:user")
    assert client.is_enabled(NEW_DASHBOARD, user_id="u1") is True
    assert client.syncer is None and client.base_url is None
    assert {t for t in threading.enumerate() if t.name.startswith("aerie-flags-")} <= before
    client.close()
    assert not client.stale and client.evaluate(NEW_DASHBOARD).reason == "TARGETING_MATCH"


def test_from_file_refuses_a_missing_or_malformed_file(tmp_path):
    with pytest.raises(OSError):
        FlagsClient.from_file(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text('{"flags": []}')
    with pytest.raises(ValueError, match="flags"):
        FlagsClient.from_file(tmp_path / "bad.json")


def test_save_without_a_snapshot_refuses(clients, tmp_path):
    client = FlagsClient(f"http://127.0.0.1:{free_port()}", Token(), backoff_initial_s=0.05)
    clients.append(client)
    with pytest.raises(LookupError):
        client.save_snapshot(tmp_path / "flags.json")
    assert not (tmp_path / "flags.json").exists()


def test_a_failed_save_leaves_the_old_file_whole_and_no_temporary(service, clients, tmp_path, monkeypatch):
    client = started(clients, service.url, stream=False)
    path = tmp_path / "flags.json"
    path.write_text("previous content")

    def refuse(source: str, target: Any) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", refuse)
    with pytest.raises(OSError, match="disk full"):
        client.save_snapshot(path)
    assert path.read_text() == "previous content"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["flags.json"]

    monkeypatch.undo()
    client.save_snapshot(path)
    assert json.loads(path.read_text())["revision"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["flags.json"]


# -- the typed calls ------------------------------------------------------------------------


def test_typed_calls_answer_what_evaluate_answers(service, clients):
    client = started(clients, service.url, stream=False)
    for user in ("u1", "vip", None):
        context = {"user_id": user} if user else {}
        assert client.value(NEW_DASHBOARD, **context) == client.evaluate(NEW_DASHBOARD, **context).value
        assert client.is_enabled(NEW_DASHBOARD, **context) is (client.evaluate(NEW_DASHBOARD, **context).value is True)
    assert client.is_enabled(Flag("checkout", default=True)) is False  # "control" is not True
    assert client.value(UNKNOWN) == "fallback"
    assert client.value("not-a-flag") is None  # type: ignore[arg-type]


# -- FixedFlags ----------------------------------------------------------------------------


def test_fixed_flags_answers_like_a_client(service, clients):
    fixed = FixedFlags({"new-dashboard": True, "checkout": "treatment"})
    assert fixed.is_enabled(NEW_DASHBOARD, user_id="u1") is True
    assert fixed.value(CHECKOUT) == "treatment"
    assert fixed.evaluate(CHECKOUT).reason == "DEFAULT"
    assert fixed.is_enabled(Flag("checkout", default=True)) is False  # as the client: only True is enabled
    client = started(clients, service.url, stream=False)
    assert fixed.evaluate(UNKNOWN) == client.evaluate(UNKNOWN) == Evaluation("fallback", None, "ERROR", None)
    assert fixed.start(timeout_s=1) is True
    assert fixed.calls[0] == ("new-dashboard", {"user_id": "u1"})


def test_fixed_flags_changes_and_staleness_reach_listeners():
    fixed = FixedFlags({"new-dashboard": False})
    changes: list[frozenset[str]] = []
    stale: list[bool] = []
    fixed.on_change(changes.append)
    fixed.on_stale(stale.append)
    fixed.set("new-dashboard", True)
    assert fixed.is_enabled(NEW_DASHBOARD) is True and changes == [{"new-dashboard"}]
    fixed.set_stale(True)
    fixed.set_stale(True)
    assert fixed.evaluate(NEW_DASHBOARD).reason == "STALE" and stale == [True]
    fixed.set_stale(False)
    fixed.remove("new-dashboard")
    assert fixed.evaluate(NEW_DASHBOARD) == Evaluation(False, None, "ERROR", None)
    assert stale == [True, False] and changes[-1] == {"new-dashboard"}


def test_the_native_client_and_the_double_never_import_the_openfeature_sdk():
    code = (
        "import sys, aerie_client.flags.client, aerie_client.flags.testing\n"
        "import aerie_client.flags.snapshot, aerie_client.flags.sync\n"
        "assert not [m for m in sys.modules if m == 'openfeature' or m.startswith('openfeature.')], 'imported'\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
