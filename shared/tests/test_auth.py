"""The JWT middleware end to end, through a real Falcon app built by ``create_service_app``."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import http.server
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import falcon
import falcon.testing
import jwt
import pytest

from aerie.app import Infrastructure, create_service_app
from aerie.auth.principal import Principal
from aerie.auth.revocation import record_revocation
from aerie.auth.tokens import InvalidToken, JWKSKeySource, KeysUnavailable, StaticKeySource, TokenVerifier
from aerie.config import Settings
from aerie.endpoints import PUBLIC, endpoint
from aerie.events import EventContext, EventPublisher, new_event
from aerie.local.redis_server import free_port
from aerie.testing.http import assert_problem
from aerie.testing.keys import TestKey, make_claims

ISSUER = "http://issuer.test"


# --- the demo service ---------------------------------------------------------------------------


class ProjectsResource:
    @endpoint("List the caller tenant's projects", scopes=("projects:read",), tenant=True)
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        p = req.context.principal
        resp.media = {"tenant_id": p.tenant_id, "client_id": p.client_id, "subject": p.subject}


class PlatformResource:
    @endpoint("Read any tenant", scopes=("platform:read",))
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = {"client_id": req.context.principal.client_id}


class PingResource:
    @endpoint("Ping", scopes=PUBLIC)
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = {"pong": True, "principal": getattr(req.context, "principal", None) is not None}


def routes() -> list[tuple[str, object]]:
    return [("/projects", ProjectsResource()), ("/platform", PlatformResource()), ("/ping", PingResource())]


class CountingKeys:
    """A key source that remembers every lookup, to see when the verifier does real work."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.calls: list[str] = []

    def key_for(self, kid: str) -> jwt.PyJWK | None:
        self.calls.append(kid)
        return self.inner.key_for(kid)


def settings_for(redis_url: str, **extra: str) -> Settings:
    env = {"REDIS_URL": redis_url, "AERIE_ISSUER": ISSUER, "AERIE_JWKS_URL": "http://unused.test/jwks", **extra}
    return Settings.from_env("demo", env)


@pytest.fixture(scope="module")
def rsa_key() -> TestKey:
    return TestKey("k1")


@pytest.fixture(scope="module")
def es_key() -> TestKey:
    return TestKey("e1", alg="ES256")


@pytest.fixture
def keys(rsa_key: TestKey, es_key: TestKey) -> CountingKeys:
    jwks = {"keys": [rsa_key.public_jwk(), es_key.public_jwk()]}
    assert all("d" not in k for k in jwks["keys"])  # only public halves are trusted
    return CountingKeys(StaticKeySource(jwks))


@pytest.fixture
def infra(redis_url: str, keys: CountingKeys) -> Iterator[Infrastructure]:
    infra = Infrastructure.from_settings(settings_for(redis_url), keys=keys)
    yield infra
    infra.subscriber.stop()


@pytest.fixture
def client(infra: Infrastructure) -> falcon.testing.TestClient:
    return falcon.testing.TestClient(create_service_app(infra, routes()))


# --- helpers ------------------------------------------------------------------------------------


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64json(obj: Any) -> str:
    return b64(json.dumps(obj, separators=(",", ":")).encode())


def tenant_claims(**overrides: Any) -> dict[str, Any]:
    return make_claims(ISSUER, **{"scope": "projects:read", **overrides})


def get(client: falcon.testing.TestClient, path: str, token: str | None = None, **headers: str) -> Any:
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    return client.simulate_get(path, headers=headers)


def assert_invalid_token(resp: Any, *, detail_has: str | None = None) -> dict[str, Any]:
    body = assert_problem(resp, 401, "invalid_token")
    challenge = resp.headers["WWW-Authenticate"]
    assert challenge.startswith("Bearer ")
    assert 'error="invalid_token"' in challenge
    if detail_has is not None:
        assert detail_has in body["detail"]
    return body


# --- accepted tokens ------------------------------------------------------------------------------


