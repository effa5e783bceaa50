"""The tenants service under uWSGI with its production ini: start-up, tokens, revocation, faults."""

from __future__ import annotations

import json
import time
import uuid

import requests
from conftest import REPO, Http, tenants_env

from aerie.local.redis_server import free_port
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
