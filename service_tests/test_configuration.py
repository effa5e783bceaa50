"""A malformed setting stops an instance with the one line the README promises, never a traceback.

Each service starts under uWSGI exactly as on Cloud Foundry, with one setting spoiled.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import REPO, service_env, tenants_env

from aerie.local.redis_server import RedisServer, free_port
from aerie.testing.keys import TestKey
from aerie.testing.process import UwsgiService

SPOILED = [
    ("tenants", "AERIE_LOG_LEVEL", "verbose"),
    ("projects", "AERIE_LOG_LEVEL", "verbose"),
    ("flags", "AERIE_LOG_LEVEL", "verbose"),
    ("audit", "AERIE_LOG_LEVEL", "verbose"),
    ("tenants", "AERIE_TOKEN_TTL", "soon"),
    ("projects", "AERIE_REDIS_READ_TIMEOUT", "nan"),
    ("projects", "AERIE_PAGE_CACHE_BYTES", "lots"),
    ("flags", "AERIE_SSE_MAX_STREAMS", "-1"),
    ("audit", "AUDIT_RETENTION_DAYS", "forever"),
    ("audit", "PORT", "http"),
    ("console", "AERIE_CONSOLE_URL", "console.example.com"),
    ("console", "AERIE_CONSOLE_OIDC_ISSUER", "ftp://idp.example.com"),
    ("console", "AERIE_CONSOLE_TIMEOUT", "forever"),
]
#: What the console needs beside every service's settings, so only the spoiled one fails.
CONSOLE_ENV = {
    "AERIE_CONSOLE_URL": "http://127.0.0.1:8085",
    "AERIE_CONSOLE_OIDC_ISSUER": "http://127.0.0.1:9400",
    "AERIE_CONSOLE_OIDC_CLIENT_ID": "aerie-local",
    "AERIE_PROJECTS_URL": "http://127.0.0.1:8082",
    "AERIE_FLAGS_URL": "http://127.0.0.1:8083",
    "AERIE_AUDIT_URL": "http://127.0.0.1:8084",
}


@pytest.mark.parametrize(("service", "name", "value"), SPOILED)
def test_a_malformed_setting_stops_start_up_with_one_line(
    redis_server: RedisServer, signing_key: TestKey, tmp_path: Path, service: str, name: str, value: str
) -> None:
    port = free_port()
    if service == "tenants":
        env = tenants_env(redis_server, signing_key, port)
    else:
        env = service_env(redis_server, f"http://127.0.0.1:{free_port()}")
        if service == "console":
            env.update(CONSOLE_ENV)
    instance = UwsgiService(REPO / "services" / service, port, {**env, name: value}, log_path=tmp_path / "bad.log")
    instance.env[name] = value
    instance.start(wait_ready=False)
    assert instance.process is not None
    try:
        code = instance.process.wait(30)
    finally:
        instance.stop()
    log = instance.log_tail(20_000)
    assert code != 0
    lines = [line for line in log.splitlines() if "configuration error" in line]
    assert len(lines) == 1, log
    assert lines[0].startswith(f"aerie-{service}: configuration error: {name} "), lines
    assert "Traceback" not in log
