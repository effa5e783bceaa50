"""Issue 23, item 2: nothing a token request brings reaches Redis, an event or a log line unbounded.

The endpoint answers anyone. A ``client_id`` of 900,000 characters used to be copied into
the ``token.denied`` event three times (data, actor id, actor client id): 2.7 MB written to
the stream per 401. Every test here measures the stream entries a request adds (XRANGE).
"""

from __future__ import annotations

import json

import pytest
import redis

from aerie.events import STREAM_KEY
from aerie.testing.http import basic_auth as basic
from tenants.issuer import MAX_CLIENT_ID_CHARS, MAX_CLIENT_SECRET_CHARS, MAX_SCOPE_CHARS, MAX_TENANT_ID_CHARS
from tenants.resources.oauth import MAX_FORM_BYTES, MAX_REASON_CHARS

BOOT_ID = "aerie-bootstrap"
BOOT_SECRET = "b" * 43
FORM = {"Content-Type": "application/x-www-form-urlencoded"}
HUGE = 900_000
#: What one denied request may add to the stream, whatever it sent (it was 2.7 MB).
SMALL_ENTRY = 2048


def stream_entries(redis_url: str) -> list[tuple[int, dict]]:
    """Every entry of the events stream: its size in bytes (field names and values) and its event."""
    r = redis.Redis.from_url(redis_url)
    out = []
    for _id, fields in r.xrange(STREAM_KEY):
        size = sum(len(k) + len(v) for k, v in fields.items())
        out.append((size, json.loads(fields[b"event"])))
    return out


def only_denial(redis_url: str) -> tuple[int, dict]:
    ((size, event),) = stream_entries(redis_url)
    assert event["type"] == "token.denied"
    return size, event


def post(client, body: str, headers: dict[str, str] | None = None):
    return client.simulate_post("/v1/oauth/token", body=body, headers={**FORM, **(headers or {})})


def assert_oauth_error(r, status: int, error: str) -> None:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    assert r.headers["cache-control"] == "no-store"
    assert set(r.json) == {"error", "error_description"} and r.json["error"] == error
    assert len(r.text) < 1024


def test_the_probes_900k_client_id_is_refused_and_its_event_is_small(client, redis_url, capfd):
    body = "grant_type=client_credentials&client_secret=x&client_id=" + "c" * HUGE
    noisy = {"User-Agent": "u" * 30_000, "X-Forwarded-For": "f" * 30_000}
    r = post(client, body, noisy)
    assert_oauth_error(r, 400, "invalid_request")
    assert str(MAX_FORM_BYTES) in r.json["error_description"]
    size, event = only_denial(redis_url)
    assert size < SMALL_ENTRY, size
    assert event["data"]["error"] == "invalid_request"
    # The headers every event copies are bounded too (aerie.events).
    assert len(event["user_agent"]) <= 512 and len(event["ip"]) <= 64
    assert "c" * 100 not in json.dumps(event) and "u" * 600 not in json.dumps(event)
    access = [line for line in capfd.readouterr().out.splitlines() if '"aerie.access"' in line]
    assert access and all(len(line) < 1024 for line in access)


def test_a_900k_client_id_in_basic_credentials_is_invalid_client_and_its_event_is_small(client, redis_url):
    r = post(client, "grant_type=client_credentials", {"Authorization": basic("c" * HUGE, "x")})
    assert_oauth_error(r, 401, "invalid_client")
    assert r.headers["www-authenticate"].startswith("Basic")
    size, event = only_denial(redis_url)
    assert size < SMALL_ENTRY, size
    assert event["data"]["client_id"] is None  # refused on the header's length, before decoding


@pytest.mark.parametrize("where", ["form", "basic"])
def test_a_client_id_past_the_limit_is_invalid_client_and_the_event_keeps_a_marked_prefix(client, redis_url, where):
    claimed = "cli_" + "x" * 1000  # within the form's 4 KiB, past any client id
    if where == "form":
        r = post(client, f"grant_type=client_credentials&client_id={claimed}&client_secret=s")
    else:
        r = post(client, "grant_type=client_credentials", {"Authorization": basic(claimed, "s")})
    assert_oauth_error(r, 401, "invalid_client")
    size, event = only_denial(redis_url)
    assert size < SMALL_ENTRY, size
    kept = event["data"]["client_id"]
    assert len(kept) <= MAX_CLIENT_ID_CHARS and kept.startswith("cli_xxx") and kept.endswith("[truncated, 1004 chars]")
    assert event["actor"] == {"type": "client", "id": kept, "client_id": kept}


