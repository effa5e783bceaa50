"""aerie_client.http against a real HTTP server on loopback.

A small Falcon app is served by the standard library's WSGI server (one thread per
request) so retries, timeouts and refused connections happen on real sockets.
"""

from __future__ import annotations

import base64
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import falcon
import pytest
from falcon import testing

from aerie.errors import install_error_handling
from aerie.local.redis_server import free_port
from aerie.middleware import REQUEST_ID_RE
from aerie.testing.polling import wait_for
from aerie_client.http import (
    DEFAULT_RETRY_AFTER_S,
    ClientCredentials,
    CredentialsRejected,
    PeerUnavailable,
    ServiceClient,
)
from aerie_client.http.context import current_request_id, set_request_id

pytestmark = pytest.mark.timeout(60)

CLIENT_ID = "svc-flags"
CLIENT_SECRET = "s3cret:with+odd/chars"


class State:
    """What the test server has seen, and how it should misbehave; reset per test."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.token_calls = 0
        self.token_forms: list[dict[str, Any]] = []
        self.expires_in = 3600
        self.token_delay = 0.0
        self.token_status: int | None = None  # force an error status at the token endpoint
        self.rejected_tokens: set[str] = set()
        self.echo_calls = 0
        self.flaky_failures = 0
        self.flaky_retry_after: str | None = None
        self.flaky_attempts = 0
        self.slow_calls = 0

    def bump(self, name: str) -> int:
        with self.lock:
            value = getattr(self, name) + 1
            setattr(self, name, value)
            return value


class Token:
    def __init__(self, state: State) -> None:
        self.state = state

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        n = self.state.bump("token_calls")
        form = req.get_media()
        self.state.token_forms.append(dict(form))
        time.sleep(self.state.token_delay)
        if self.state.token_status is not None:
            resp.status = self.state.token_status
            resp.media = {"error": "temporarily_unavailable"}
            return
        if _basic_credentials(req.get_header("Authorization")) != (CLIENT_ID, CLIENT_SECRET):
            resp.status = 401
            resp.set_header("WWW-Authenticate", 'Basic realm="aerie"')
            resp.media = {"error": "invalid_client", "error_description": "client authentication failed"}
            return
        if form.get("grant_type") != "client_credentials":
            resp.status = 400
            resp.media = {"error": "unsupported_grant_type"}
            return
        resp.media = {
            "access_token": f"t{n}",
            "token_type": "Bearer",
            "expires_in": self.state.expires_in,
            "scope": form.get("scope", "platform:read"),
        }


def _basic_credentials(header: str | None) -> tuple[str, str] | None:
    from urllib.parse import unquote_plus

    if not header or not header.startswith("Basic "):
        return None
    raw = base64.b64decode(header[6:]).decode()
    client_id, _, secret = raw.partition(":")
    return unquote_plus(client_id), unquote_plus(secret)


class Echo:
    def __init__(self, state: State) -> None:
        self.state = state

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        self.state.bump("echo_calls")
        auth = req.get_header("Authorization")
        if auth and auth.removeprefix("Bearer ") in self.state.rejected_tokens:
            resp.status = 401
            resp.set_header("WWW-Authenticate", 'Bearer error="invalid_token"')
            resp.media = {"code": "invalid_token"}
            return
        resp.media = {
            "authorization": auth,
            "request_id": req.get_header("X-Request-ID"),
            "user_agent": req.get_header("User-Agent"),
            "accept": req.get_header("Accept"),
        }


class Flaky:
    def __init__(self, state: State) -> None:
        self.state = state

    def _answer(self, resp: falcon.Response) -> None:
        n = self.state.bump("flaky_attempts")
        if n <= self.state.flaky_failures:
            resp.status = 503
            if self.state.flaky_retry_after is not None:
                resp.set_header("Retry-After", self.state.flaky_retry_after)
            resp.media = {"code": "unavailable"}
            return
        resp.media = {"attempts": n}

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        self._answer(resp)

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        self._answer(resp)


class Slow:
    def __init__(self, state: State) -> None:
        self.state = state

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        self.state.bump("slow_calls")
        time.sleep(2.0)
        resp.media = {"slept": True}


class Status:
    def on_get(self, req: falcon.Request, resp: falcon.Response, code: int) -> None:
        resp.status = code
        resp.media = {"status": code, "secret_internal": "db=10.0.0.7"}


class _Dispatch:
    """Routes to the current test's app, so one server can serve the whole module."""

    def __init__(self) -> None:
        self.app: falcon.App | None = None

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        assert self.app is not None
        return self.app(environ, start_response)


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True
    request_queue_size = 64  # the default backlog of 5 drops concurrent connects for a second


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[str, _Dispatch]]:
    dispatch = _Dispatch()
    httpd = make_server("127.0.0.1", 0, dispatch, server_class=_ThreadingServer, handler_class=_QuietHandler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_port}", dispatch
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture
def state(server: tuple[str, _Dispatch]) -> State:
    state = State()
    app = falcon.App()
    app.add_route("/v1/oauth/token", Token(state))
    app.add_route("/echo", Echo(state))
    app.add_route("/flaky", Flaky(state))
    app.add_route("/slow", Slow(state))
    app.add_route("/status/{code:int}", Status())
    server[1].app = app
    return state