def test_valid_rs256_token_is_accepted(client, rsa_key: TestKey) -> None:
    token = rsa_key.sign(tenant_claims(client_id="cli_a", sub="cli_a", tenant_id="ten_a"))
    resp = get(client, "/projects", token)
    assert resp.status_code == 200, resp.text
    assert resp.json == {"tenant_id": "ten_a", "client_id": "cli_a", "subject": "cli_a"}


def test_es256_token_with_an_es256_key_is_accepted(client, es_key: TestKey) -> None:
    resp = get(client, "/projects", es_key.sign(tenant_claims(tenant_id="ten_es")))
    assert resp.status_code == 200, resp.text
    assert resp.json["tenant_id"] == "ten_es"


def test_public_route_needs_no_token_and_ignores_a_bad_one(client) -> None:
    assert get(client, "/ping").json == {"pong": True, "principal": False}
    resp = get(client, "/ping", "garbage")
    assert resp.status_code == 200
    assert resp.json["principal"] is False


# --- no usable credentials: 401 unauthorized --------------------------------------------------------


def test_no_token(client) -> None:
    resp = get(client, "/projects", **{"X-Request-ID": "no-token-1"})
    assert_problem(resp, 401, "unauthorized", request_id="no-token-1")
    challenge = resp.headers["WWW-Authenticate"]
    assert challenge.startswith("Bearer ")
    assert "error=" not in challenge  # RFC 6750 3.1: no error code when no credentials were sent


@pytest.mark.parametrize("header", ["Basic Y2xpOnNlY3JldA==", "Token abc.def.ghi", "Bearer", "Bearer   "])
def test_not_a_bearer_token(client, rsa_key: TestKey, header: str) -> None:
    resp = client.simulate_get("/projects", headers={"Authorization": header})
    assert_problem(resp, 401, "unauthorized")
    assert resp.headers["WWW-Authenticate"].startswith("Bearer ")


def test_bearer_scheme_is_case_insensitive(client, rsa_key: TestKey) -> None:
    token = rsa_key.sign(tenant_claims())
    resp = client.simulate_get("/projects", headers={"Authorization": f"bearer {token}"})
    assert resp.status_code == 200, resp.text


# --- tokens that are refused: 401 invalid_token -------------------------------------------------------


@pytest.mark.parametrize("token", ["garbage", "a.b.c", "....", "eyJhbGciOiJSUzI1NiJ9.e30"])
def test_garbage_token(client, token: str) -> None:
    assert_invalid_token(get(client, "/projects", token, **{"X-Request-ID": "garbage-1"}))


def test_alg_none_is_refused(client) -> None:
    header = {"alg": "none", "typ": "at+jwt", "kid": "k1"}
    token = f"{b64json(header)}.{b64json(tenant_claims())}."
    assert_invalid_token(get(client, "/projects", token), detail_has="RS256")


def test_hs256_signed_with_the_public_key_pem_is_refused(client, rsa_key: TestKey) -> None:
    """The classic key-confusion attack: the RSA public key used as an HMAC secret."""
    header = {"alg": "HS256", "typ": "at+jwt", "kid": "k1"}
    signing_input = f"{b64json(header)}.{b64json(tenant_claims(scope='platform:admin'))}"
    signature = hmac.new(rsa_key.public_pem(), signing_input.encode(), hashlib.sha256).digest()
    token = f"{signing_input}.{b64(signature)}"
    assert_invalid_token(get(client, "/projects", token))


def test_unknown_kid(client) -> None:
    stranger = TestKey("not-in-jwks")
    assert_invalid_token(get(client, "/projects", stranger.sign(tenant_claims())), detail_has="unknown key")


def test_missing_kid(client, rsa_key: TestKey) -> None:
    token = jwt.encode(tenant_claims(), rsa_key.private, algorithm="RS256", headers={"typ": "at+jwt"})
    assert "kid" not in jwt.get_unverified_header(token)
    assert_invalid_token(get(client, "/projects", token), detail_has="kid")


def test_foreign_key_reusing_a_valid_kid(client, rsa_key: TestKey) -> None:
    impostor = TestKey(rsa_key.kid)
    assert_invalid_token(get(client, "/projects", impostor.sign(tenant_claims())), detail_has="signature")


