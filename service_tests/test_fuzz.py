"""Every service, fuzzed from its own OpenAPI document: bad input gets a clear 4xx, never a 5xx.

Schemathesis (its CLI, as a user would run it) sends each operation of ``/openapi.json``
the boundary cases its coverage phase derives from the document (a ``null`` body, an empty
string, a missing field) and requests drawn at random, both ones the document allows and
ones it forbids, to the service under uWSGI, as a tenant and as the platform. A request
fails the test when it gets a 5xx, a 2xx though the document forbids it, a status, media
type or body the document does not describe, or a 4xx that is not a problem document
(``fuzz_checks.py``). Not checked: that every request the document allows is accepted,
since cursors, ETags and cross-field rules are more than a schema can say.

Draws are deterministic, so a run repeats the last; set ``AERIE_FUZZ_EXAMPLES`` to draw
more per operation, ``AERIE_FUZZ_SEED`` for other draws. Event streams are left out: they
stay open by design.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import REPO, Http, service_env

from aerie.local.redis_server import RedisServer, free_port
from aerie.testing.process import UwsgiService

pytestmark = pytest.mark.timeout(900)

HERE = Path(__file__).resolve().parent
EXAMPLES = os.environ.get("AERIE_FUZZ_EXAMPLES", "8")
SEED = os.environ.get("AERIE_FUZZ_SEED")
CHECKS = [
    "not_a_server_error",
    "negative_data_rejection",
    "status_code_conformance",
    "content_type_conformance",
    "response_schema_conformance",
    "errors_are_problem_documents",
]
#: Streams answer text/event-stream until they time out; a request would only wait.
STREAMS = ["/v1/flags/stream", "/v1/projects/events"]
TENANT_SCOPES = "tenants:read tenants:write projects:read projects:write flags:read flags:write audit:read"


@pytest.fixture(scope="module")
def services(
    redis_server: RedisServer, tenants: UwsgiService, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, str]]:
    logs: Path = tmp_path_factory.mktemp("logs")
    env = service_env(redis_server, tenants.url)
    started = [
        UwsgiService(REPO / "services" / name, free_port(), env, log_path=logs / f"{name}.log")
        for name in ("projects", "flags", "audit")
    ]
    try:
        for service in started:
            service.start()
        yield {"tenants": tenants.url} | {service.name: service.url for service in started}
    finally:
        for service in started:
            service.stop()


def caller_token(http: Http, who: str) -> str:
    """The platform's token, or a fresh tenant's with every tenant scope.

    Fresh for each test: fuzzing tenants as the platform deletes tenants and revokes clients.
    """
    platform = http.token()
    if who == "platform":
        return platform
    headers = http.bearer(platform)
    slug = f"fuzz-{os.urandom(4).hex()}"
    tenant = http.request("POST", "/v1/tenants", json={"name": "Fuzz", "slug": slug}, headers=headers)
    assert tenant.status_code == 201, tenant.text
    body = {"name": "fuzz", "scopes": TENANT_SCOPES.split()}
    client = http.request("POST", f"/v1/tenants/{tenant.json()['id']}/clients", json=body, headers=headers)
    assert client.status_code == 201, client.text
    return http.token(client.json()["client_id"], client.json()["client_secret"])


def schemathesis_run(base_url: str, token: str, workdir: Path) -> subprocess.CompletedProcess[str]:
    """The CLI run; ``workdir`` takes its cache of failures (replayed by the next run there)."""
    command = [
        *(sys.executable, "-m", "schemathesis.cli", "run", f"{base_url}/openapi.json"),
        *("--header", f"Authorization: Bearer {token}"),
        *("--checks", ",".join(CHECKS)),
        *("--phases", "examples,coverage,fuzzing"),
        *("--max-examples", EXAMPLES),
        *("--request-timeout", "10"),
        # Deterministic draws keep no database; seeded ones are told to keep none.
        *(("--seed", SEED, "--generation-database", "none") if SEED else ("--generation-deterministic",)),
        *(arg for path in STREAMS for arg in ("--exclude-path", path)),
        "--no-color",
    ]
    pythonpath = os.pathsep.join(filter(None, [str(HERE), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "SCHEMATHESIS_HOOKS": "fuzz_checks", "PYTHONPATH": pythonpath}
    return subprocess.run(command, cwd=workdir, env=env, capture_output=True, text=True, timeout=600, check=False)


@pytest.mark.parametrize("who", ["tenant", "platform"])
@pytest.mark.parametrize("service", ["tenants", "projects", "flags", "audit"])
def test_no_input_gets_a_server_error_or_an_undocumented_answer(
    services: dict[str, str], http: Http, service: str, who: str, tmp_path: Path
) -> None:
    done = schemathesis_run(services[service], caller_token(http, who), tmp_path)
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]
    assert "passed" in done.stdout, done.stdout[-2000:]