@pytest.fixture
def base_url(server: tuple[str, _Dispatch], state: State) -> str:
    return server[0]


def credentials(base_url: str, **kwargs: Any) -> ClientCredentials:
    kwargs.setdefault("service_name", "flags")
    return ClientCredentials(base_url, CLIENT_ID, CLIENT_SECRET, **kwargs)


def client(base_url: str, **kwargs: Any) -> ServiceClient:
    kwargs.setdefault("service_name", "flags")
    kwargs.setdefault("peer", "tenants")
    kwargs.setdefault("backoff_factor", 0.01)
    return ServiceClient(base_url, **kwargs)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# -- tokens ------------------------------------------------------------------------------


def test_token_fetched_once_and_reused(base_url, state):
    c = client(base_url, token_provider=credentials(base_url, scope="platform:read"))
    for _ in range(5):
        assert c.get("/echo").json()["authorization"] == "Bearer t1"
    assert state.token_calls == 1
    form = state.token_forms[0]
    assert form == {"grant_type": "client_credentials", "scope": "platform:read"}


def test_a_platform_client_can_ask_for_a_tenant_bound_token(base_url, state):
    c = client(base_url, token_provider=credentials(base_url, scope="flags:read", tenant_id="ten_A"))
    assert c.get("/echo").json()["authorization"] == "Bearer t1"
    assert state.token_forms[0] == {"grant_type": "client_credentials", "scope": "flags:read", "tenant_id": "ten_A"}


def test_no_network_at_construction(base_url, state):
    provider = credentials(base_url)
    ServiceClient(base_url, token_provider=provider)
    assert state.token_calls == 0


def test_concurrent_threads_share_one_fetch(base_url, state):
    state.token_delay = 0.3  # every thread arrives while the first fetch is in flight
    c = client(base_url, token_provider=credentials(base_url))
    barrier = threading.Barrier(12)

    def call(_: int) -> str:
        barrier.wait()
        return c.get("/echo").json()["authorization"]

    with ThreadPoolExecutor(max_workers=12) as pool:
        seen = set(pool.map(call, range(12)))
    assert seen == {"Bearer t1"}
    assert state.token_calls == 1


def test_token_renewed_when_near_expiry(base_url, state):
    state.expires_in = 1  # renewal margin: 10% of the lifetime, 0.1 s
    provider = credentials(base_url)
    assert provider.token() == "t1"
    assert provider.token() == "t1"
    time.sleep(1.0)
    assert provider.token() == "t2"
    assert state.token_calls == 2