def test_header_alg_differing_from_the_keys_alg(client, rsa_key: TestKey, es_key: TestKey) -> None:
    es_with_rsa_kid = TestKey(rsa_key.kid, alg="ES256")
    assert_invalid_token(get(client, "/projects", es_with_rsa_kid.sign(tenant_claims())), detail_has="algorithm")
    rsa_with_es_kid = TestKey(es_key.kid, alg="RS256")
    assert_invalid_token(get(client, "/projects", rsa_with_es_kid.sign(tenant_claims())), detail_has="algorithm")


def test_expired_beyond_the_leeway(client, rsa_key: TestKey) -> None:
    now = int(time.time())
    token = rsa_key.sign(tenant_claims(iat=now - 600, exp=now - 60))
    assert_invalid_token(get(client, "/projects", token), detail_has="expired")


def test_expired_within_the_leeway_is_accepted(client, rsa_key: TestKey) -> None:
    now = int(time.time())
    token = rsa_key.sign(tenant_claims(iat=now - 600, exp=now - 10))
    assert get(client, "/projects", token).status_code == 200


def test_not_before_in_the_future_beyond_the_leeway(client, rsa_key: TestKey) -> None:
    now = int(time.time())
    token = rsa_key.sign(tenant_claims(nbf=now + 120, exp=now + 600))
    assert_invalid_token(get(client, "/projects", token), detail_has="not valid yet")


def test_not_before_within_the_leeway_is_accepted(client, rsa_key: TestKey) -> None:
    now = int(time.time())
    token = rsa_key.sign(tenant_claims(nbf=now + 10, exp=now + 600))
    assert get(client, "/projects", token).status_code == 200


def test_issued_in_the_future(client, rsa_key: TestKey) -> None:
    now = int(time.time())
    token = rsa_key.sign(tenant_claims(iat=now + 120, exp=now + 600))
    assert_invalid_token(get(client, "/projects", token))


@pytest.mark.parametrize("aud", ["other", ["other", "another"], ""])
def test_wrong_audience(client, rsa_key: TestKey, aud: Any) -> None:
    assert_invalid_token(get(client, "/projects", rsa_key.sign(tenant_claims(aud=aud))))


@pytest.mark.parametrize("iss", ["http://evil.test", "http://issuer.test.evil", "http://issuer.test/other"])
def test_wrong_issuer(client, rsa_key: TestKey, iss: str) -> None:
    assert_invalid_token(get(client, "/projects", rsa_key.sign(tenant_claims(iss=iss))), detail_has="issuer")


def test_tampered_payload(client, rsa_key: TestKey) -> None:
    claims = tenant_claims()
    header, _payload, signature = rsa_key.sign(claims).split(".")
    forged = f"{header}.{b64json({**claims, 'scope': 'projects:read platform:admin'})}.{signature}"
    assert_invalid_token(get(client, "/projects", forged), detail_has="signature")


@pytest.mark.parametrize("claim", ["exp", "iat", "iss", "aud", "sub", "jti"])
def test_missing_required_claim(client, rsa_key: TestKey, claim: str) -> None:
    token = rsa_key.sign(tenant_claims(**{claim: None}))
    assert claim not in jwt.decode(token, options={"verify_signature": False})
    assert_invalid_token(get(client, "/projects", token), detail_has=claim)


@pytest.mark.parametrize(
    ("claim", "value"),
    [
        ("tenant_id", "*"),
        ("tenant_id", "../x"),
        ("tenant_id", "a b"),
        ("tenant_id", "ten_" + "x" * 100),
        ("tenant_id", "ten_a}:x"),
        ("client_id", "cli a"),
        ("client_id", "*"),
        ("sub", "../../etc"),
        ("sub", "x" * 300),
        ("jti", "j\r\nk"),
    ],
)
def test_a_signed_token_naming_ids_aerie_never_issues_is_401(
    client, rsa_key: TestKey, claim: str, value: object
) -> None:
    # Ids in a token end up in Redis keys, log lines and events of every service.
    token = rsa_key.sign(tenant_claims(**{claim: value}))
    assert_invalid_token(get(client, "/projects", token), detail_has=claim)


