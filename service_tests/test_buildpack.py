"""Buildpack simulation: every service staged, installed offline, started and loaded as on Cloud Foundry.

Once per session ``make stage``'s code stages every service (real wheel downloads for this
machine's Python line), and each staged app gets a fresh venv installed exactly as the
Python buildpack installs a vendored app (in parallel). Then every app runs under its
manifest's ``command`` with Cloud Foundry's environment and its manifest's ``env``
interpolated with the same vars ``make deploy`` uses, each app's secrets bound in
``VCAP_SERVICES`` as its user-provided ``aerie-secrets-<service>``, and the test checks
``/health``, ``/ready`` and ``/info``, that the command ``exec``s uWSGI, that a short load
is served without a 5xx, and that the whole instance (master and workers, by PSS) stays
under the manifest's memory limit during that load. The synthetic monitor is staged and
installed the same way and, its bootstrap client bound as ``aerie-secrets-monitor``, runs
the smoke journeys against those instances, under its own limit idle and mid-run.
"""

from __future__ import annotations

import json
import re
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests
from conftest import ON_CLUSTER

from aerie.cf.manifest import interpolate, load_manifest
from aerie.cf.secrets import SECRETS_SERVICE_TAG, app_secrets, secrets_service, secrets_vars
from aerie.cf.stage import stage_all, stageable_services
from aerie.local.redis_cluster import RedisCluster
from aerie.local.redis_server import RedisServer, free_port
from aerie.testing.buildpack import (
    CF_KILL_AFTER_S,
    CfInstance,
    buildpack_install,
    p_redis_binding,
    user_provided_binding,
)
from aerie.testing.http import basic_auth
from aerie.testing.memory import TreeMemory, tree_memory
from aerie.testing.polling import wait_for
from aerie.testing.rate_limits import NO_RATE_LIMITS

REPO = Path(__file__).resolve().parents[1]
SERVICES = stageable_services(REPO)
VERSION, COMMIT = "9.8.7", "cafef00d"
LOAD_SECONDS = 4.0
LOAD_THREADS = 6

pytestmark = pytest.mark.timeout(600)


def _mib(limit: str) -> int:
    assert limit.endswith("M"), limit
    return int(limit[:-1])


@pytest.fixture(scope="session")
def staged(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Path]]:
    """Each service staged and installed: ``{name: (app_dir, venv_dir)}``."""
    root = tmp_path_factory.mktemp("cf")
    python = f"{sys.version_info.major}.{sys.version_info.minor}"
    started = time.monotonic()
    apps = stage_all(REPO, root / "stage", python=python)
    staged_s = time.monotonic() - started
    with ThreadPoolExecutor(max_workers=2) as pool:
        durations = list(pool.map(lambda app: buildpack_install(app, root / "venvs" / app.name), apps))
    print(f"\nstaged {len(apps)} services in {staged_s:.1f}s; offline installs took {[f'{d:.1f}s' for d in durations]}")
    return {app.name: (app, root / "venvs" / app.name) for app in apps}


@pytest.fixture(scope="module")
def cf_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer | RedisCluster]:
    """This deployment's own Redis: its instances consume the durable stream (cascades,
    audit) and must not act on other modules' tests, as a second suite in the same Redis would.
    On a cluster run (``tox -e cluster``) a cluster of its own: what a pushed app weighs there."""
    if ON_CLUSTER:
        cluster = RedisCluster(tmp_path_factory.mktemp("cf-redis-cluster"), password="cf-test-pass").start()
        yield cluster
        cluster.stop()
        return
    server = RedisServer(tmp_path_factory.mktemp("cf-redis"), password="cf-test-pass")
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def deployment(cf_redis: RedisServer | RedisCluster) -> dict[str, Any]:
    """Ports and the ``((vars))`` of a deploy to this machine: the secrets file's format, local URLs."""
    ports = {name: free_port() for name in SERVICES}
    tenants_url = f"http://127.0.0.1:{ports['tenants']}"
    variables: dict[str, Any] = {
        **secrets_vars(SERVICES),
        "version": VERSION,
        "commit": COMMIT,
        "redis_service": "aerie-redis",
        "tenants_url": tenants_url,
        "issuer": tenants_url,
        "jwks_url": f"{tenants_url}/.well-known/jwks.json",
    }
    for name in SERVICES:
        variables[f"{name}_instances"] = 1
        variables[f"{name}_route"] = f"aerie-{name}.apps.internal"
        variables[f"{name}_url"] = f"http://127.0.0.1:{ports[name]}"
    # The console's provider is only asked when someone signs in, which the load does not.
    variables["console_oidc_issuer"] = "http://127.0.0.1:9/idp"
    variables["console_oidc_client"] = "aerie-console"
    cluster = isinstance(cf_redis, RedisCluster)
    port = cf_redis.ports[0] if cluster else cf_redis.port
    binding = p_redis_binding("aerie-redis", "127.0.0.1", port, cf_redis.password, cluster=cluster)
    return {"ports": ports, "vars": variables, "vcap_services": binding}


