"""OFREP in a real browser: OpenFeature's web SDK and OFREP web provider (npm, pinned in
``package-lock.json``) in headless Chromium evaluate the flags service under uWSGI.

The page (``ofrep.html``) is served by a small server of this test that also relays
``/ofrep/*`` to the flags service, so page and API share an origin, as they do behind an
app's own gateway or the console. The provider fetches the bulk evaluation, revalidates it
with ``If-None-Match`` every 250 ms, and reports a changed flag to the page.
"""

from __future__ import annotations

import threading
import urllib.parse
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests
from conftest import Http, start_service, tenant_with_token

from aerie.local.redis_server import RedisServer
from aerie.testing.browser import chromium, wait_for
from aerie.testing.process import UwsgiService

pytestmark = pytest.mark.flags

HERE = Path(__file__).resolve().parent
TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript", ".map": "application/json"}
#: What the relay passes on, each way.
REQUEST_HEADERS = ("Authorization", "Content-Type", "If-None-Match", "Accept")
RESPONSE_HEADERS = ("Content-Type", "ETag", "Cache-Control", "Retry-After")


class PageServer:
    """``ofrep.html`` and ``node_modules/`` from this folder; ``/ofrep/*`` relayed to ``upstream``."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.statuses: list[int] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                path = urllib.parse.urlsplit(self.path).path
                file = (HERE / path.lstrip("/")).resolve()
                allowed = path == "/ofrep.html" or path.startswith("/node_modules/")
                if not allowed or HERE not in file.parents or not file.is_file():
                    self.send_error(404)
                    return
                body = file.read_bytes()
                self.send_response(200)
                self.send_header("Content-Type", TYPES.get(file.suffix, "application/octet-stream"))
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self) -> None:
                if not self.path.startswith("/ofrep/"):
                    self.send_error(404)
                    return
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                headers = {name: self.headers[name] for name in REQUEST_HEADERS if self.headers.get(name)}
                answer = requests.post(server.upstream + self.path, data=body, headers=headers, timeout=10)
                server.statuses.append(answer.status_code)
                self.send_response(answer.status_code)
                for name in RESPONSE_HEADERS:
                    if name in answer.headers:
                        self.send_header(name, answer.headers[name])
                self.send_header("Content-Length", str(len(answer.content)))
                self.end_headers()
                self.wfile.write(answer.content)

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="page-server", daemon=True)

    def __enter__(self) -> PageServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


@pytest.fixture(scope="module")
def flags(
    redis_server: RedisServer, tenants: UwsgiService, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[UwsgiService]:
    service = start_service("flags", redis_server, tenants.url, tmp_path_factory.mktemp("logs"))
    yield service
    service.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not (HERE / "node_modules" / "@openfeature" / "web-sdk").is_dir():
        pytest.fail(f"run `npm ci --prefix {HERE}` first (tox -e browser does)")
    driver = chromium()
    yield driver
    driver.quit()


def test_the_web_sdk_evaluates_and_sees_a_change(http: Http, flags: UwsgiService, browser: Any) -> None:
    admin = http.bearer()
    prefix = f"web-{uuid.uuid4().hex[:8]}"
    german, later = f"{prefix}-german", f"{prefix}-later"
    rule = {"conditions": [{"attribute": "country", "op": "eq", "values": ["DE"]}], "serve": True}
    for key, doc in ((german, {"default": False, "rules": [rule]}), (later, {"default": False})):
        r = http.s.put(f"{flags.url}/v1/flags/{key}", json=doc, headers=admin, timeout=5)
        assert r.status_code == 201, r.text
    _, token = tenant_with_token(http, ["flags:read"])
    fragment = urllib.parse.urlencode({"token": token, "keys": f"{german},{later}", "user": "user-1", "country": "DE"})

    with PageServer(flags.url) as pages:
        browser.get(f"{pages.url}/ofrep.html#{fragment}")
        state = wait_for(
            lambda: browser.execute_script(
                "return window.aerie && (window.aerie.ready || window.aerie.error) ? window.aerie : null"
            ),
            15,
            "the provider ready in the page",
        )
        assert state["error"] is None, state["error"]
        assert state["details"][german] == {
            "value": True,
            "reason": "TARGETING_MATCH",
            "errorCode": None,
            "variant": None,
            "revision": 1,
        }
        assert state["details"][later]["value"] is False and state["details"][later]["reason"] == "DEFAULT"

        # The provider revalidates its bulk answer (If-None-Match) and is told it has not changed.
        wait_for(lambda: 304 in pages.statuses, 10, "a revalidation answered 304")
        assert pages.statuses[0] == 200, pages.statuses
        r = http.s.put(f"{flags.url}/v1/flags/{later}", json={"default": True}, headers=admin, timeout=5)
        assert r.status_code == 200, r.text
        state = wait_for(
            lambda: (s := browser.execute_script("return window.aerie"))["values"][later] is True and s,
            15,
            "the changed flag in the page",
        )
        assert state["details"][later]["revision"] == 2
        assert any(later in changed for changed in state["changes"]), state["changes"]
        assert pages.statuses[-1] in (200, 304), pages.statuses
