"""HTTP framing at the edge of an instance, over raw sockets to the real uWSGI (shared/uwsgi/base.ini).

An HTTP client library would hide what these check: it picks the framing of a body itself,
and reports a closed connection as an exception rather than as "no status line at all".

- Chunked request bodies (``Transfer-Encoding: chunked``) are read to their end under the
  same 1 MiB limit as any body, or refused with a problem document; a body that was not empty
  is never acted on as an empty one (it was: a chunked PATCH answered 200 and changed nothing).
- Request heads: a target over 8 KiB is 414, headers over 32 KiB or 100 fields are 431, and a
  request whose query string or path uWSGI could not fit is 414, never served without it (a
  filtered list came back unfiltered). A head larger than uWSGI's buffer is closed unanswered.
"""

from __future__ import annotations

import json
import socket
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import redis
import requests
from conftest import BOOT_ID, BOOT_SECRET, REPO, Http, service_env

from aerie.local.redis_server import RedisServer, free_port
from aerie.testing.http import basic_auth
from aerie.testing.polling import wait_for
from aerie.testing.process import UwsgiService

MIB = 1024 * 1024


@dataclass
class Answer:
    """What came back on one connection: a status line and body, or nothing (``status`` None)."""

    status: int | None
    headers: dict[str, str] = field(default_factory=dict)  # names in lower case
    body: bytes = b""
    error: str | None = None

    def json(self) -> dict:
        return json.loads(self.body)


def exchange(port: int, request: bytes, timeout: float = 20.0, *, half_close: bool = False) -> Answer:
    """Send ``request`` as is on a new connection and read until the server closes it."""
    raw, error = b"", None
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as conn:
        try:
            conn.sendall(request)
            if half_close:
                conn.shutdown(socket.SHUT_WR)
            while chunk := conn.recv(65536):
                raw += chunk
        except OSError as exc:  # a reset, or the server closing while we still send
            error = type(exc).__name__
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    if not raw or not lines[0].startswith("HTTP/1."):
        return Answer(None, body=raw, error=error or "closed without a status line")
    headers = {name.lower(): value for name, _, value in (line.partition(": ") for line in lines[1:])}
    return Answer(int(lines[0].split(" ")[1]), headers, body, error)


def chunked(data: bytes, size: int) -> bytes:
    """``data`` in the chunked transfer coding, ``size`` bytes a chunk, with the last chunk."""
    parts = [data[i : i + size] for i in range(0, len(data), size)]
    return b"".join(b"%x\r\n%s\r\n" % (len(part), part) for part in parts) + b"0\r\n\r\n"