@pytest.mark.parametrize(
    ("expires_in", "still_cached_at", "renewed_at"),
    [
        (3600, 3539, 3541),  # a long token is renewed 60 s before it expires
        (300, 269, 271),  # a short one once 10% of its lifetime remains
    ],
)
def test_renewal_margin(base_url, state, expires_in, still_cached_at, renewed_at):
    state.expires_in = expires_in
    clock = FakeClock()
    provider = credentials(base_url, clock=clock)
    start = clock.now
    assert provider.token() == "t1"
    clock.now = start + still_cached_at
    assert provider.token() == "t1"
    clock.now = start + renewed_at
    assert provider.token() == "t2"


def test_401_from_peer_renews_token_once(base_url, state):
    provider = credentials(base_url)
    c = client(base_url, token_provider=provider)
    assert c.get("/echo").json()["authorization"] == "Bearer t1"
    state.rejected_tokens.add("t1")  # the peer stops accepting it (key rotated, say)
    assert c.get("/echo").json()["authorization"] == "Bearer t2"
    assert state.token_calls == 2


def test_401_twice_is_returned_after_one_retry(base_url, state):
    c = client(base_url, token_provider=credentials(base_url))
    state.rejected_tokens.update({"t1", "t2", "t3"})
    resp = c.get("/echo")
    assert resp.status_code == 401
    assert state.echo_calls == 2
    assert state.token_calls == 2


def test_invalidate_ignores_a_token_already_replaced(base_url, state):
    provider = credentials(base_url)
    assert provider.token() == "t1"
    provider.invalidate("t1")
    assert provider.token() == "t2"
    provider.invalidate("t1")  # a late 401 for the old token must not drop the new one
    assert provider.token() == "t2"
    assert state.token_calls == 2


def test_bad_client_credentials_are_peer_unavailable(base_url, state):
    """A refused client secret is a deployment error: logged, and a 503 to our caller.

    It is raised as CredentialsRejected, a PeerUnavailable, so callers answer 503 like for
    any other unusable dependency, while code and tests can still tell it from an outage.
    """
    provider = ClientCredentials(base_url, CLIENT_ID, "wrong", failure_backoff_s=30)
    c = client(base_url, token_provider=provider)
    with pytest.raises(CredentialsRejected) as info:
        c.get("/echo")
    exc = info.value
    assert isinstance(exc, PeerUnavailable)
    assert exc.retry_after >= 1
    assert exc.oauth_error == "invalid_client"
    assert "tenants" in str(exc)
    assert "wrong" not in str(exc)
    assert state.echo_calls == 0
    # Within the failure backoff, callers fail fast instead of queueing for the endpoint.
    with pytest.raises(CredentialsRejected):
        c.get("/echo")
    assert state.token_calls == 1


def test_token_endpoint_failing_is_peer_unavailable(base_url, state):
    state.token_status = 503
    provider = credentials(base_url, failure_backoff_s=0)
    with pytest.raises(PeerUnavailable) as info:
        provider.token()
    assert not isinstance(info.value, CredentialsRejected)
    state.token_status = None
    assert provider.token() == "t2"  # backoff over: the next call fetches again


def test_token_endpoint_down_is_peer_unavailable():
    provider = ClientCredentials(f"http://127.0.0.1:{free_port()}", CLIENT_ID, CLIENT_SECRET, connect_timeout=0.5)
    with pytest.raises(PeerUnavailable) as info:
        provider.token()
    assert info.value.peer == "tenants"
    assert info.value.retry_after >= 1


# -- headers -----------------------------------------------------------------------------