@pytest.mark.parametrize(
    ("field", "value", "status", "error"),
    [
        ("client_secret", "s" * (MAX_CLIENT_SECRET_CHARS + 1), 401, "invalid_client"),
        ("scope", "tenants:read " * (MAX_SCOPE_CHARS // 13 + 1), 400, "invalid_request"),
        ("tenant_id", "ten_" + "t" * MAX_TENANT_ID_CHARS, 400, "invalid_request"),
        ("grant_type", "client_credentials" * 4, 400, "invalid_request"),
    ],
)
def test_every_field_past_its_limit_is_refused_before_any_lookup(client, redis_url, field, value, status, error):
    form = {"grant_type": "client_credentials", field: value}
    if field == "client_secret":
        form["client_id"] = BOOT_ID
        headers = {}
    else:
        headers = {"Authorization": basic(BOOT_ID, BOOT_SECRET)}
    r = post(client, "&".join(f"{k}={v}" for k, v in form.items()), headers)
    assert_oauth_error(r, status, error)
    assert field in r.json["error_description"] or "secret" in r.json["error_description"]
    size, event = only_denial(redis_url)
    assert size < SMALL_ENTRY, size
    assert value not in json.dumps(event)


def test_an_authorization_header_past_any_credentials_is_invalid_client(client, redis_url):
    r = post(client, "grant_type=client_credentials", {"Authorization": "Basic " + "QUJD" * 1000})
    assert_oauth_error(r, 401, "invalid_client")
    assert only_denial(redis_url)[0] < SMALL_ENTRY


def test_a_form_one_byte_past_the_limit_is_refused_and_one_at_it_is_served(client, redis_url):
    auth = {"Authorization": basic(BOOT_ID, BOOT_SECRET)}
    head = "grant_type=client_credentials&pad="
    at_limit = head + "p" * (MAX_FORM_BYTES - len(head))
    assert post(client, at_limit, auth).status_code == 200  # unknown parameters are ignored (RFC 6749 3.2)
    assert_oauth_error(post(client, at_limit + "p", auth), 400, "invalid_request")


def test_limits_leave_real_requests_alone(api):
    tenant = api.create_tenant("bounded")
    created = api.create_client(tenant["id"], ["projects:read", "projects:write"])
    assert api.token(created["client_id"], created["client_secret"], scope="projects:read projects:write")
    assert api.token(tenant_id=tenant["id"], scope="projects:read tenants:read")


def test_unknown_scopes_are_named_a_few_and_briefly(client, redis_url):
    wanted = " ".join(f"s{i:02d}:" + "z" * 30 for i in range(14))  # 504 characters, within the limit
    r = post(client, f"grant_type=client_credentials&scope={wanted}", {"Authorization": basic(BOOT_ID, BOOT_SECRET)})
    assert_oauth_error(r, 400, "invalid_scope")
    description = r.json["error_description"]
    assert description.startswith("Unknown scope: s00:") and description.endswith("(and 9 more).")
    assert len(description) <= MAX_REASON_CHARS
    _, event = only_denial(redis_url)
    assert event["data"]["reason"] == description


def test_platform_clients_longer_than_the_limits_stop_start_up(env):
    from aerie.config import ConfigError
    from tenants.issuer import platform_clients_from_env

    with pytest.raises(ConfigError, match="AERIE_BOOTSTRAP_CLIENT_ID"):
        platform_clients_from_env({**env, "AERIE_BOOTSTRAP_CLIENT_ID": "b" * (MAX_CLIENT_ID_CHARS + 1)})
    with pytest.raises(ConfigError, match="AERIE_BOOTSTRAP_CLIENT_SECRET"):
        platform_clients_from_env({**env, "AERIE_BOOTSTRAP_CLIENT_SECRET": "s" * (MAX_CLIENT_SECRET_CHARS + 1)})
    services = [{"client_id": "v" * (MAX_CLIENT_ID_CHARS + 1), "secret_sha256": "0" * 64, "scopes": []}]
    with pytest.raises(ConfigError, match=r"AERIE_SERVICE_CLIENTS\[0\]"):
        platform_clients_from_env({**env, "AERIE_SERVICE_CLIENTS": json.dumps(services)})
