"""Moving a running single-node deployment to a Redis Cluster with ``python -m aerie.migrate``.

A stack on one Redis gets a tenant, a client, projects, a flag with an override and the audit
entries of all of it; it is stopped, its Redis is migrated into an empty local cluster, and
a stack on that cluster (the same secrets) must serve all of it, accept the old client's
credentials, carry on the same audit chains and consume new events on every shard.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import requests

from aerie.local.redis_cluster import RedisCluster
from aerie.local.redis_server import RedisServer
from aerie.local.stack import LocalStack

REPO = Path(__file__).resolve().parents[1]


def _call(stack: LocalStack, method: str, service: str, path: str, token: str, **kw: Any) -> requests.Response:
    return requests.request(
        method, stack.url(service) + path, headers={"Authorization": f"Bearer {token}"}, timeout=15, **kw
    )


def _token(stack: LocalStack, client_id: str, secret: str, **form: str) -> str:
    r = requests.post(
        stack.url("tenants") + "/v1/oauth/token",
        data={"grant_type": "client_credentials", **form},
        auth=(client_id, secret),
        timeout=10,
    )
    assert r.status_code == 200, r.text
    return str(r.json()["access_token"])


def _trail(stack: LocalStack, token: str) -> list[dict[str, Any]]:
    r = _call(stack, "GET", "audit", "/v1/audit/export", token, params={"format": "ndjson"})
    assert r.status_code == 200, r.text[:300]
    return [json.loads(line) for line in r.text.splitlines() if line.strip()]


def _eventually(check: Any, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while not (result := check()):
        assert time.monotonic() < deadline, "did not happen in time"
        time.sleep(0.3)
    return result


def test_a_single_node_deployment_moves_to_a_cluster(tmp_path: Path) -> None:
    single = LocalStack.isolated(REPO, tmp_path / "single")
    with single:
        s = single.secrets
        admin = _token(single, s.bootstrap_client_id, s.bootstrap_client_secret)
        slug = f"mig-{uuid.uuid4().hex[:8]}"
        r = _call(single, "POST", "tenants", "/v1/tenants", admin, json={"slug": slug, "name": "Moving"})
        assert r.status_code == 201, r.text
        tenant_id = r.json()["id"]
        scopes = ["projects:read", "projects:write", "flags:read", "flags:write", "audit:read"]
        r = _call(
            single, "POST", "tenants", f"/v1/tenants/{tenant_id}/clients", admin, json={"name": "m", "scopes": scopes}
        )
        client = r.json()
        token = _token(single, client["client_id"], client["client_secret"])
        projects = []
        for i in range(5):
            r = _call(single, "POST", "projects", "/v1/projects", token, json={"name": f"Before {i}"})
            assert r.status_code == 201, r.text
            projects.append(r.json()["id"])
        flag = f"mig-{uuid.uuid4().hex[:6]}"
        body = {"default": False, "allow_overrides": "tenant"}
        r = _call(single, "PUT", "flags", f"/v1/flags/{flag}", admin, json=body)
        assert r.status_code == 201, r.text
        r = _call(single, "PUT", "flags", f"/v1/flags/{flag}/overrides/tenant", token, json={"value": True})
        assert r.status_code in (200, 201), r.text

        def landed() -> list[dict[str, Any]]:
            trail = _trail(single, token)
            return trail if sum(e["action"] == "project.created" for e in trail) == 5 else []

        before = _eventually(landed)
        redis_port, password = single.redis_port, s.redis_password

    state = tmp_path / "cluster"
    state.mkdir(mode=0o700)
    shutil.copy(tmp_path / "single" / "secrets.json", state / "secrets.json")
    clustered = LocalStack.isolated(REPO, state, redis_cluster=True)
    source = RedisServer(tmp_path / "single" / "redis", redis_port, password=password).start()
    target = RedisCluster(state / "redis-cluster", password=password, ports=clustered.cluster_ports).start()
    try:
        env = {
            "AERIE_MIGRATE_FROM": source.url,
            "AERIE_MIGRATE_TO": target.url,
            "PATH": str(Path(sys.executable).parent),
        }
        done = subprocess.run(
            [sys.executable, "-m", "aerie.migrate", "--shards", "16"],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr + done.stdout
        assert "copied" in done.stdout, done.stdout
        again = subprocess.run(
            [sys.executable, "-m", "aerie.migrate"], capture_output=True, text=True, env=env, timeout=60
        )
        assert again.returncode == 1 and "holds keys already" in again.stderr, "a second run must refuse"
    finally:
        source.stop()
        target.stop()

    with clustered:
        token = _token(clustered, client["client_id"], client["client_secret"])
        r = _call(clustered, "GET", "projects", "/v1/projects", token, params={"limit": 100})
        assert sorted(p["id"] for p in r.json()["items"]) == sorted(projects), r.text[:300]
        r = _call(clustered, "POST", "flags", f"/ofrep/v1/evaluate/flags/{flag}", token, json={"context": {}})
        assert r.status_code == 200 and r.json()["value"] is True, r.text[:300]
        r = _call(clustered, "POST", "projects", "/v1/projects", token, json={"name": "After"})
        assert r.status_code == 201, r.text
        after_id = r.json()["id"]

        def recorded() -> list[dict[str, Any]]:
            trail = _trail(clustered, token)
            return trail if any((e.get("target") or {}).get("id") == after_id for e in trail) else []

        trail = _eventually(recorded)
        assert trail[: len(before)] == before, "the migrated trail is the same chain"
        r = _call(clustered, "GET", "audit", "/v1/audit/verify", token)
        assert r.status_code == 200 and r.json()["valid"] is True, r.text[:300]
        assert len([e for e in trail if e["action"] == "project.created"]) == 6, "each event landed once"


@pytest.mark.parametrize("key", ["something:else", "console:x"])
def test_a_key_no_service_writes_is_refused(key: str) -> None:
    from aerie.keyspace import Keyspace
    from aerie.migrate import MigrationError, target_name

    with pytest.raises(MigrationError):
        target_name(key, Keyspace(16))