def _instance(
    name: str, staged: dict[str, tuple[Path, Path]], deployment: dict[str, Any], log_dir: Path, port: int | None = None
) -> CfInstance:
    app_dir, venv = staged[name]
    (app,) = interpolate(load_manifest(app_dir / "manifest.yml"), deployment["vars"])["applications"]
    # What `make deploy` puts in the app's secrets service, bound as the manifest names it.
    secrets = user_provided_binding(
        secrets_service(name), app_secrets(name, deployment["vars"]), tags=[SECRETS_SERVICE_TAG]
    )
    assert secrets_service(name) in app["services"]
    # Only what the manifest binds: the monitor has no Redis.
    redis = deployment["vcap_services"] if deployment["vars"]["redis_service"] in app["services"] else {}
    instance = CfInstance(
        app_dir,
        venv,
        manifest_app=app,
        port=port or deployment["ports"][name],
        vcap_services={**redis, **secrets},
        log_path=log_dir / f"{name}-{uuid.uuid4().hex[:6]}.log",
    )
    # As `cf set-env` would: the load measures the memory of real work, not of 429s.
    instance.env.update(NO_RATE_LIMITS)
    return instance


@pytest.fixture(scope="module")
def instances(
    staged: dict[str, tuple[Path, Path]], deployment: dict[str, Any], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, CfInstance]]:
    """One instance of every staged app, tenants (the issuer) first."""
    log_dir = tmp_path_factory.mktemp("cf-logs")
    running: dict[str, CfInstance] = {}
    try:
        for name in SERVICES:
            running[name] = _instance(name, staged, deployment, log_dir).start()
        yield running
    finally:
        for instance in reversed(list(running.values())):
            instance.stop()


def _token(tenants_url: str, client_id: str, secret: str, **form: str) -> str:
    r = requests.post(
        f"{tenants_url}/v1/oauth/token",
        data={"grant_type": "client_credentials", **form},
        headers={"Authorization": basic_auth(client_id, secret)},
        timeout=10,
    )
    assert r.status_code == 200, r.text
    return r.json()["access_token"]


@pytest.fixture(scope="module")
def tokens(instances: dict[str, CfInstance], deployment: dict[str, Any]) -> dict[str, str]:
    """A platform admin token and a token of a fresh tenant's client with every tenant scope."""
    v = deployment["vars"]
    url = instances["tenants"].url
    admin = _token(url, v["bootstrap_client_id"], v["bootstrap_client_secret"])
    auth = {"Authorization": f"Bearer {admin}"}
    tenant = requests.post(
        f"{url}/v1/tenants", json={"slug": f"bp-{uuid.uuid4().hex[:10]}", "name": "Buildpack"}, headers=auth, timeout=10
    )
    assert tenant.status_code == 201, tenant.text
    scopes = ["tenants:read", "projects:read", "projects:write", "flags:read", "audit:read"]
    client = requests.post(
        f"{url}/v1/tenants/{tenant.json()['id']}/clients",
        json={"name": "buildpack-load", "scopes": scopes},
        headers=auth,
        timeout=10,
    )
    assert client.status_code == 201, client.text
    tenant_token = _token(url, client.json()["client_id"], client.json()["client_secret"])
    return {"admin": admin, "tenant": tenant_token}