def test_ids_of_every_shape_aerie_issues_are_accepted(client, rsa_key: TestKey) -> None:
    claims = tenant_claims(
        tenant_id="ten_01JB3M4Z8Y6W0K2Q9X7V5T1R3N",
        client_id="svc-projects.v2:a@b",
        sub="usr_01JB3M4Z8Y6W0K2Q9X7V5T1R3N",
        jti="0f9c1d2e-3a4b:5c6d.7e8f_90",
    )
    resp = get(client, "/projects", rsa_key.sign(claims))
    assert resp.status_code == 200, resp.text


@pytest.mark.parametrize("claim", ["exp", "iat", "nbf"])
def test_non_numeric_time_claim(client, rsa_key: TestKey, claim: str) -> None:
    token = rsa_key.sign(tenant_claims(**{claim: "soon"}))
    assert_invalid_token(get(client, "/projects", token))


@pytest.mark.parametrize("typ", ["JWT", "refresh+jwt", None])
def test_token_that_is_not_an_access_token(client, rsa_key: TestKey, typ: str | None) -> None:
    token = rsa_key.sign(tenant_claims(), typ=typ)
    assert jwt.get_unverified_header(token).get("typ") == typ
    assert_invalid_token(get(client, "/projects", token), detail_has="at+jwt")


@pytest.mark.parametrize(
    "extra",
    [{"jku": "http://evil.test/jwks.json"}, {"x5u": "http://evil.test/cert.pem"}],
)
def test_token_naming_its_own_key(client, rsa_key: TestKey, extra: dict[str, str]) -> None:
    assert_invalid_token(get(client, "/projects", rsa_key.sign(tenant_claims(), **extra)))


def test_embedded_jwk_header_is_refused(client, rsa_key: TestKey) -> None:
    attacker = TestKey("k1")
    token = attacker.sign(tenant_claims(), jwk=attacker.public_jwk())
    assert_invalid_token(get(client, "/projects", token))


# --- scopes and tenant binding ---------------------------------------------------------------------


def test_missing_scope(client, rsa_key: TestKey) -> None:
    token = rsa_key.sign(make_claims(ISSUER, scope="tenants:read projects:readx"))
    resp = get(client, "/projects", token, **{"X-Request-ID": "scope-1"})
    assert_problem(resp, 403, "insufficient_scope", request_id="scope-1")
    challenge = resp.headers["WWW-Authenticate"]
    assert challenge.startswith("Bearer ")
    assert 'error="insufficient_scope"' in challenge
    assert 'scope="projects:read"' in challenge


def test_one_of_several_scopes_is_enough(client, rsa_key: TestKey) -> None:
    token = rsa_key.sign(make_claims(ISSUER, scope="tenants:read projects:read audit:read"))
    assert get(client, "/projects", token).status_code == 200


def test_tenant_token_on_a_platform_route(client, rsa_key: TestKey) -> None:
    resp = get(client, "/platform", rsa_key.sign(tenant_claims()))
    assert_problem(resp, 403, "insufficient_scope")


def test_platform_token_on_a_tenant_route(client, rsa_key: TestKey) -> None:
    token = rsa_key.sign(make_claims(ISSUER, tenant_id=None, scope="projects:read platform:read"))
    assert_problem(get(client, "/projects", token), 403, "tenant_required")
    assert get(client, "/platform", token).status_code == 200


def test_platform_admin_grants_every_scope(client, rsa_key: TestKey) -> None:
    platform_admin = rsa_key.sign(make_claims(ISSUER, tenant_id=None, client_id="cli_root", scope="platform:admin"))
    resp = get(client, "/platform", platform_admin)
    assert resp.status_code == 200, resp.text
    assert resp.json == {"client_id": "cli_root"}
    # ...but it is still no tenant: tenant routes need a tenant-bound token.
    assert_problem(get(client, "/projects", platform_admin), 403, "tenant_required")
    tenant_admin = rsa_key.sign(make_claims(ISSUER, tenant_id="ten_x", scope="platform:admin"))
    resp = get(client, "/projects", tenant_admin)
    assert resp.status_code == 200, resp.text
    assert resp.json["tenant_id"] == "ten_x"


