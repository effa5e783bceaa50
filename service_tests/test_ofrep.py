"""OFREP under uWSGI, evaluated by clients nobody here wrote: the OpenFeature Python SDK and its
OFREP provider (PyPI ``openfeature-sdk``, ``openfeature-provider-ofrep``), pointed at the flags
service with a tenant's Bearer token, beside the real tenants service."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import Http, start_service, tenant_with_token
from openfeature import api
from openfeature.client import OpenFeatureClient
from openfeature.contrib.provider.ofrep import OFREPProvider
from openfeature.evaluation_context import EvaluationContext
from openfeature.exception import ErrorCode
from openfeature.flag_evaluation import Reason

from aerie.local.redis_server import RedisServer
from aerie.testing.process import UwsgiService

pytestmark = pytest.mark.flags


@pytest.fixture(scope="module")
def flags(
    redis_server: RedisServer, tenants: UwsgiService, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[UwsgiService]:
    logs: Path = tmp_path_factory.mktemp("logs")
    service = start_service("flags", redis_server, tenants.url, logs)
    yield service
    service.stop()


@pytest.fixture
def keys(http: Http, flags: UwsgiService) -> dict[str, str]:
    """Three flags of this test's own (flags are the platform's, shared by the session's tests)."""
    prefix = f"ofrep-{uuid.uuid4().hex[:8]}"
    admin = http.bearer()
    variants = [{"name": "blue", "weight": 50}, {"name": "green", "weight": 50}]
    docs = {
        "bool": {
            "default": False,
            "rules": [{"conditions": [{"attribute": "country", "op": "eq", "values": ["DE"]}], "serve": True}],
        },
        "string": {"default": "blue", "variants": variants, "rollout": {"percentage": 100}},
        "object": {"default": {"limit": 10, "tier": "free"}},
    }
    names = {}
    for kind, doc in docs.items():
        key = f"{prefix}-{kind}"
        r = http.s.put(f"{flags.url}/v1/flags/{key}", json=doc, headers=admin, timeout=5)
        assert r.status_code == 201, r.text
        names[kind] = key
    return names


@pytest.fixture
def client(http: Http, flags: UwsgiService) -> Iterator[OpenFeatureClient]:
    _, token = tenant_with_token(http, ["flags:read"])
    domain = f"aerie-{uuid.uuid4().hex[:8]}"
    api.set_provider(OFREPProvider(flags.url, headers_factory=lambda: {"Authorization": f"Bearer {token}"}), domain)
    yield api.get_client(domain)
    api.clear_providers()


def test_the_sdk_evaluates_booleans_strings_and_objects(client: OpenFeatureClient, keys: dict[str, str]) -> None:
    german = EvaluationContext(targeting_key="user-1", attributes={"country": "DE"})
    assert client.get_boolean_value(keys["bool"], False, german) is True
    assert client.get_boolean_value(keys["bool"], True, EvaluationContext("user-1", {"country": "US"})) is False
    assert client.get_string_value(keys["string"], "none", german) in ("blue", "green")
    assert client.get_object_value(keys["object"], {}, german) == {"limit": 10, "tier": "free"}


def test_details_carry_reason_variant_and_the_flag_revision(client: OpenFeatureClient, keys: dict[str, str]) -> None:
    details = client.get_boolean_details(keys["bool"], False, EvaluationContext("user-1", {"country": "DE"}))
    assert details.error_code is None, details.error_message
    assert details.reason == Reason.TARGETING_MATCH
    assert details.variant is None
    assert details.flag_metadata == {"revision": 1}
    split = client.get_string_details(keys["string"], "none", EvaluationContext("user-1"))
    assert split.reason == Reason.SPLIT
    assert split.variant == split.value
    assert split.flag_metadata == {"revision": 1}
    # No targeting key: the rollout has nobody to bucket and serves its default, not an error.
    nobody = client.get_string_details(keys["string"], "none")
    assert (nobody.value, nobody.reason, nobody.error_code) == ("blue", Reason.DEFAULT, None)


def test_an_unknown_flag_is_the_sdk_s_flag_not_found_with_the_default(client: OpenFeatureClient) -> None:
    details = client.get_boolean_details(f"ofrep-missing-{uuid.uuid4().hex[:8]}", True, EvaluationContext("u1"))
    assert details.value is True
    assert details.error_code == ErrorCode.FLAG_NOT_FOUND
    assert details.reason == Reason.ERROR


def test_a_bad_context_is_the_sdk_s_invalid_context(client: OpenFeatureClient, keys: dict[str, str]) -> None:
    huge = EvaluationContext("u1", {f"k{i}": i for i in range(101)})
    details = client.get_boolean_details(keys["bool"], True, huge)
    assert details.value is True
    assert details.error_code == ErrorCode.INVALID_CONTEXT


def test_a_wrong_token_is_a_general_error_with_the_default(flags: UwsgiService, keys: dict[str, str]) -> None:
    domain = f"aerie-{uuid.uuid4().hex[:8]}"
    api.set_provider(OFREPProvider(flags.url, headers_factory=lambda: {"Authorization": "Bearer nope"}), domain)
    try:
        details = api.get_client(domain).get_boolean_details(keys["bool"], True)
    finally:
        api.clear_providers()
    assert details.value is True
    assert details.error_code == ErrorCode.GENERAL


def test_bulk_revalidates_with_its_etag(http: Http, flags: UwsgiService, keys: dict[str, str]) -> None:
    _, token = tenant_with_token(http, ["flags:read"])
    headers = {"Authorization": f"Bearer {token}"}
    url = f"{flags.url}/ofrep/v1/evaluate/flags"
    body = {"context": {"targetingKey": "user-1", "country": "DE"}}
    first = http.s.post(url, json=body, headers=headers, timeout=5)
    assert first.status_code == 200, first.text
    mine = {item["key"]: item for item in first.json()["flags"] if item["key"] in keys.values()}
    assert mine[keys["bool"]]["value"] is True
    tag = first.headers["ETag"]
    # Each request may land on another worker, with its own snapshot: the tag is the same.
    for _ in range(6):
        again = http.s.post(url, json=body, headers={**headers, "If-None-Match": tag}, timeout=5)
        assert again.status_code == 304
        assert again.content == b""
        assert again.headers["ETag"] == tag