def _load_calls(name: str, base: str, tokens: dict[str, str], v: dict[str, Any]) -> list[Callable[[], int]]:
    """The requests one load iteration makes against ``name``; each returns a status code."""
    s = requests.Session()
    tenant = {"Authorization": f"Bearer {tokens['tenant']}"}
    admin = {"Authorization": f"Bearer {tokens['admin']}"}
    calls: list[Callable[[], int]] = [lambda: s.get(f"{base}/health", timeout=10).status_code]
    if name == "console":
        # HTML pages, not an API: no /openapi.json. A signed-out page sends to sign-in (303).
        calls += [
            lambda: s.get(f"{base}/", timeout=10).status_code,
            lambda: s.get(f"{base}/static/console.css", timeout=10).status_code,
            lambda: s.get(f"{base}/flags", allow_redirects=False, timeout=10).status_code,
        ]
        return calls
    calls.append(lambda: s.get(f"{base}/openapi.json", timeout=10).status_code)
    if name == "tenants":
        auth = basic_auth(v["bootstrap_client_id"], v["bootstrap_client_secret"])
        calls += [
            lambda: (
                s.post(
                    f"{base}/v1/oauth/token",
                    data={"grant_type": "client_credentials"},
                    headers={"Authorization": auth},
                    timeout=10,
                ).status_code
            ),
            lambda: s.get(f"{base}/v1/tenants", headers=admin, timeout=10).status_code,
        ]
    elif name == "projects":
        calls += [
            lambda: (
                s.post(
                    f"{base}/v1/projects", json={"name": f"p-{uuid.uuid4().hex[:12]}"}, headers=tenant, timeout=10
                ).status_code
            ),
            lambda: s.get(f"{base}/v1/projects", headers=tenant, timeout=10).status_code,
        ]
    elif name == "flags":
        calls.append(
            lambda: (
                s.post(
                    f"{base}/v1/evaluate", json={"context": {"user_id": "u-1"}}, headers=tenant, timeout=10
                ).status_code
            )
        )
    elif name == "audit":
        calls.append(lambda: s.get(f"{base}/v1/audit/events", headers=tenant, timeout=10).status_code)
    return calls


def _run_load(
    instance: CfInstance, calls_for: Callable[[], list[Callable[[], int]]], seconds: float
) -> tuple[dict[int, int], TreeMemory, int]:
    """``LOAD_THREADS`` clients for ``seconds``; returns status counts, peak memory, errors."""
    statuses: dict[int, int] = {}
    errors = [0]
    lock = threading.Lock()
    stop = threading.Event()

    def client() -> None:
        calls = calls_for()
        i = 0
        while not stop.is_set():
            try:
                status = calls[i % len(calls)]()
            except requests.RequestException:
                with lock:
                    errors[0] += 1
            else:
                with lock:
                    statuses[status] = statuses.get(status, 0) + 1
            i += 1

    threads = [threading.Thread(target=client, daemon=True) for _ in range(LOAD_THREADS)]
    for t in threads:
        t.start()
    peak = tree_memory(instance.pid)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        time.sleep(0.1)
        peak = peak.max(tree_memory(instance.pid))
    stop.set()
    for t in threads:
        t.join(15)
    return statuses, peak.max(tree_memory(instance.pid)), errors[0]


@pytest.mark.parametrize("name", SERVICES)
def test_staged_app_starts_with_cloud_foundrys_environment(name, instances):
    instance = instances[name]
    assert Path(f"/proc/{instance.pid}/comm").read_text().strip() == "uwsgi", "the command must exec uWSGI"
    health = requests.get(f"{instance.url}/health", timeout=5)
    assert health.status_code == 200 and health.json() == {"status": "ok"}
    ready = requests.get(f"{instance.url}/ready", timeout=5)
    assert ready.status_code == 200, ready.text
    info = requests.get(f"{instance.url}/info", timeout=5).json()
    assert info == {"name": name, "version": VERSION, "commit": COMMIT, "instance_index": 0}


@pytest.mark.parametrize("name", SERVICES)
def test_instance_memory_under_load_stays_under_the_manifest_limit(name, instances, tokens, deployment):
    instance = instances[name]
    limit = _mib(instance.memory_limit)
    idle = tree_memory(instance.pid)
    statuses, peak, errors = _run_load(
        instance, lambda: _load_calls(name, instance.url, tokens, deployment["vars"]), LOAD_SECONDS
    )
    served = sum(statuses.values())
    report = {
        "service": name,
        "processes": len(peak.pids),
        "idle_pss_mib": round(idle.pss_mib, 1),
        "peak_pss_mib": round(peak.pss_mib, 1),
        "peak_rss_sum_mib": round(peak.rss_mib, 1),
        "limit_mib": limit,
        "requests": served,
        "statuses": statuses,
    }
    print(f"\nbuildpack memory {json.dumps(report)}")
    assert errors == 0 and served > 0
    assert not [s for s in statuses if s >= 500], statuses
    assert not [s for s in statuses if s >= 400], f"{name}: load requests were refused: {statuses}"
    assert len(peak.pids) >= 3, "master and at least two workers"
    assert peak.pss_mib < limit, report