# --- the verified-token cache ------------------------------------------------------------------------


def test_same_token_is_verified_once(client, keys: CountingKeys, rsa_key: TestKey) -> None:
    token = rsa_key.sign(tenant_claims())
    assert get(client, "/projects", token).status_code == 200
    assert get(client, "/projects", token).status_code == 200
    assert keys.calls == ["k1"]
    assert get(client, "/projects", rsa_key.sign(tenant_claims())).status_code == 200
    assert keys.calls == ["k1", "k1"]


def test_refused_tokens_are_not_cached(client, keys: CountingKeys, rsa_key: TestKey) -> None:
    token = rsa_key.sign(tenant_claims(aud="other"))
    assert_invalid_token(get(client, "/projects", token))
    assert_invalid_token(get(client, "/projects", token))
    assert keys.calls == ["k1", "k1"]


def test_cache_skips_the_signature_check(monkeypatch: pytest.MonkeyPatch, keys: CountingKeys, rsa_key: TestKey) -> None:
    decodes: list[str] = []
    real_decode = jwt.decode

    def spy(token: str, *args: Any, **kwargs: Any) -> Any:
        decodes.append(token)
        return real_decode(token, *args, **kwargs)

    monkeypatch.setattr(jwt, "decode", spy)
    verifier = TokenVerifier(keys, issuer=ISSUER)
    token = rsa_key.sign(tenant_claims())
    first = verifier.verify(token)
    second = verifier.verify(token)
    assert first == second
    assert decodes == [token]


def test_cached_token_is_refused_once_expired(keys: CountingKeys, rsa_key: TestKey) -> None:
    verifier = TokenVerifier(keys, issuer=ISSUER, leeway=0)
    exp = int(time.time()) + 1
    token = rsa_key.sign(tenant_claims(exp=exp))
    assert verifier.verify(token).expires_at == exp
    assert keys.calls == ["k1"]
    while time.time() <= exp + 0.05:
        time.sleep(0.05)
    with pytest.raises(InvalidToken, match="expired"):
        verifier.verify(token)
    with pytest.raises(InvalidToken, match="expired"):
        verifier.verify(token)


# --- revocation ------------------------------------------------------------------------------------


def revoke(infra: Infrastructure, client_id: str, until: float) -> None:
    """What the tenants service does: the durable record and its event in one transaction."""
    pipe = infra.redis.client.pipeline(transaction=True)
    record_revocation(pipe, client_id, until)
    event = new_event("client.revoked", "ten_test", {"client_id": client_id}, EventContext.system("tenants"))
    EventPublisher().add(pipe, event)
    pipe.execute()


def test_revoked_clients_cached_token_is_refused_within_a_second(
    client, infra: Infrastructure, keys: CountingKeys, rsa_key: TestKey
) -> None:
    doomed = rsa_key.sign(tenant_claims(client_id="cli_doomed", sub="cli_doomed"))
    spared = rsa_key.sign(tenant_claims(client_id="cli_spared", sub="cli_spared"))
    assert get(client, "/projects", doomed).status_code == 200
    assert get(client, "/projects", spared).status_code == 200
    assert infra.subscriber.wait_connected(10), "the revocation subscriber never connected"
    lookups = len(keys.calls)

    revoke(infra, "cli_doomed", time.time() + 3600)
    deadline = time.monotonic() + 1.0
    while True:
        resp = get(client, "/projects", doomed)
        if resp.status_code != 200 or time.monotonic() > deadline:
            break
        time.sleep(0.01)
    assert_invalid_token(resp, detail_has="revoked")
    assert len(keys.calls) == lookups  # refused although it came from the cache
    assert get(client, "/projects", spared).status_code == 200