def test_request_id_taken_from_the_request_this_thread_serves(base_url, state):
    c = client(base_url)
    seen: dict[str, str] = {}

    def serve(request_id: str) -> None:
        set_request_id(request_id)
        try:
            seen[request_id] = c.get("/echo").json()["request_id"]
        finally:
            set_request_id(None)

    threads = [threading.Thread(target=serve, args=(f"req-{i}.abc",)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert seen == {f"req-{i}.abc": f"req-{i}.abc" for i in range(4)}
    assert current_request_id() is None  # another thread's request is not this one's


def test_request_id_made_when_outside_a_request(base_url, state):
    c = client(base_url)
    first = c.get("/echo").json()["request_id"]
    second = c.get("/echo").json()["request_id"]
    assert first and REQUEST_ID_RE.match(first)
    assert first != second


def test_standard_headers(base_url, state):
    body = client(base_url, service_name="projects").get("/echo").json()
    assert body["user_agent"] == "aerie-projects"
    assert body["accept"] == "application/json"
    assert body["authorization"] is None  # no provider, no token


def test_absolute_urls_are_refused(base_url, state):
    with pytest.raises(ValueError, match="relative"):
        client(base_url).get("http://elsewhere.invalid/steal")


# -- retries and failures ----------------------------------------------------------------


def test_get_is_retried_on_503(base_url, state):
    state.flaky_failures = 2
    resp = client(base_url, retries=2).get("/flaky")
    assert resp.status_code == 200
    assert resp.json() == {"attempts": 3}
    assert state.flaky_attempts == 3


def test_get_gives_up_after_its_retries(base_url, state):
    state.flaky_failures = 100
    with pytest.raises(PeerUnavailable):
        client(base_url, retries=2).get("/flaky")
    assert state.flaky_attempts == 3


def test_post_is_not_retried_on_503(base_url, state):
    state.flaky_failures = 1
    with pytest.raises(PeerUnavailable) as info:
        client(base_url, retries=2).post("/flaky", json={"x": 1})
    assert not info.value.slow
    assert state.flaky_attempts == 1


def test_retry_after_from_peer_is_obeyed_but_bounded(base_url, state):
    state.flaky_failures = 1
    state.flaky_retry_after = "3600"
    started = time.monotonic()
    resp = client(base_url).get("/flaky")
    assert resp.status_code == 200
    assert time.monotonic() - started < 5


def test_retry_after_passed_on_to_our_caller(base_url, state):
    state.flaky_failures = 100
    state.flaky_retry_after = "7"
    with pytest.raises(PeerUnavailable) as info:
        client(base_url, retries=0).get("/flaky")
    assert info.value.retry_after == 7


@pytest.mark.parametrize("retry_after", ["soon", "\u00b2", "9" * 5000, "-1"])
def test_a_retry_after_that_is_not_plain_seconds_passes_on_our_default(base_url, state, retry_after: str):
    state.flaky_failures = 100
    state.flaky_retry_after = retry_after
    with pytest.raises(PeerUnavailable) as info:
        client(base_url, retries=0).get("/flaky")
    assert info.value.retry_after == DEFAULT_RETRY_AFTER_S


def test_connection_refused_is_peer_unavailable():
    c = client(f"http://127.0.0.1:{free_port()}", peer="tenants", connect_timeout=0.5)
    started = time.monotonic()
    with pytest.raises(PeerUnavailable) as info:
        c.get("/v1/tenants/t1")
    assert time.monotonic() - started < 5
    exc = info.value
    assert not exc.slow
    assert exc.retry_after >= 1
    assert exc.peer == "tenants"
    assert "tenants" in str(exc)
    assert "127.0.0.1" not in str(exc)
    assert isinstance(exc.__cause__, Exception)  # the details stay in logs, not in the problem


def test_read_timeout_is_peer_unavailable_and_not_retried(base_url, state):
    c = client(base_url, read_timeout=0.3, retries=2)
    started = time.monotonic()
    with pytest.raises(PeerUnavailable) as info:
        c.get("/slow")
    assert time.monotonic() - started < 5
    assert not info.value.slow
    assert state.slow_calls == 1


@pytest.mark.parametrize("code", [500, 501, 502, 504])
def test_5xx_is_peer_unavailable(base_url, state, code):
    with pytest.raises(PeerUnavailable) as info:
        client(base_url, retries=0).get(f"/status/{code}")
    assert "10.0.0.7" not in str(info.value)


@pytest.mark.parametrize("code", [400, 404, 409, 422])
def test_4xx_is_returned_as_is(base_url, state, code):
    resp = client(base_url).get(f"/status/{code}")
    assert resp.status_code == code
    assert resp.json()["status"] == code


def test_calling_service_answers_503_problem(base_url, state):
    """End to end: a dead peer makes the calling service answer 503, never 500."""
    peer = client(f"http://127.0.0.1:{free_port()}", peer="tenants", connect_timeout=0.5, retries=0)

    class Resource:
        def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
            resp.media = peer.get("/v1/tenants/t1").json()

    app = falcon.App()
    install_error_handling(app)
    app.add_route("/thing", Resource())
    result = testing.TestClient(app).simulate_get("/thing")
    assert result.status_code == 503
    assert result.headers["Content-Type"].startswith("application/problem+json")
    assert result.headers["Retry-After"] == "1"
    assert result.json["code"] == "unavailable"
    assert "tenants" in result.json["detail"]


def test_session_recreated_in_a_forked_process(base_url, state, monkeypatch):
    import os

    c = client(base_url)
    parent_session = c.session
    assert c.session is parent_session
    real_getpid = os.getpid
    monkeypatch.setattr(os, "getpid", lambda: real_getpid() + 1)
    assert c.session is not parent_session
    assert c.get("/echo").status_code == 200


# -- a silent peer: the bulkhead ---------------------------------------------------------


def test_a_slow_peer_holds_one_call_and_the_others_fail_fast(base_url, state):
    c = client(base_url, read_timeout=1.5, max_in_flight=1, queue_timeout_s=0.2)
    first: list[BaseException] = []

    def slow() -> None:
        try:
            c.get("/slow")
        except PeerUnavailable as exc:
            first.append(exc)

    waiting = threading.Thread(target=slow)
    waiting.start()
    assert wait_for(lambda: state.slow_calls == 1)
    started = time.monotonic()
    with pytest.raises(PeerUnavailable) as info:
        c.get("/echo")  # would have waited out the slow call's 1.5 s
    assert time.monotonic() - started < 1.0
    assert info.value.slow
    assert state.echo_calls == 0
    waiting.join(5)
    assert len(first) == 1  # the slow call itself timed out as usual
    assert c.get("/echo").status_code == 200  # and the slot is free again


def test_a_slow_token_fetch_is_waited_on_for_a_moment_only(base_url, state):
    state.token_delay = 1.5
    provider = credentials(base_url, wait_s=0.2)
    fetched: list[str] = []
    fetching = threading.Thread(target=lambda: fetched.append(provider.token()))
    fetching.start()
    assert wait_for(lambda: state.token_calls == 1)
    started = time.monotonic()
    with pytest.raises(PeerUnavailable):
        provider.token()
    assert time.monotonic() - started < 1.0
    fetching.join(5)
    assert fetched == ["t1"] and provider.token() == "t1"


def test_a_token_due_for_renewal_serves_while_another_thread_renews_it(base_url, state):
    clock = FakeClock()
    provider = credentials(base_url, clock=clock)
    assert provider.token() == "t1"
    clock.now += 3545  # past the renewal point (60 s before expiry), still valid
    state.token_delay = 1.0
    renewed: list[str] = []
    renewing = threading.Thread(target=lambda: renewed.append(provider.token()))
    renewing.start()
    assert wait_for(lambda: state.token_calls == 2)
    started = time.monotonic()
    assert provider.token() == "t1"  # no wait behind the renewal
    assert time.monotonic() - started < 0.2
    renewing.join(5)
    assert renewed == ["t2"] and provider.token() == "t2"
