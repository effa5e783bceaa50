"""What a console page costs to answer, in process: the WSGI app, its services faked.

    .venv/bin/python bench/console_render.py                 # 1000 requests a case, best of 5
    .venv/bin/python bench/console_render.py --requests 2000 --repeat 7

Each case is ``GET /flags`` (20 flags, each with a rollout: a percentage per row) or
``GET /audit`` (50 entries: a timestamp per row) with a signed-in session, through Falcon's
test client, so it times what the console itself does for a page (session, negotiation,
rendering, headers) and nothing of the network or the services. The ``de`` cases ask in
German by ``Accept-Language`` or by the person's ``language`` claim; on a console without
i18n they are the same English page. It runs against whatever ``console`` package imports:
put an older checkout first on ``PYTHONPATH`` to compare.
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

import falcon
import jwt
from console.api import Api
from console.app import build
from console.config import ConsoleConfig
from console.session import SESSION_COOKIE
from falcon import testing

from aerie.config import Settings

FLAGS = {
    "items": [
        {
            "key": f"flag-{i}",
            "enabled": i % 3 != 0,
            "default": False,
            "rollout": {"percentage": 12.5 + i, "stickiness": "user_id"},
            "version": i + 1,
        }
        for i in range(20)
    ]
}
AUDIT = {
    "items": [
        {
            "seq": 1000 - i,
            "occurred_at": f"2026-12-04T10:{i:02d}:00.123456+00:00",
            "action": "flag.updated",
            "actor": {"type": "user", "id": "usr_1", "client_id": "cli_app"},
            "target": {"type": "flag", "id": f"flag-{i}"},
            "request_id": f"req-{i}",
        }
        for i in range(50)
    ]
}


class CannedApi(Api):
    def __init__(self) -> None:
        pass

    def call(self, token: str, method: str, service: str, path: str, **kw: Any) -> Any:
        return FLAGS if path == "/v1/flags" else AUDIT


def settings() -> Settings:
    return Settings.from_env(
        "console",
        {
            "REDIS_URL": "redis://127.0.0.1:1/0",  # never connected to: no page here asks Redis
            "AERIE_TENANTS_URL": "http://tenants.test",
            "AERIE_PROJECTS_URL": "http://projects.test",
            "AERIE_FLAGS_URL": "http://flags.test",
            "AERIE_AUDIT_URL": "http://audit.test",
            "AERIE_CONSOLE_URL": "http://127.0.0.1:8085",
            "AERIE_CONSOLE_OIDC_ISSUER": "http://idp.test",
            "AERIE_CONSOLE_OIDC_CLIENT_ID": "aerie-local",
            "AERIE_CLIENT_ID": "svc-console",
            "AERIE_CLIENT_SECRET": "console-bench-secret-0123456789abcdef0123",
        },
    )


def session_cookie(service: Any, **claims: Any) -> str:
    base = {"sub": "usr_1", "scope": "platform:admin", "role": "platform-admin", "email": "p@example.com"}
    token = jwt.encode({**base, **claims, "exp": time.time() + 3600}, "x" * 32, algorithm="HS256")
    resp = falcon.Response()
    service.pages.cookies.start_session(resp, token, 3600)
    return resp._cookies[SESSION_COOKIE].value  # the cookie as a browser would send it


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    config = ConsoleConfig.from_settings(settings())
    service = build(settings(), config, api=CannedApi())
    client = testing.TestClient(service.app)
    plain, german = session_cookie(service), session_cookie(service, language="de")
    cases = [
        ("/flags en (no Accept-Language)", "/flags", plain, {}),
        ("/flags de (Accept-Language)", "/flags", plain, {"Accept-Language": "de-DE,de;q=0.9,en;q=0.5"}),
        ("/flags de (language claim)", "/flags", german, {}),
        ("/audit en (no Accept-Language)", "/audit", plain, {}),
        ("/audit de (Accept-Language)", "/audit", plain, {"Accept-Language": "de-DE,de;q=0.9,en;q=0.5"}),
    ]
    for name, path, cookie, headers in cases:
        first = client.simulate_get(path, cookies={SESSION_COOKIE: cookie}, headers=headers)
        assert first.status_code == 200, (name, first.status_code, first.text[:300])
        times = []
        for _ in range(args.repeat):
            start = time.perf_counter()
            for _ in range(args.requests):
                client.simulate_get(path, cookies={SESSION_COOKIE: cookie}, headers=headers)
            times.append((time.perf_counter() - start) / args.requests * 1e6)
        lang = first.headers.get("Content-Language", "-")
        print(
            f"{name:34} best {min(times):7.1f} µs  median {statistics.median(times):7.1f} µs"
            f"  ({args.requests} requests x {args.repeat}; Content-Language {lang}; {len(first.text)} bytes)"
        )
    service.close()


if __name__ == "__main__":
    main()
