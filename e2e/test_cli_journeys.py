"""The ``aerie`` command as an operator runs it: the real executable against the running stack.

Each step is a subprocess of the installed console script, configured only by the ``AERIE_*``
variables, as in an operator's shell; what it claims is checked through the API directly,
so the journey does not take the command's word for it.
"""

from __future__ import annotations

import http.server
import json
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

pytestmark = [pytest.mark.tenants, pytest.mark.flags, pytest.mark.audit]

AERIE = Path(sys.executable).with_name("aerie")
PROPAGATION_S = 5.0


def run(env: dict[str, str], cwd: Path, *args: str, expect: int = 0) -> subprocess.CompletedProcess[str]:
    """``aerie ARGS`` with only the stack's AERIE_* settings; fails on another exit status or a traceback."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("AERIE_")}
    done = subprocess.run(
        [str(AERIE), *args], env={**clean, **env}, cwd=cwd, capture_output=True, text=True, timeout=60, check=False
    )
    assert "Traceback" not in done.stderr, done.stderr
    assert done.returncode == expect, f"aerie {' '.join(args)} -> {done.returncode}\n{done.stdout}\n{done.stderr}"
    return done


def run_json(env: dict[str, str], cwd: Path, *args: str) -> Any:
    return json.loads(run(env, cwd, *args, "--json").stdout)


@pytest.fixture
def cutting_audit(stack_env: dict[str, str]) -> Iterator[str]:
    """The audit service behind a proxy that breaks every export off after two and a half entries.

    The interruption a long export meets in real life (an instance replaced, a proxy timing
    out), made to happen at a known place: the first two entries whole, the third cut in two.
    """
    upstream = stack_env["AERIE_AUDIT_URL"].rstrip("/")

    class Cutting(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            headers = {k: v for k, v in self.headers.items() if k.lower() in {"authorization", "x-request-id"}}
            r = requests.get(upstream + self.path, headers=headers, timeout=10)
            body = r.content
            if self.path.startswith("/v1/audit/export"):
                lines = body.split(b"\n")
                body = b"\n".join(lines[:2]) + b"\n" + lines[2][: len(lines[2]) // 2]
            self.send_response(r.status_code)
            self.send_header("Content-Type", r.headers.get("Content-Type", "application/json"))
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(body)
            self.close_connection = True

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Cutting)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_an_operator_runs_a_tenant_from_the_command_line(aerie, stack_env, tmp_path, cutting_audit):
    assert AERIE.exists() or shutil.which("aerie"), "the aerie console script is not installed (make install)"
    env = {k: v for k, v in stack_env.items() if k.startswith("AERIE_")}
    admin = aerie.admin_token

    # A tenant, created by slug and found again by it.
    slug = f"e2e-{aerie.run_id}-cli"
    tenant = run_json(env, tmp_path, "tenants", "create", slug, "--name", "CLI journey", "--plan", "team")
    aerie.on_cleanup(
        f"tenant {tenant['id']}", lambda: aerie.call("DELETE", "tenants", f"/v1/tenants/{tenant['id']}", token=admin)
    )
    assert (tenant["slug"], tenant["plan"], tenant["status"]) == (slug, "team", "active")
    listed = run(env, tmp_path, "tenants", "list").stdout
    assert slug in listed and tenant["id"] in listed, "the table lists the new tenant"

    # Suspend and reactivate by slug; the API agrees.
    run(env, tmp_path, "tenants", "suspend", slug)
    assert aerie.call("GET", "tenants", f"/v1/tenants/{tenant['id']}", token=admin).json()["status"] == "suspended"
    assert run_json(env, tmp_path, "tenants", "reactivate", tenant["id"])["status"] == "active"

    # A client: its secret printed once and working; revoked, its credentials stop working.
    client = run_json(env, tmp_path, "clients", "create", slug, "--name", "cli", "--scope", "flags:read audit:read")
    assert client["client_secret"] and sorted(client["scopes"]) == ["audit:read", "flags:read"]
    aerie.token(client["client_id"], client["client_secret"])
    shown = run(env, tmp_path, "clients", "list", slug).stdout
    assert client["client_id"] in shown and client["client_secret"] not in shown, "a secret is never shown again"
    run(env, tmp_path, "clients", "revoke", slug, client["client_id"])

    def refused() -> bool:
        r = aerie.call(
            "POST",
            "tenants",
            "/v1/oauth/token",
            data={"grant_type": "client_credentials"},
            auth=(client["client_id"], client["client_secret"]),
        )
        return r.status_code == 401

    aerie.eventually(refused, PROPAGATION_S, "the revoked client's credentials being refused")

    # An API error is one line on stderr and exit 1: the slug is taken.
    again = run(env, tmp_path, "tenants", "create", slug, expect=1)
    assert again.stderr.startswith("aerie: error: tenants: 409 conflict") and again.stderr.count("\n") == 1

    # A flag on by default, killed: the tenant is served off.
    flag = aerie.create_flag("cli-kill", default=True)
    served = run_json(env, tmp_path, "flags", "evaluate", flag["key"], "--tenant", slug)
    assert served["value"] is True, served
    killed = run_json(env, tmp_path, "flags", "kill", flag["key"])
    assert killed["enabled"] is False and killed["version"] == flag["version"] + 1
    assert "false" in run(env, tmp_path, "flags", "show", flag["key"]).stdout

    def off() -> bool:
        result = run_json(env, tmp_path, "flags", "evaluate", flag["key"], "--tenant", slug)
        return result["value"] is False and result["reason"] == "DISABLED"

    aerie.eventually(off, PROPAGATION_S, "the killed flag evaluating off", interval=0.2)
    rolled = run_json(env, tmp_path, "flags", "rollout", flag["key"], "25", "--stickiness", "tenant_id")
    assert rolled["rollout"] == {"percentage": 25, "stickiness": "tenant_id"} and rolled["enabled"] is False

    # The tenant's trail: everything above has landed, and the chain verifies.
    wanted = {"tenant.created", "tenant.suspended", "tenant.reactivated", "client.created", "client.revoked"}
    aerie.eventually(
        lambda: wanted <= {e["action"] for e in aerie.audit_trail(admin, tenant_id=tenant["id"])},
        PROPAGATION_S,
        "the CLI's changes in the tenant's audit trail",
        interval=0.2,
    )
    verdict = run_json(env, tmp_path, "audit", "verify", slug)
    assert verdict["valid"] is True and verdict["entries"] >= len(wanted)
    assert "valid" in run(env, tmp_path, "audit", "verify", slug).stdout

    # An export broken off mid-entry, then resumed: every entry exactly once, as the API has them.
    target = tmp_path / "trail.ndjson"
    cut = run(env, tmp_path, "audit", "export", slug, "-o", str(target), "--audit-url", cutting_audit, expect=1)
    assert "run the same command again to resume" in cut.stderr and not target.exists()
    resumed = run(env, tmp_path, "audit", "export", slug, "-o", str(target))
    assert "resuming after seq 2" in resumed.stderr
    trail = aerie.audit_trail(admin, tenant_id=tenant["id"])
    exported = [json.loads(line) for line in target.read_text(encoding="utf-8").splitlines()]
    assert [e["seq"] for e in exported] == [e["seq"] for e in trail[: len(exported)]]
    assert len({e["seq"] for e in exported}) == len(exported) >= len(wanted)
    assert exported == trail[: len(exported)] and aerie.first_broken_link(exported) is None
    assert not (tmp_path / "trail.ndjson.partial").exists()