def test_a_new_process_loads_earlier_revocations(redis_url: str, keys: CountingKeys, rsa_key: TestKey) -> None:
    first = Infrastructure.from_settings(settings_for(redis_url), keys=keys)
    revoke(first, "cli_old", time.time() + 3600)
    revoke(first, "cli_lapsed", time.time() - 1)  # its tokens have all expired: entry is dropped
    fresh = Infrastructure.from_settings(settings_for(redis_url), keys=keys)
    try:
        client = falcon.testing.TestClient(create_service_app(fresh, routes()))
        old = rsa_key.sign(tenant_claims(client_id="cli_old"))
        assert_invalid_token(get(client, "/projects", old), detail_has="revoked")
        lapsed = rsa_key.sign(tenant_claims(client_id="cli_lapsed"))
        assert get(client, "/projects", lapsed).status_code == 200
    finally:
        fresh.subscriber.stop()


# --- the issuer's keys cannot be fetched ------------------------------------------------------------------


def test_unreachable_jwks_is_503_with_retry_after(redis_url: str, rsa_key: TestKey) -> None:
    settings = settings_for(redis_url, AERIE_JWKS_URL=f"http://127.0.0.1:{free_port()}/.well-known/jwks.json")
    infra = Infrastructure.from_settings(settings)
    assert isinstance(infra.verifier._keys, JWKSKeySource)
    try:
        client = falcon.testing.TestClient(create_service_app(infra, routes()))
        resp = get(client, "/projects", rsa_key.sign(tenant_claims()), **{"X-Request-ID": "jwks-down"})
        body = assert_problem(resp, 503, "unavailable", request_id="jwks-down")
        assert int(resp.headers["Retry-After"]) >= 1
        assert "Traceback" not in body["detail"]
        assert get(client, "/ping").status_code == 200
    finally:
        infra.subscriber.stop()


class _Jwks(http.server.BaseHTTPRequestHandler):
    """A JWKS endpoint answering ``body`` after ``delay`` seconds, counting its requests."""

    body = b""
    delay = 0.0
    served = 0

    def do_GET(self) -> None:
        type(self).served += 1
        time.sleep(self.delay)
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *args: Any) -> None:
        pass


def _in_threads(count: int, work: Callable[[], object]) -> list[object]:
    """``work()`` in ``count`` threads started together: each one's result or exception."""
    results: list[object] = [None] * count
    gate = threading.Barrier(count)

    def run(i: int) -> None:
        gate.wait()
        try:
            results[i] = work()
        except BaseException as exc:  # the outcome is what the tests check
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(15)
    return results


def test_a_new_worker_shares_a_slow_first_fetch_instead_of_answering_503(rsa_key: TestKey) -> None:
    """Tenants slower than wait_s while a worker knows no key yet: every thread gets the key."""
    handler = type("SlowJwks", (_Jwks,), {"body": json.dumps({"keys": [rsa_key.public_jwk()]}).encode(), "delay": 0.6})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        keys = JWKSKeySource(f"http://127.0.0.1:{server.server_address[1]}/jwks", timeout=3.0, wait_s=0.2)
        kid = rsa_key.public_jwk()["kid"]
        results = _in_threads(4, lambda: keys.key_for(kid))
        assert all(isinstance(r, jwt.PyJWK) and r.key_id == kid for r in results), results
        assert handler.served == 1  # one fetch, shared
    finally:
        server.shutdown()
        server.server_close()


