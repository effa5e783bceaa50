"""The tenants service under uWSGI with its production ini: start-up, tokens, revocation, faults."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import uuid

import pytest
import redis
import requests
from conftest import KEYSPACE, REPO, Http, redis_client, single_redis_only, tenants_env

from aerie.local.redis_server import free_port
from aerie.testing.http import basic_auth
from aerie.testing.keys import TestKey
from aerie.testing.process import UwsgiService


def new_slug() -> str:
    return f"t-{uuid.uuid4().hex[:12]}"


def test_onboarding_over_http(http: Http):
    admin = http.bearer()
    r = http.request("POST", "/v1/tenants", json={"slug": new_slug(), "name": "Acme"}, headers=admin)
    assert r.status_code == 201, r.text
    tenant = r.json()
    r = http.request(
        "POST", f"/v1/tenants/{tenant['id']}/clients", json={"name": "app", "scopes": ["tenants:read"]}, headers=admin
    )
    assert r.status_code == 201
    created = r.json()
    mine = http.bearer(http.token(created["client_id"], created["client_secret"]))
    r = http.request("GET", f"/v1/tenants/{tenant['id']}", headers={**mine, "X-Request-ID": "svc-test-1"})
    assert r.status_code == 200 and r.json()["id"] == tenant["id"]
    assert r.headers["X-Request-ID"] == "svc-test-1"
    assert r.headers["Content-Type"].startswith("application/json")


def test_revocation_reaches_every_worker_within_a_second(http: Http, tenants: UwsgiService):
    admin = http.bearer()
    tenant = http.request("POST", "/v1/tenants", json={"slug": new_slug(), "name": "Rev"}, headers=admin).json()
    created = http.request(
        "POST", f"/v1/tenants/{tenant['id']}/clients", json={"name": "app", "scopes": ["tenants:read"]}, headers=admin
    ).json()
    headers = http.bearer(http.token(created["client_id"], created["client_secret"]))
    path = f"{tenants.url}/v1/tenants/{tenant['id']}"

    def fresh_get() -> int:  # a new connection each time, so requests spread over the workers
        return requests.get(path, headers=headers, timeout=5).status_code

    assert all(fresh_get() == 200 for _ in range(20))  # every worker has verified and cached the token
    r = http.request("DELETE", f"/v1/tenants/{tenant['id']}/clients/{created['client_id']}", headers=admin)
    assert r.status_code == 204
    revoked_at = time.monotonic()
    while True:
        statuses = [fresh_get() for _ in range(20)]
        if set(statuses) == {401}:
            break
        assert time.monotonic() - revoked_at < 1.0, statuses
    assert time.monotonic() - revoked_at < 1.0


def test_logs_are_json_and_never_hold_secrets(http: Http, tenants: UwsgiService):
    token = http.token()
    http.request("GET", "/v1/tenants", headers=http.bearer(token), params={"limit": 1})
    time.sleep(0.2)
    log = tenants.log_tail(200_000)
    assert token not in log and "service-test-bootstrap-secret" not in log
    lines = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    access = [entry for entry in lines if entry.get("logger") == "aerie.access" and entry["path"] == "/v1/tenants"]
    assert (
        access and {"service", "instance", "request_id", "method", "path", "status", "duration_ms"} <= access[-1].keys()
    )


def test_a_configuration_error_stops_start_up_with_one_line(redis_server, signing_key, tmp_path):
    port = free_port()
    env = tenants_env(redis_server, signing_key, port)
    env["AERIE_SIGNING_KEYS"] = "{not json"
    service = UwsgiService(REPO / "services" / "tenants", port, env, log_path=tmp_path / "bad.log")
    service.start(wait_ready=False)
    assert service.process is not None
    code = service.process.wait(30)
    assert code != 0
    log = service.log_tail()
    assert "configuration error: AERIE_SIGNING_KEYS is not valid JSON" in log
    assert "Traceback" not in log


@single_redis_only
def test_redis_outage_is_503_and_recovers(http: Http, redis_server):
    admin = http.bearer()
    tenant = http.request("POST", "/v1/tenants", json={"slug": new_slug(), "name": "Durable"}, headers=admin).json()
    redis_server.stop()
    try:
        r = http.request("GET", f"/v1/tenants/{tenant['id']}", headers=admin)
        assert r.status_code == 503 and r.headers["Retry-After"] and r.json()["code"] == "unavailable"
        assert "Traceback" not in r.text
        ready = http.request("GET", "/ready")
        assert ready.status_code == 503 and "redis" in ready.json()["failed"]
        assert http.request("GET", "/health").status_code == 200
    finally:
        redis_server.start()
    deadline = time.monotonic() + 10
    while http.request("GET", "/ready").status_code != 200:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    r = http.request("GET", f"/v1/tenants/{tenant['id']}", headers=admin)
    assert r.status_code == 200 and r.json()["name"] == "Durable"  # the acknowledged write survived the restart


# --- issue 23: bounded token requests (item 2), a JWKS WebCrypto imports (item 12) ---------


#: Where a denied token request of no known tenant publishes: the platform's shard.
STREAM_KEY = KEYSPACE.of_tenant(None).stream


def _entries_of_request(r: redis.Redis, last_id: str, request_id: str) -> list[tuple[int, dict]]:
    """The stream entries after ``last_id`` of one request: each one's bytes (names and values) and event."""
    out = []
    for _id, fields in r.xrange(STREAM_KEY, min=f"({last_id}", max="+"):
        event = json.loads(fields[b"event"])
        if event.get("request_id") == request_id:
            out.append((sum(len(k) + len(v) for k, v in fields.items()), event))
    return out