def request_head(method: str, target: str, headers: dict[str, str]) -> bytes:
    lines = [f"{method} {target} HTTP/1.1", "Host: test", *(f"{k}: {v}" for k, v in headers.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def assert_problem(answer: Answer, status: int, code: str) -> dict:
    assert answer.status == status, answer
    assert answer.headers.get("content-type", "").startswith("application/problem+json"), answer
    problem = answer.json()
    assert problem["status"] == status and problem["code"] == code, problem
    assert problem["request_id"] == answer.headers["x-request-id"]
    return problem


@pytest.fixture(scope="module")
def logs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("transport-logs")


@pytest.fixture(scope="module")
def projects(redis_server: RedisServer, tenants: UwsgiService, logs: Path) -> Iterator[UwsgiService]:
    service = UwsgiService(
        REPO / "services" / "projects",
        free_port(),
        service_env(redis_server, tenants.url),
        log_path=logs / "projects.log",
    )
    service.start()
    yield service
    service.stop()


@pytest.fixture(scope="module")
def flags(redis_server: RedisServer, tenants: UwsgiService, logs: Path) -> Iterator[UwsgiService]:
    service = UwsgiService(
        REPO / "services" / "flags", free_port(), service_env(redis_server, tenants.url), log_path=logs / "flags.log"
    )
    service.start()
    yield service
    service.stop()


def tenant_headers(http: Http, *scopes: str) -> tuple[str, dict[str, str]]:
    """A fresh tenant's id and the bearer header of a client of it with ``scopes``."""
    admin = http.bearer()
    r = http.request("POST", "/v1/tenants", json={"slug": f"tr-{uuid.uuid4().hex[:12]}", "name": "T"}, headers=admin)
    assert r.status_code == 201, r.text
    tenant_id = r.json()["id"]
    r = http.request(
        "POST", f"/v1/tenants/{tenant_id}/clients", json={"name": "app", "scopes": list(scopes)}, headers=admin
    )
    assert r.status_code == 201, r.text
    return tenant_id, http.bearer(http.token(r.json()["client_id"], r.json()["client_secret"]))


def project_keys(server: RedisServer, tenant_id: str) -> list[str]:
    r = redis.Redis.from_url(server.url, decode_responses=True)
    return [k for k in r.scan_iter(match=f"projects:{{{tenant_id}}}:*") if not k.endswith(":deleted")]


@pytest.fixture
def tenant_project(http: Http, projects: UwsgiService) -> tuple[str, dict[str, str], dict]:
    """A tenant of its own, its projects client's headers, and one project at version 1."""
    tenant_id, headers = tenant_headers(http, "projects:read", "projects:write")
    r = requests.post(f"{projects.url}/v1/projects", json={"name": "Original"}, headers=headers, timeout=5)
    assert r.status_code == 201, r.text
    assert r.json()["version"] == 1
    return tenant_id, headers, r.json()


def chunked_json(method: str, target: str, headers: dict[str, str], document: object, size: int = 7) -> bytes:
    head = request_head(method, target, {**headers, "Content-Type": "application/json", "Transfer-Encoding": "chunked"})
    return head + chunked(json.dumps(document).encode(), size)


# --- chunked request bodies -------------------------------------------------------------------


def test_a_chunked_patch_is_applied(projects: UwsgiService, tenant_project: tuple[str, dict[str, str], dict]) -> None:
    _tenant_id, headers, project = tenant_project
    path = f"/v1/projects/{project['id']}"
    answer = exchange(projects.port, chunked_json("PATCH", path, headers, {"name": "Renamed", "status": "archived"}))
    assert answer.status == 200, answer
    assert answer.json()["version"] == 2 and answer.json()["name"] == "Renamed"
    stored = requests.get(f"{projects.url}{path}", headers=headers, timeout=5).json()
    assert (stored["version"], stored["name"], stored["status"]) == (2, "Renamed", "archived")


def test_a_chunked_evaluation_uses_the_context_it_sent(http: Http, flags: UwsgiService) -> None:
    _tenant_id, headers = tenant_headers(http, "flags:read")
    key = f"chunked-{uuid.uuid4().hex[:8]}"
    rule = {"conditions": [{"attribute": "user_id", "op": "eq", "values": ["u-42"]}], "serve": "on"}
    r = requests.put(
        f"{flags.url}/v1/flags/{key}", json={"default": "off", "rules": [rule]}, headers=http.bearer(), timeout=5
    )
    assert r.status_code == 201, r.text
    document = {"context": {"user_id": "u-42"}, "keys": [key]}

    def value() -> object:
        r = requests.post(f"{flags.url}/v1/evaluate", json=document, headers=headers, timeout=5)
        return r.json()["flags"].get(key, {}).get("value")

    # Each worker has the flag (every one keeps its own snapshot) and serves it for this context.
    assert wait_for(lambda: all(value() == "on" for _ in range(4)), 5.0)
    answer = exchange(flags.port, chunked_json("POST", "/v1/evaluate", headers, document, size=5))
    assert answer.status == 200, answer
    assert answer.json()["flags"][key]["value"] == "on", answer.json()


def test_a_chunked_token_form_is_read(tenants: UwsgiService) -> None:
    form = b"grant_type=client_credentials"
    head = request_head(
        "POST",
        "/v1/oauth/token",
        {
            "Authorization": basic_auth(BOOT_ID, BOOT_SECRET),
            "Content-Type": "application/x-www-form-urlencoded",
            "Transfer-Encoding": "chunked",
        },
    )
    answer = exchange(tenants.port, head + chunked(form, 9))
    assert answer.status == 200, answer
    assert answer.json()["token_type"] == "Bearer" and answer.json()["access_token"]


@pytest.mark.parametrize("chunk_size", [64 * 1024, 1300 * 1024], ids=["in 64 KiB chunks", "in one chunk"])
def test_a_chunked_body_over_one_mib_is_413_and_writes_nothing(
    projects: UwsgiService, redis_server: RedisServer, http: Http, chunk_size: int
) -> None:
    tenant_id, headers = tenant_headers(http, "projects:write")
    document = {"name": "big", "description": "d" * (1300 * 1024)}
    answer = exchange(projects.port, chunked_json("POST", "/v1/projects", headers, document, size=chunk_size))
    assert_problem(answer, 413, "payload_too_large")
    assert project_keys(redis_server, tenant_id) == []


@pytest.mark.parametrize(
    ("framing", "says"),
    [
        pytest.param({"Transfer-Encoding": "chunked", "Content-Length": "30"}, "both", id="chunked and a length"),
        pytest.param({"Transfer-Encoding": "gzip, chunked"}, "chunked", id="a coding besides chunked"),
    ],
)
def test_framings_that_disagree_are_400_and_write_nothing(
    projects: UwsgiService, tenant_project: tuple[str, dict[str, str], dict], framing: dict[str, str], says: str
) -> None:
    _tenant_id, headers, project = tenant_project
    path = f"/v1/projects/{project['id']}"
    body = chunked(json.dumps({"name": "Smuggled"}).encode(), 8)
    head = request_head("PATCH", path, {**headers, "Content-Type": "application/json", **framing})
    problem = assert_problem(exchange(projects.port, head + body), 400, "bad_request")
    assert says in problem["detail"]
    assert requests.get(f"{projects.url}{path}", headers=headers, timeout=5).json()["version"] == 1


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b"10\r\n" + b'{"name": "Cut"', id="a chunk cut short"),
        pytest.param(b"e garbage\r\n" + b'{"name": "Bad"}\r\n0\r\n\r\n', id="a size line that is not hex"),
    ],
)
def test_a_broken_chunked_body_is_400_and_writes_nothing(
    projects: UwsgiService, tenant_project: tuple[str, dict[str, str], dict], body: bytes
) -> None:
    _tenant_id, headers, project = tenant_project
    path = f"/v1/projects/{project['id']}"
    head = request_head("PATCH", path, {**headers, "Content-Type": "application/json", "Transfer-Encoding": "chunked"})
    assert_problem(exchange(projects.port, head + body, half_close=True), 400, "bad_request")
    assert requests.get(f"{projects.url}{path}", headers=headers, timeout=5).json()["version"] == 1