def _metric(text: str, name: str) -> dict[str, float]:
    """``{labels: value}`` of one metric in a Prometheus text exposition."""
    return {m[1] or "": float(m[2]) for m in re.finditer(rf"^{re.escape(name)}(\{{[^}}]*\}})? (\S+)$", text, re.M)}


def test_staged_monitor_runs_the_smoke_journeys_against_the_staged_services(staged, deployment, instances, tmp_path):
    monitor = _instance("monitor", staged, deployment, tmp_path, port=free_port())
    assert not [k for k in monitor.env if "SECRET" in k], "the bootstrap client comes from the binding alone"
    metrics_url = f"http://127.0.0.1:{monitor.metrics_port}/metrics"
    monitor.start()
    try:
        assert Path(f"/proc/{monitor.pid}/comm").read_text().startswith("python"), "the command must exec Python"
        # The first run starts with the monitor; the next only after AERIE_SYNTHETIC_INTERVAL (300 s).
        peak = tree_memory(monitor.pid)
        text = ""
        deadline = time.monotonic() + float(monitor.env["AERIE_SYNTHETIC_TIMEOUT"]) + 30
        while time.monotonic() < deadline:
            peak = peak.max(tree_memory(monitor.pid))
            text = requests.get(metrics_url, timeout=5).text
            if _metric(text, "aerie_synthetic_runs_total"):
                break
            time.sleep(0.2)
        up = _metric(text, "aerie_synthetic_journey_up")
        log = monitor.log_tail()
        assert _metric(text, "aerie_synthetic_runs_total") == {'{result="passed"}': 1.0}, f"{text}\n{log}"
        assert up.pop('{journey="run"}') == 1
        journeys = {label.split('"')[1] for label, value in up.items() if value == 1}
        assert len(journeys) == len(up) >= 4, up
        assert {j.split("::")[0] for j in journeys} >= {"test_tenants_journeys", "test_onboarding_journeys"}
        # Idle: the run's pytest has exited and only the monitor's own process is left.
        assert wait_for(lambda: len(tree_memory(monitor.pid).pids) == 1, 10), "the run left a process behind"
        time.sleep(1.0)
        idle = tree_memory(monitor.pid)
        report = {
            "app": "monitor",
            "journeys": len(journeys),
            "idle_pss_mib": round(idle.pss_mib, 1),
            "peak_pss_mib": round(peak.pss_mib, 1),
            "peak_processes": len(peak.pids),
            "peak_rss_sum_mib": round(peak.rss_mib, 1),
            "limit_mib": _mib(monitor.memory_limit),
        }
        print(f"\nbuildpack memory {json.dumps(report)}")
        assert len(peak.pids) >= 2, "a sample caught the run's pytest"
        assert peak.pss_mib < _mib(monitor.memory_limit), report
    finally:
        monitor.stop()


def test_sigterm_finishes_in_flight_requests_well_within_the_kill(staged, deployment, tmp_path, instances):
    """A rolling push stops old instances with SIGTERM and SIGKILLs them 10 s later."""
    instance = _instance("tenants", staged, deployment, tmp_path, port=free_port()).start()
    instance.wait_workers_loaded(2)  # see CfInstance.wait_workers_loaded: a loading worker misses SIGTERM
    v = deployment["vars"]
    auth = basic_auth(v["bootstrap_client_id"], v["bootstrap_client_secret"])
    results: list[int | str] = []

    def token_request() -> None:
        try:
            r = requests.post(
                f"{instance.url}/v1/oauth/token",
                data={"grant_type": "client_credentials"},
                headers={"Authorization": auth},
                timeout=10,
            )
            results.append(r.status_code)
        except requests.RequestException as exc:
            results.append(type(exc).__name__)

    burst = [threading.Thread(target=token_request) for _ in range(8)]
    for t in burst:
        t.start()
    time.sleep(0.02)  # the burst is in flight, not yet answered
    status, elapsed = instance.stop()
    for t in burst:
        t.join(15)
    print(f"\nSIGTERM to exit: {elapsed:.2f}s, status {status}, burst {results}")
    assert status is not None, f"still running after {CF_KILL_AFTER_S}s:\n{instance.log_tail()}"
    assert elapsed < CF_KILL_AFTER_S / 2
    answered = [r for r in results if r == 200]
    refused = [r for r in results if r != 200]
    # Requests already accepted are answered; only ones that arrive after the socket closed fail to connect.
    assert answered, results
    assert all(r == "ConnectionError" for r in refused), results