def _last_entry_id(r: redis.Redis) -> str:
    last = r.xrevrange(STREAM_KEY, count=1)
    return last[0][0].decode() if last else "0-0"


@pytest.mark.parametrize("how", ["form", "basic"])
def test_the_probes_900_kb_token_request_is_refused_and_adds_little_to_the_stream(
    tenants: UwsgiService, redis_server, how: str
):
    """The probe's repro (issue 23, item 2): each 401 used to write 2.7 MB to the stream."""
    r = redis_client(redis_server, decode=False)
    before = _last_entry_id(r)
    if how == "form":
        # python3 -c "print('grant_type=client_credentials&client_secret=x&client_id='+'c'*900000)" > f
        body = ("grant_type=client_credentials&client_secret=x&client_id=" + "c" * 900_000 + "\n").encode()
        headers = {"Content-Type": "application/x-www-form-urlencoded"}
    else:  # as long as uWSGI's 32 KiB header buffer lets through
        body = b"grant_type=client_credentials"
        headers = {
            "Content-Type": "application/x-www-form-urlencoded",
            "Authorization": basic_auth("c" * 20_000, "x"),
        }
    request_id = f"probe-{uuid.uuid4().hex}"
    headers["X-Request-ID"] = request_id
    started = time.monotonic()
    resp = requests.post(f"{tenants.url}/v1/oauth/token", data=body, headers=headers, timeout=10)
    assert time.monotonic() - started < 2.0
    assert resp.status_code in (400, 401), resp.text[:200]
    assert resp.headers["Content-Type"].startswith("application/json")
    assert set(resp.json()) == {"error", "error_description"}
    assert resp.json()["error"] == ("invalid_request" if resp.status_code == 400 else "invalid_client")
    ((grew, event),) = _entries_of_request(r, before, request_id)  # the stream grew by this entry alone
    assert event["type"] == "token.denied"
    assert grew < 4096, grew
    time.sleep(0.3)  # the access line is batched for up to 100 ms
    log = tenants.log_tail(2_000_000)
    assert "c" * 1000 not in log
    (access,) = [line for line in log.splitlines() if request_id in line]
    assert len(access) < 1024 and json.loads(access)["status"] == resp.status_code


_WEBCRYPTO_VERIFY = r"""
const { subtle } = require("node:crypto").webcrypto;
const b64url = (s) => Buffer.from(s.replace(/-/g, "+").replace(/_/g, "/"), "base64");
const ALGS = {
  RS256: { name: "RSASSA-PKCS1-v1_5", hash: "SHA-256" },
  ES256: { name: "ECDSA", namedCurve: "P-256", hash: "SHA-256" },
};
(async () => {
  const { jwks, token } = JSON.parse(require("node:fs").readFileSync(0, "utf8"));
  const [head, payload, sig] = token.split(".");
  const kid = JSON.parse(b64url(head).toString()).kid;
  const out = { imported: [], verified: null };
  for (const jwk of jwks.keys) {
    // What a browser, Deno or an edge runtime does with a published key.
    const key = await subtle.importKey("jwk", jwk, ALGS[jwk.alg], true, ["verify"]);
    out.imported.push(jwk.kid);
    if (jwk.kid === kid) {
      out.verified = await subtle.verify(ALGS[jwk.alg], key, b64url(sig), Buffer.from(`${head}.${payload}`));
    }
  }
  console.log(JSON.stringify(out));
})().catch((err) => { console.log(JSON.stringify({ error: `${err.name}: ${err.message}` })); });
"""


@pytest.fixture
def node() -> str:
    found = shutil.which("node")
    if found is None:
        pytest.skip("node is not installed: importing the JWKS with WebCrypto needs Node 20 or later on PATH")
    return found


def _webcrypto_verify(node: str, jwks: dict, token: str) -> dict:
    """Each published key imported by WebCrypto for verifying, and ``token`` verified with its kid's."""
    done = subprocess.run(
        [node, "-e", _WEBCRYPTO_VERIFY],
        input=json.dumps({"jwks": jwks, "token": token}),
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return json.loads(done.stdout)


def test_webcrypto_imports_every_published_key_and_verifies_a_real_token(http: Http, node: str):
    """Issue 23, item 12: a JWKS with key_ops ["sign"] is refused by every WebCrypto verifier."""
    jwks = http.request("GET", "/.well-known/jwks.json").json()
    result = _webcrypto_verify(node, jwks, http.token())
    assert result == {"imported": [k["kid"] for k in jwks["keys"]], "verified": True}


def test_webcrypto_verifies_es256_tokens_beside_a_published_rs256_key(redis_server, tmp_path, node: str):
    """An ES256 key signing, the RS256 one it replaces still published (a rotation)."""
    new, old = TestKey("svc-es256", alg="ES256"), TestKey("svc-rs256-old")
    port = free_port()
    env = tenants_env(redis_server, new, port)
    env["AERIE_SIGNING_KEYS"] = json.dumps({"keys": [new.private_jwk, old.private_jwk]})
    with UwsgiService(REPO / "services" / "tenants", port, env, log_path=tmp_path / "es256.log") as service:
        http = Http(service.url)
        jwks = http.request("GET", "/.well-known/jwks.json").json()
        assert [k["kid"] for k in jwks["keys"]] == ["svc-es256", "svc-rs256-old"]
        result = _webcrypto_verify(node, jwks, http.token())
    assert result == {"imported": ["svc-es256", "svc-rs256-old"], "verified": True}
