"""The OpenFeature provider through OpenFeature's own SDK, over a FlagsClient fed by a real HTTP server.

The server is test_flags_client's FakeFlagsService (the snapshot and the SSE stream as the flags
service serves them); each test registers the provider under its own SDK domain and listens
for events with the SDK's client handlers, so what is asserted is what an application sees.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from openfeature import api
from openfeature.evaluation_context import EvaluationContext
from openfeature.event import EventDetails, ProviderEvent
from openfeature.exception import ErrorCode, ProviderNotReadyError
from openfeature.flag_evaluation import Reason
from openfeature.provider import ProviderStatus
from test_flags_client import TOKEN, FakeFlagsService, Token, free_port

from aerie.testing.polling import wait_for
from aerie_client.flags import vectors
from aerie_client.flags.client import FlagsClient
from aerie_client.flags.openfeature import PROVIDER_NAME, AerieProvider


def doc(key: str, default: Any, **fields: Any) -> dict[str, Any]:
    return {"key": key, "enabled": True, "default": default, "rules": [], "allow_overrides": "none", **fields}


def typed_snapshot(revision: int = 1, *, banner_text: str = "hello") -> dict[str, Any]:
    return {
        "flags": {
            "dark-mode": doc(
                "dark-mode",
                False,
                version=4,
                rules=[{"conditions": [{"attribute": "country", "op": "eq", "values": ["DE"]}], "serve": True}],
            ),
            "banner": doc("banner", banner_text, version=2),
            "checkout": doc(
                "checkout",
                "control",
                variants=[{"name": "control", "weight": 50}, {"name": "treatment", "weight": 50}],
                rollout={"percentage": 100, "stickiness": "user_id"},
            ),
            "page-size": doc("page-size", 25, allow_overrides="tenant"),
            "sample-rate": doc("sample-rate", 0.25),
            "whole-rate": doc("whole-rate", 1),
            "limits": doc("limits", {"per_minute": 600}),
            "regions": doc("regions", ["eu", "us"]),
            "kill": doc("kill", True, enabled=False),
            "broken": "not a flag document",
        },
        "overrides": {"tenant": {"page-size": 50}, "users": {}},
        "tenant": {"plan": "team", "created_at": "2024-03-01T12:00:00Z", "language": "en"},
        "tenant_id": "tnt-of",
        "revision": revision,
    }


class Events:
    """Every event our provider makes the SDK deliver to one client, in order of arrival.

    Only the provider's own: a handler added before the domain has a provider is called at
    once for the SDK's no-op default provider, which is always READY.
    """

    def __init__(self, client: Any) -> None:
        self.received: queue.Queue[tuple[ProviderEvent, EventDetails]] = queue.Queue()
        for event in ProviderEvent:
            client.add_handler(event, lambda details, event=event: self._put(event, details))

    def _put(self, event: ProviderEvent, details: EventDetails) -> None:
        if details.provider_name == PROVIDER_NAME:
            self.received.put((event, details))

    def next(self, timeout: float = 5.0) -> tuple[ProviderEvent, EventDetails]:
        return self.received.get(timeout=timeout)

    def expect(self, event: ProviderEvent, timeout: float = 5.0) -> EventDetails:
        got, details = self.next(timeout)
        assert got == event, (got, details)
        return details

    def none_within(self, seconds: float) -> bool:
        try:
            got = self.received.get(timeout=seconds)
        except queue.Empty:
            return True
        raise AssertionError(f"unexpected event {got}")


_domains = iter(range(1_000_000))


@pytest.fixture
def sdk() -> Iterator[None]:
    yield
    api.clear_providers()


@pytest.fixture
def service() -> Iterator[FakeFlagsService]:
    server = FakeFlagsService()
    server.set_snapshot(typed_snapshot())
    yield server
    with contextlib.suppress(Exception):
        server.stop()


@pytest.fixture
def clients() -> Iterator[list[FlagsClient]]:
    made: list[FlagsClient] = []
    yield made
    for client in made:
        client.close()


def flags_client(clients: list[FlagsClient], url: str, **options: Any) -> FlagsClient:
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
    return client


def registered(provider: AerieProvider, *, wait: bool = True) -> tuple[Any, Events]:
    """An SDK client over ``provider`` in a domain of its own, and its events from the start."""
    domain = f"aerie-test-{next(_domains)}"
    of_client = api.get_client(domain)
    events = Events(of_client)
    if wait:
        api.set_provider_and_wait(provider, domain=domain)
    else:
        api.set_provider(provider, domain=domain)
    return of_client, events


def ready_client(clients: list[FlagsClient], service: FakeFlagsService, **options: Any) -> tuple[Any, Events]:
    of_client, events = registered(AerieProvider(flags_client(clients, service.url, **options)))
    events.expect(ProviderEvent.PROVIDER_READY)
    return of_client, events


# -- typed resolution -------------------------------------------------------------------


def test_each_typed_resolution_answers_the_engines_value(sdk, service, clients):
    of, _ = ready_client(clients, service)
    germany = EvaluationContext(targeting_key="u1", attributes={"country": "DE"})

    dark = of.get_boolean_details("dark-mode", False, germany)
    assert (dark.value, dark.reason, dark.error_code) == (True, Reason.TARGETING_MATCH, None)
    assert dark.flag_metadata == {"revision": 4, "rule": "rules[0]"}
    assert of.get_boolean_details("dark-mode", True, EvaluationContext("u1", {"country": "US"})).reason == (
        Reason.DEFAULT
    )
    assert of.get_boolean_details("kill", True).value is False
    assert of.get_boolean_details("kill", True).reason == Reason.DISABLED

    banner = of.get_string_details("banner", "fallback")
    assert (banner.value, banner.reason, banner.flag_metadata) == ("hello", Reason.DEFAULT, {"revision": 2})
    checkout = of.get_string_details("checkout", "legacy", EvaluationContext(targeting_key="u1"))
    assert checkout.value in ("control", "treatment") and checkout.variant == checkout.value
    assert checkout.reason == Reason.SPLIT

    page = of.get_integer_details("page-size", 10)
    assert (page.value, page.reason, page.flag_metadata) == (50, Reason.TARGETING_MATCH, {"rule": "override:tenant"})

    rate = of.get_float_details("sample-rate", 1.0)
    assert (rate.value, rate.reason, rate.error_code) == (0.25, Reason.DEFAULT, None)
    whole = of.get_float_details("whole-rate", 0.5)  # JSON's 1 is a float too
    assert whole.value == 1.0 and type(whole.value) is float and whole.error_code is None

    assert of.get_object_value("limits", {}) == {"per_minute": 600}
    assert of.get_object_value("regions", []) == ["eu", "us"]


@pytest.mark.parametrize(
    ("kind", "key", "default"),
    [
        ("integer", "dark-mode", 7),  # True is not an integer
        ("float", "dark-mode", 0.5),
        ("boolean", "page-size", False),  # nor is 50 a boolean
        ("boolean", "banner", True),
        ("string", "page-size", "x"),
        ("string", "limits", "x"),
        ("integer", "sample-rate", 3),  # 0.25 is not an integer
        ("object", "banner", {"fallback": True}),
        ("boolean", "limits", True),
    ],
)
def test_a_value_of_the_wrong_type_answers_the_default_with_type_mismatch(sdk, service, clients, kind, key, default):
    of, _ = ready_client(clients, service)
    details = getattr(of, f"get_{kind}_details")(key, default, EvaluationContext("u1", {"country": "DE"}))
    assert details.error_code == ErrorCode.TYPE_MISMATCH
    assert details.value == default and type(details.value) is type(default)
    assert details.reason == Reason.ERROR


def test_an_unknown_flag_is_flag_not_found(sdk, service, clients):
    of, _ = ready_client(clients, service)
    details = of.get_string_details("no-such-flag", "fallback")
    assert (details.value, details.error_code, details.reason) == ("fallback", ErrorCode.FLAG_NOT_FOUND, Reason.ERROR)


def test_a_flag_the_engine_cannot_evaluate_is_general_not_a_bare_error(sdk, service, clients):
    of, _ = ready_client(clients, service)
    details = of.get_boolean_details("broken", True)
    assert (details.value, details.error_code, details.reason) == (True, ErrorCode.GENERAL, Reason.ERROR)


def test_the_provider_answers_like_the_native_client(sdk, service, clients):
    client = flags_client(clients, service.url)
    of, events = registered(AerieProvider(client))
    events.expect(ProviderEvent.PROVIDER_READY)
    from aerie_client.flags.client import Flag

    for user in (f"user-{i}" for i in range(200)):
        native = client.evaluate(Flag("checkout", default="legacy"), user_id=user)
        details = of.get_string_details("checkout", "legacy", EvaluationContext(targeting_key=user))
        assert (details.value, details.variant, details.reason) == (native.value, native.variant, native.reason)


# -- the service's vectors: targeting_key is user_id ------------------------------------

USER_VECTORS = [
    vector
    for vector in vectors.load()
    if type(vector["context"].get("user_id")) is str
    and vector["context"]["user_id"]
    and vector["expected"]["value"] is not None
    and (vector["flag"].get("rollout") or {}).get("stickiness", "user_id") == "user_id"
]
_GETTERS = {bool: "boolean", str: "string", int: "integer", float: "float", dict: "object", list: "object"}
_DEFAULTS = {bool: None, str: "\x00default", int: -987654, float: -1.5, dict: {"d": 1}, list: ["d"]}


def vector_snapshot(vector: dict[str, Any]) -> dict[str, Any]:
    key = vector["flag"]["key"]
    given = vector.get("overrides") or {}
    return {
        "flags": {key: vector["flag"]},
        "overrides": {
            "tenant": {key: given["tenant"]} if "tenant" in given else {},
            "users": {key: {vector["context"]["user_id"]: given["user"]}} if "user" in given else {},
        },
        "tenant": vector["tenant"],
        "tenant_id": vector["tenant_id"],
        "revision": 1,
    }


def test_the_vectors_cover_rollouts_and_user_overrides():
    assert sum("bucket" in v["expected"] for v in USER_VECTORS) >= 10
    assert any("user" in (v.get("overrides") or {}) for v in USER_VECTORS)


@pytest.mark.parametrize("vector", USER_VECTORS, ids=[v["name"] for v in USER_VECTORS])
def test_targeting_key_buckets_and_overrides_as_the_services_vectors(sdk, clients, vector):
    server = FakeFlagsService()
    try:
        server.set_snapshot(vector_snapshot(vector))
        of, _ = ready_client(clients, server, stream=False)
        context = dict(vector["context"])
        targeting_key = context.pop("user_id")
        expected = vector["expected"]
        kind = type(expected["value"])
        default = _DEFAULTS[kind] if kind is not bool else not expected["value"]
        details = getattr(of, f"get_{_GETTERS[kind]}_details")(
            vector["flag"]["key"], default, EvaluationContext(targeting_key=targeting_key, attributes=context)
        )
        assert details.error_code is None, details
        assert (details.value, details.variant, details.reason) == (
            expected["value"],
            expected["variant"],
            expected["reason"],
        )
        assert details.flag_metadata.get("rule") == expected["rule"]
    finally:
        server.stop()


# -- readiness and events ---------------------------------------------------------------


def test_before_the_first_snapshot_provider_not_ready_then_ready_when_it_arrives(sdk, clients):
    port = free_port()
    client = flags_client(clients, f"http://127.0.0.1:{port}")
    with pytest.raises(ProviderNotReadyError):  # set_provider_and_wait says no snapshot came in time
        registered(AerieProvider(client, init_timeout_s=0.2))
    of, events = registered(AerieProvider(client, init_timeout_s=0.2), wait=False)
    details = events.expect(ProviderEvent.PROVIDER_ERROR)
    assert details.error_code == ErrorCode.PROVIDER_NOT_READY

    answer = of.get_boolean_details("dark-mode", True)
    assert (answer.value, answer.error_code, answer.reason) == (True, ErrorCode.PROVIDER_NOT_READY, Reason.ERROR)
    assert of.get_provider_status() == ProviderStatus.ERROR

    server = FakeFlagsService(port)
    try:
        server.set_snapshot(typed_snapshot())
        events.expect(ProviderEvent.PROVIDER_READY)
        assert of.get_provider_status() == ProviderStatus.READY
        assert of.get_boolean_details("dark-mode", False, EvaluationContext("u", {"country": "DE"})).value is True
        assert events.none_within(0.3)  # the first snapshot is READY, not also a change
    finally:
        server.stop()


def test_ready_comes_once_when_the_snapshot_is_there_at_initialize(sdk, service, clients):
    client = flags_client(clients, service.url)
    assert client.start(timeout_s=5)
    of, events = registered(AerieProvider(client))
    events.expect(ProviderEvent.PROVIDER_READY)
    assert events.none_within(0.3)
    assert of.get_provider_status() == ProviderStatus.READY


def test_the_first_snapshot_seen_by_initialize_is_not_also_a_change(sdk, service, clients):
    # The client sets its snapshot, wakes start() and only then calls its listeners: a listener
    # ahead of the provider's holds the sync thread there until initialize has reported READY.
    client = flags_client(clients, service.url)
    release = threading.Event()
    client.on_change(lambda keys: release.wait(5))
    _, events = registered(AerieProvider(client))
    events.expect(ProviderEvent.PROVIDER_READY)
    release.set()
    assert wait_for(lambda: client.syncer.fetches >= 1 and not client.syncer.refresh_pending)
    assert events.none_within(0.3)


def test_a_change_is_configuration_changed_with_exactly_the_changed_keys(sdk, service, clients):
    of, events = ready_client(clients, service)
    client = of.provider.client
    assert wait_for(lambda: client.syncer.stream_connected and not client.syncer.refresh_pending)
    assert events.none_within(0.2)  # the stream's connect refetched an unchanged snapshot: no event

    service.set_snapshot(typed_snapshot(2, banner_text="bonjour"))
    service.push("flag.updated")
    details = events.expect(ProviderEvent.PROVIDER_CONFIGURATION_CHANGED)
    assert details.flags_changed == ["banner"]
    assert of.get_string_value("banner", "x") == "bonjour"

    changed = typed_snapshot(3, banner_text="bonjour")
    changed["overrides"]["tenant"]["page-size"] = 75
    del changed["flags"]["regions"]
    service.set_snapshot(changed)
    service.push("flag.override.set")
    assert sorted(events.expect(ProviderEvent.PROVIDER_CONFIGURATION_CHANGED).flags_changed) == [
        "page-size",
        "regions",
    ]
    assert of.get_integer_value("page-size", 0) == 75


def test_service_gone_is_stale_and_its_return_is_ready_again(sdk, service, clients):
    of, events = ready_client(clients, service)
    client = of.provider.client
    assert wait_for(lambda: client.syncer.stream_connected)
    port = service.port
    service.stop()

    events.expect(ProviderEvent.PROVIDER_STALE)
    assert of.get_provider_status() == ProviderStatus.STALE
    stale = of.get_boolean_details("dark-mode", False, EvaluationContext("u", {"country": "DE"}))
    assert (stale.value, stale.reason, stale.error_code) == (True, Reason.STALE, None)
    assert of.get_string_details("no-such-flag", "f").error_code == ErrorCode.FLAG_NOT_FOUND

    back = FakeFlagsService(port)
    try:
        back.set_snapshot(typed_snapshot(5, banner_text="back"))
        events.expect(ProviderEvent.PROVIDER_READY, timeout=10)
        assert events.expect(ProviderEvent.PROVIDER_CONFIGURATION_CHANGED).flags_changed == ["banner"]
        assert of.get_provider_status() == ProviderStatus.READY
        fresh = of.get_string_details("banner", "x")
        assert (fresh.value, fresh.reason) == ("back", Reason.DEFAULT)
    finally:
        back.stop()


def test_shutdown_stops_the_events_and_leaves_an_injected_client_running(sdk, service, clients):
    client = flags_client(clients, service.url)
    provider = AerieProvider(client)
    _, events = registered(provider)
    events.expect(ProviderEvent.PROVIDER_READY)
    provider.shutdown()
    service.set_snapshot(typed_snapshot(2, banner_text="later"))
    client.syncer.request_refresh()
    assert wait_for(lambda: client.revision == 2)
    assert events.none_within(0.3)
    assert not client.stale


def test_a_raising_event_handler_does_not_stop_the_sync(sdk, service, clients):
    of, events = ready_client(clients, service)
    of.add_handler(ProviderEvent.PROVIDER_CONFIGURATION_CHANGED, lambda details: 1 / 0)
    client = of.provider.client
    for revision, text in ((2, "two"), (3, "three")):
        service.set_snapshot(typed_snapshot(revision, banner_text=text))
        client.syncer.request_refresh()
        assert events.expect(ProviderEvent.PROVIDER_CONFIGURATION_CHANGED).flags_changed == ["banner"]
    assert client.revision == 3


# -- the offline file --------------------------------------------------------------------


def test_an_offline_client_from_a_saved_snapshot_resolves_without_a_server(sdk, service, clients, tmp_path):
    online = flags_client(clients, service.url)
    assert online.start(timeout_s=5)
    path = tmp_path / "flags.json"
    online.save_snapshot(path)
    online.close()
    service.stop()

    before = {t for t in threading.enumerate() if t.name.startswith("aerie-flags-")}
    offline = FlagsClient.from_file(path)
    of, events = registered(AerieProvider(offline))
    events.expect(ProviderEvent.PROVIDER_READY)
    dark = of.get_boolean_details("dark-mode", False, EvaluationContext("u", {"country": "DE"}))
    assert (dark.value, dark.reason, dark.flag_metadata) == (
        True,
        Reason.TARGETING_MATCH,
        {"revision": 4, "rule": "rules[0]"},
    )
    assert of.get_integer_value("page-size", 0) == 50
    assert of.get_boolean_details("dark-mode", True, EvaluationContext("u")).reason == Reason.DEFAULT
    after = {t for t in threading.enumerate() if t.name.startswith("aerie-flags-")}
    assert after <= before and offline.syncer is None  # no sync thread, no network
    assert TOKEN  # the server required a token online; offline nothing asks for one