# --- request heads ------------------------------------------------------------------------------


def test_a_long_query_is_414_not_an_unfiltered_list(
    projects: UwsgiService, tenant_project: tuple[str, dict[str, str], dict]
) -> None:
    _tenant_id, headers, _project = tenant_project
    for pad in (16_500, 33_000):  # over the limit; over what uWSGI's buffer holds beside the URI
        head = request_head("GET", f"/v1/projects?status=archived&pad={'a' * pad}", headers)
        problem = assert_problem(exchange(projects.port, head), 414, "bad_request")
        assert "8192" in problem["detail"]


def test_a_long_path_is_414(projects: UwsgiService) -> None:
    head = request_head("GET", "/" + "a" * 16_500, {"X-Request-ID": "long-path-1"})
    answer = exchange(projects.port, head)
    assert assert_problem(answer, 414, "bad_request")["request_id"] == "long-path-1"
    assert "KeyError" not in projects.log_tail(50_000)


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({"X-Pad": "a" * 33_000}, id="33 KB of headers"),
        pytest.param({f"X-Field-{i}": "v" for i in range(101)}, id="101 fields"),
    ],
)
def test_headers_over_the_limits_are_431(projects: UwsgiService, headers: dict[str, str]) -> None:
    assert_problem(exchange(projects.port, request_head("GET", "/health", headers)), 431, "bad_request")


def test_a_head_within_the_limits_is_served(projects: UwsgiService) -> None:
    """An 8,000-byte target beside 30 KB of headers (a large bearer token, say): under the old
    32 KB buffer this head was reset without a status."""
    head = request_head("GET", f"/health?x={'q' * 7990}", {"X-Pad": "a" * 30_000})
    answer = exchange(projects.port, head)
    assert answer.status == 200, answer
    assert answer.json() == {"status": "ok"}


def test_a_head_larger_than_uwsgis_buffer_is_never_served(projects: UwsgiService) -> None:
    """uWSGI answers nothing for a head over its 64 KiB buffer: it logs and closes the connection
    (the client sees a reset, the Cloud Foundry router a 502). Nothing of it reaches the app."""
    answer = exchange(projects.port, request_head("GET", "/health", {"X-Pad": "a" * 70_000}))
    assert answer.status is None, answer
    assert requests.get(f"{projects.url}/health", timeout=5).status_code == 200