def test_a_silent_issuer_costs_each_thread_one_fetch_at_most() -> None:
    """No key set known: the others wait for the fetch in flight and fail with it, without
    fetching again. A known set: they wait wait_s, then answer from it."""
    silent = socket.socket()  # accepts connections (the backlog) and never answers
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    try:
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/jwks"
        keys = JWKSKeySource(url, timeout=1.0, wait_s=0.3)
        started = time.monotonic()
        results = _in_threads(3, lambda: keys.key_for("k1"))
        assert all(isinstance(r, KeysUnavailable) for r in results), results
        assert time.monotonic() - started < 2.0  # one fetch's timeout, not three in a row
        silent.setblocking(False)
        attempts = 0
        with contextlib.suppress(BlockingIOError):
            while True:
                silent.accept()[0].close()
                attempts += 1
        assert attempts == 1

        stale = JWKSKeySource(url, lifespan=0.1, timeout=3.0, wait_s=0.3)
        stale._client.jwk_set_cache.put({"keys": [TestKey("k1").public_jwk()]})
        time.sleep(0.2)  # expired: the next lookup refetches, from the silent issuer
        holder = threading.Thread(target=lambda: stale.key_for("k1"), daemon=True)
        holder.start()
        time.sleep(0.2)  # the holder is inside the fetch now
        started = time.monotonic()
        assert stale.key_for("k1").key_id == "k1"  # the known set answers
        assert time.monotonic() - started < 1.0
        holder.join(10)
    finally:
        silent.close()


def test_the_last_key_set_answers_while_the_issuer_is_down(rsa_key: TestKey) -> None:
    """Tenants down past the key set's lifespan: tokens a worker has not seen still verify."""
    body = json.dumps({"keys": [rsa_key.public_jwk()]}).encode()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), type("Jwks", (_Jwks,), {"body": body}))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/jwks"
    keys = JWKSKeySource(url, lifespan=0.2, timeout=1.0, cooldown=0.0)
    kid = rsa_key.public_jwk()["kid"]
    assert keys.key_for(kid) is not None
    server.shutdown()
    server.server_close()  # the issuer is gone: connections are refused
    time.sleep(0.3)  # past the lifespan
    verifier = TokenVerifier(keys, issuer=ISSUER)
    assert verifier.verify(rsa_key.sign(tenant_claims())).tenant_id  # a token not seen before
    with pytest.raises(KeysUnavailable):  # a key the last set did not have: unknown, not invalid
        keys.key_for("rotated-in-while-down")
    old = JWKSKeySource(url, lifespan=0.2, timeout=1.0, stale_s=0.0)
    old._client.jwk_set_cache.put(json.loads(body))  # fetched once, now too old to stand in
    time.sleep(0.3)
    with pytest.raises(KeysUnavailable):
        old.key_for(kid)


@pytest.mark.parametrize("answer", [b"<html>proxy error</html>", b'{"keys": []}', b'{"keys": [{"kty": "nope"}]}'])
def test_a_jwks_that_is_no_usable_key_set_is_an_outage_not_a_500(rsa_key: TestKey, answer: bytes) -> None:
    """A proxy's error page or an empty set: nothing known yet is 503, a known set answers on."""
    handler = type("Jwks", (_Jwks,), {"body": answer})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/jwks"
        kid = rsa_key.public_jwk()["kid"]
        with pytest.raises(KeysUnavailable):
            JWKSKeySource(url, timeout=1.0, cooldown=0.0).key_for(kid)
        known = JWKSKeySource(url, lifespan=0.2, timeout=1.0, cooldown=0.0)
        known._client.jwk_set_cache.put({"keys": [rsa_key.public_jwk()]})
        time.sleep(0.3)  # the known set has expired: the next call fetches the bad answer
        assert known.key_for(kid).key_id == kid
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize(
    ("granted", "needed", "allowed"),
    [
        ({"flags:read"}, ("flags:read",), True),
        ({"flags:read"}, ("flags:write", "flags:read"), True),
        ({"flags:read"}, ("flags:write",), False),
        (set(), ("flags:read",), False),
        ({"platform:admin"}, ("flags:write",), True),
        ({"platform:read"}, ("platform:admin",), False),
        ({"flags:read"}, (), False),
        ({"platform:admin"}, (), False),
    ],
)
def test_a_route_admits_a_token_with_any_of_its_scopes_or_platform_admin(granted, needed, allowed) -> None:
    principal = Principal("sub", "cli", "ten", frozenset(granted), "jti", 0)
    assert principal.has_any(needed) is allowed
    assert allowed == any(principal.has_scope(scope) for scope in needed)
