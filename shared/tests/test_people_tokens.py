"""A person's token (RFC 8693 token exchange) in every service: who it names, /v1/me, cutting it."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import falcon
import falcon.testing
import pytest

from aerie.app import Infrastructure, create_service_app
from aerie.auth.revocation import record_member_floor
from aerie.auth.tokens import StaticKeySource
from aerie.config import Settings
from aerie.endpoints import endpoint
from aerie.events import EventContext, EventPublisher, new_event
from aerie.testing.http import assert_problem
from aerie.testing.keys import TestKey, make_claims

ISSUER = "http://issuer.test"
ALICE = "usr_01JALICE0000000000000000000"


class WhoResource:
    @endpoint("Who acts", scopes=("projects:read",), tenant=True)
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = {"actor": req.context.principal.actor()}


@pytest.fixture(scope="module")
def key() -> TestKey:
    return TestKey("k1")


@pytest.fixture
def infra(redis_url: str, key: TestKey) -> Iterator[Infrastructure]:
    env = {"REDIS_URL": redis_url, "AERIE_ISSUER": ISSUER, "AERIE_JWKS_URL": "http://unused.test/jwks"}
    infra = Infrastructure.from_settings(
        Settings.from_env("demo", env), keys=StaticKeySource({"keys": [key.public_jwk()]})
    )
    yield infra
    infra.close()


@pytest.fixture
def client(infra: Infrastructure) -> falcon.testing.TestClient:
    return falcon.testing.TestClient(create_service_app(infra, [("/who", WhoResource())]))


def person(**overrides: Any) -> dict[str, Any]:
    """The claims the tenants service mints for Alice, a developer, through the app cli_app."""
    claims = {
        "sub": ALICE,
        "client_id": "cli_app",
        "act": {"sub": "cli_app"},
        "scope": "projects:read projects:write",
        "role": "developer",
        "email": "alice@example.com",
        "language": "de",
        "member_version": 2,
        **overrides,
    }
    return make_claims(ISSUER, **claims)


def get(client: falcon.testing.TestClient, path: str, token: str) -> falcon.testing.Result:
    return client.simulate_get(path, headers={"Authorization": f"Bearer {token}"})


def test_me_names_the_person_and_the_app_acting_for_them(client, key: TestKey) -> None:
    body = get(client, "/v1/me", key.sign(person())).json
    assert body == {
        "type": "user",
        "id": ALICE,
        "tenant_id": "ten_test",
        "client_id": "cli_app",
        "scopes": ["projects:read", "projects:write"],
        "role": "developer",
        "email": "alice@example.com",
        "language": "de",
    }


def test_me_for_a_client_has_no_role_or_email(client, key: TestKey) -> None:
    body = get(client, "/v1/me", key.sign(make_claims(ISSUER, scope=""))).json
    assert body["type"] == "client"
    assert body["id"] == body["client_id"] == "cli_test"
    assert "role" not in body and "email" not in body
    assert body["scopes"] == []  # any valid token may ask, whatever its scopes
    assert body["language"]


def test_me_needs_a_token(client) -> None:
    assert_problem(client.simulate_get("/v1/me"), 401, "unauthorized")


def test_a_persons_actions_name_them_and_their_app(client, key: TestKey) -> None:
    actor = get(client, "/who", key.sign(person())).json["actor"]
    assert actor == {"type": "user", "id": ALICE, "client_id": "cli_app"}


@pytest.mark.parametrize(
    ("overrides", "detail"),
    [
        ({"act": {"sub": "cli_other"}}, "act"),
        ({"act": "cli_app"}, "act"),
        ({"client_id": None}, "act"),
        ({"sub": "cli_app"}, "member id"),
        ({"member_version": None}, "member_version"),
        ({"member_version": "2"}, "member_version"),
        ({"member_version": True}, "member_version"),
        ({"member_version": 0}, "member_version"),
        ({"role": None}, "role"),
        ({"role": "Owner!"}, "role"),
        ({"email": 5}, "email"),
        ({"email": "a" * 400}, "email"),
        ({"language": "../../etc"}, "language"),
    ],
)
def test_a_person_token_of_the_wrong_shape_is_401(client, key: TestKey, overrides: dict[str, Any], detail: str) -> None:
    body = assert_problem(get(client, "/v1/me", key.sign(person(**overrides))), 401, "invalid_token")
    assert detail in body["detail"]


def cut(infra: Infrastructure, member_id: str, floor: int, until: float, event_type: str = "member.removed") -> None:
    """What the tenants service does when a member is removed or re-roled."""
    pipe = infra.redis.client.pipeline(transaction=True)
    record_member_floor(pipe, member_id, floor, until)
    data = {"member_id": member_id, "token_floor": floor}
    EventPublisher().add(pipe, new_event(event_type, "ten_test", data, EventContext.system("tenants")))
    pipe.execute()


@pytest.mark.parametrize("event_type", ["member.removed", "member.updated"])
def test_cutting_a_members_tokens_reaches_a_running_process_within_a_second(
    client, infra: Infrastructure, key: TestKey, event_type: str
) -> None:
    old = key.sign(person(member_version=2))
    other = key.sign(person(sub="usr_01JBOB000000000000000000000", member_version=1))
    assert get(client, "/who", old).status_code == 200
    assert infra.subscriber.wait_connected(10)

    cut(infra, ALICE, 3, time.time() + 3600, event_type)
    deadline = time.monotonic() + 1.0
    while get(client, "/who", old).status_code == 200 and time.monotonic() < deadline:
        time.sleep(0.01)
    body = assert_problem(get(client, "/who", old), 401, "invalid_token")
    assert "revoked" in body["detail"]
    # Minted after the change (at the new version): works at once. Other people: untouched.
    assert get(client, "/who", key.sign(person(member_version=3))).status_code == 200
    assert get(client, "/who", other).status_code == 200


def test_a_new_process_loads_the_floors_and_drops_lapsed_ones(
    redis_url: str, infra: Infrastructure, key: TestKey
) -> None:
    cut(infra, ALICE, 5, time.time() + 3600)
    cut(infra, ALICE, 4, time.time() + 3600)  # a lower floor never lowers the higher one
    cut(infra, "usr_01JLAPSED0000000000000000000", 9, time.time() - 1)
    env = {"REDIS_URL": redis_url, "AERIE_ISSUER": ISSUER, "AERIE_JWKS_URL": "http://unused.test/jwks"}
    fresh = Infrastructure.from_settings(
        Settings.from_env("demo", env), keys=StaticKeySource({"keys": [key.public_jwk()]})
    )
    try:
        client = falcon.testing.TestClient(create_service_app(fresh, [("/who", WhoResource())]))
        assert get(client, "/who", key.sign(person(member_version=4))).status_code == 401
        assert get(client, "/who", key.sign(person(member_version=5))).status_code == 200
        lapsed = person(sub="usr_01JLAPSED0000000000000000000", member_version=1)
        assert get(client, "/who", key.sign(lapsed)).status_code == 200
    finally:
        fresh.close()


def test_a_refused_token_is_explained_in_the_callers_language(client, key: TestKey) -> None:
    token = key.sign(person(member_version=0))
    r = client.simulate_get("/v1/me", headers={"Authorization": f"Bearer {token}", "Accept-Language": "de"})
    body = assert_problem(r, 401, "invalid_token")
    assert r.headers["Content-Language"] == "de"
    assert body["detail"] == "Der Claim 'member_version' des Tokens muss eine positive ganze Zahl sein."
    assert "member_version" in r.headers["WWW-Authenticate"] and "Claim" not in r.headers["WWW-Authenticate"]
