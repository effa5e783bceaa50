"""Errors reach Sentry (a local ingest server of the test's own) tagged, and with no secret in them."""

from __future__ import annotations

import gzip
import http.server
import json
import threading
import time
import zlib
from collections.abc import Iterator
from typing import Any

import falcon
import falcon.testing
import pytest

from aerie.app import Infrastructure, create_service_app
from aerie.auth.tokens import StaticKeySource
from aerie.config import ConfigError, Settings
from aerie.endpoints import PUBLIC, endpoint
from aerie.error_reporting import SCRUBBED, init_error_reporting, scrubbed
from aerie.testing.keys import TestKey

ISSUER = "http://issuer.test"
#: Made at run time: frames carry source lines, and this one must not be in them.
SECRET = "-".join(("s3cret", "value"))
TOKEN = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJjbGlfYSJ9.c2lnbmF0dXJlLXRoYXQtbXVzdC1ub3QtbGVhaw"


class Ingest:
    """Receives envelopes as Sentry's ingest endpoint does; keeps their event items."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        ingest = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                encoding = self.headers.get("Content-Encoding")
                if encoding == "gzip":
                    raw = gzip.decompress(raw)
                elif encoding == "br":  # pragma: no cover - sentry-sdk sends gzip unless brotli is installed
                    raise AssertionError("brotli")
                elif encoding == "deflate":
                    raw = zlib.decompress(raw)
                lines = raw.split(b"\n")
                for header, payload in zip(lines[1::2], lines[2::2], strict=False):
                    if json.loads(header).get("type") == "event":
                        ingest.events.append(json.loads(payload))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.dsn = f"http://publickey@127.0.0.1:{self.server.server_address[1]}/42"

    def wait(self, n: int, timeout: float = 10) -> list[dict[str, Any]]:
        import sentry_sdk

        deadline = time.monotonic() + timeout
        while len(self.events) < n and time.monotonic() < deadline:
            sentry_sdk.flush(1)
            time.sleep(0.05)
        return self.events


@pytest.fixture
def ingest() -> Iterator[Ingest]:
    import sentry_sdk

    server = Ingest()
    yield server
    sentry_sdk.get_client().close()
    sentry_sdk.init(dsn=None, default_integrations=False, auto_enabling_integrations=False)
    import aerie.error_reporting

    aerie.error_reporting._initialised_for = None
    server.server.shutdown()


class Boom:
    @endpoint("Fail", scopes=PUBLIC)
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        raise RuntimeError(f"lost while holding Bearer {TOKEN}")


def test_an_unhandled_request_error_is_reported_tagged_and_scrubbed(redis_url: str, ingest: Ingest) -> None:
    env = {"REDIS_URL": redis_url, "AERIE_ISSUER": ISSUER, "AERIE_SENTRY_DSN": ingest.dsn, "VERSION": "1.2.3",
           "CF_INSTANCE_INDEX": "3", "AERIE_CLIENT_SECRET": SECRET}  # fmt: skip
    settings = Settings.from_env("demo", env)
    infra = Infrastructure.from_settings(settings, keys=StaticKeySource({"keys": [TestKey("k1").public_jwk()]}))
    try:
        client = falcon.testing.TestClient(create_service_app(infra, [("/boom", Boom())]))
        r = client.simulate_get("/boom", headers={"X-Request-ID": "req-sentry-1", "Authorization": f"Bearer {TOKEN}"})
        assert r.status_code == 500
        (event,) = ingest.wait(1)
    finally:
        infra.close()
    assert event["tags"]["service"] == "demo" and event["tags"]["instance"] == "3"
    assert event["tags"]["request_id"] == "req-sentry-1" and event["release"] == "1.2.3"
    assert event["exception"]["values"][-1]["type"] == "RuntimeError"
    text = json.dumps(event)
    assert TOKEN not in text and SECRET not in text and SCRUBBED in text


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_a_background_threads_crash_is_reported(redis_url: str, ingest: Ingest) -> None:
    settings = Settings.from_env(
        "demo", {"REDIS_URL": redis_url, "AERIE_ISSUER": ISSUER, "AERIE_SENTRY_DSN": ingest.dsn}
    )
    assert init_error_reporting(settings)

    def worker() -> None:
        raise ValueError("a sweeper's bug")

    thread = threading.Thread(target=worker)
    thread.start()
    thread.join()
    events = ingest.wait(1)
    assert [e["exception"]["values"][-1]["type"] for e in events] == ["ValueError"]


def test_without_a_dsn_nothing_is_imported_or_sent(redis_url: str) -> None:
    settings = Settings.from_env("demo", {"REDIS_URL": redis_url, "AERIE_ISSUER": ISSUER})
    assert init_error_reporting(settings) is False


def test_a_dsn_that_is_not_one_is_a_configuration_error(redis_url: str) -> None:
    settings = Settings.from_env("demo", {"REDIS_URL": redis_url, "AERIE_ISSUER": ISSUER, "AERIE_SENTRY_DSN": "nope"})
    with pytest.raises(ConfigError, match="AERIE_SENTRY_DSN"):
        init_error_reporting(settings)


def test_scrubbing_reaches_every_key_and_string() -> None:
    event = {"extra": {"client_secret": "x", "nested": [{"Authorization": "Basic abc"}], "note": f"tok {TOKEN}"},
             "message": "Basic Y2xpOnNlY3JldA== refused", "count": 3}  # fmt: skip
    clean = scrubbed(event)
    assert clean["extra"]["client_secret"] == SCRUBBED and clean["extra"]["nested"][0]["Authorization"] == SCRUBBED
    assert TOKEN not in clean["extra"]["note"] and "Y2xpOnNlY3JldA" not in clean["message"] and clean["count"] == 3
