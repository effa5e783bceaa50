"""A staged app run the way the Python buildpack and Cloud Foundry would run it, on this machine.

What is simulated, step by step, and why each matters:

- install: a fresh venv, then ``pip install -r requirements.txt --no-index
  --find-links=file://<app>/vendor``, the buildpack's command for a vendored app; nothing
  from the repository or the developer's environment can leak in, so a wheel missing from
  ``vendor/`` fails here as it would in staging;
- start: the manifest's ``command`` under ``bash -c`` in the app folder, as the platform
  runs it, with only the variables Cloud Foundry sets (``PORT``, ``VCAP_APPLICATION``,
  ``VCAP_SERVICES``, ``CF_INSTANCE_*``, ``MEMORY_LIMIT``) plus the manifest's ``env``;
- stop: SIGTERM to that process, then SIGKILL after Cloud Foundry's 10 s.

The interpreter is this machine's, so ``runtime.txt`` must name its line (stage with
``--python`` set to it).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import requests

from aerie.local.redis_server import free_port

__all__ = ["CF_KILL_AFTER_S", "CfInstance", "buildpack_install", "p_redis_binding", "user_provided_binding"]

#: Cloud Foundry sends SIGKILL this long after SIGTERM.
CF_KILL_AFTER_S = 10.0


def buildpack_install(app_dir: Path, venv_dir: Path) -> float:
    """Install ``app_dir`` into a new venv as the buildpack would; returns the seconds it took."""
    runtime = (app_dir / "runtime.txt").read_text().strip()
    here = f"python-{sys.version_info.major}.{sys.version_info.minor}.x"
    if runtime != here:
        raise RuntimeError(f"{app_dir}/runtime.txt names {runtime}, but this simulation runs {here}")
    started = time.monotonic()
    subprocess.run([sys.executable, "-m", "venv", str(venv_dir)], check=True, capture_output=True)
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "PYTHON", "VIRTUAL_ENV"))}
    result = subprocess.run(
        [
            str(venv_dir / "bin" / "python"),
            "-m",
            "pip",
            "install",
            "--disable-pip-version-check",
            "--quiet",
            "-r",
            "requirements.txt",
            "--no-index",
            f"--find-links=file://{app_dir / 'vendor'}",
        ],
        cwd=app_dir,
        env=clean,
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        raise RuntimeError(f"offline install of {app_dir.name} failed:\n{result.stdout[-2000:]}{result.stderr[-3000:]}")
    return time.monotonic() - started


def p_redis_binding(name: str, host: str, port: int, password: str | None, *, cluster: bool = False) -> dict[str, Any]:
    """``VCAP_SERVICES`` with one binding shaped as the p.redis broker makes it (``cluster``:
    tagged as a cluster plan's binding is, ``port`` one seed node)."""
    binding = {
        "name": name,
        "binding_name": None,
        "instance_name": name,
        "label": "p.redis",
        "tags": ["redis", "pivotal", "on-demand", *(["cluster"] if cluster else [])],
        "plan": "on-demand-cache",
        "provider": None,
        "syslog_drain_url": None,
        "volume_mounts": [],
        "credentials": {"host": host, "port": port, "password": password},
    }
    return {"p.redis": [binding]}


def user_provided_binding(name: str, credentials: Mapping[str, str], tags: Sequence[str] = ()) -> dict[str, Any]:
    """``VCAP_SERVICES`` with one binding shaped as ``cf create-user-provided-service -p ... -t ...`` makes it.

    The staged apps' manifests carry no secret: an instance gets its secrets this way, as
    on the platform, so a service that read them from its environment alone fails here.
    """
    binding = {
        "name": name,
        "binding_guid": str(uuid.uuid4()),
        "binding_name": None,
        "instance_guid": str(uuid.uuid4()),
        "instance_name": name,
        "label": "user-provided",
        "tags": list(tags),
        "syslog_drain_url": "",
        "volume_mounts": [],
        "credentials": dict(credentials),
    }
    return {"user-provided": [binding]}


class CfInstance:
    """One instance of a staged app: the manifest's command, Cloud Foundry's environment."""

    def __init__(
        self,
        app_dir: Path,
        venv_dir: Path,
        *,
        manifest_app: Mapping[str, Any],
        port: int,
        vcap_services: Mapping[str, Any],
        log_path: Path,
        index: int = 0,
    ) -> None:
        self.app_dir = Path(app_dir)
        self.name = str(manifest_app["name"])
        self.command = str(manifest_app["command"])
        self.memory_limit = str(manifest_app["memory"])
        # What the platform waits for before routing: the readiness check, else the health check.
        self.ready_path = str(
            manifest_app.get("readiness-health-check-http-endpoint")
            or manifest_app.get("health-check-http-endpoint")
            or "/ready"
        )
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.log_path = Path(log_path)
        mem_mb = _megabytes(self.memory_limit)
        guid = str(uuid.uuid4())
        self.env = {
            # The platform's PATH puts the buildpack's Python first; nothing of the caller's env.
            "PATH": f"{venv_dir / 'bin'}:/usr/local/bin:/usr/bin:/bin",
            "HOME": str(self.app_dir),
            "LANG": "en_US.UTF-8",
            "TMPDIR": str(self.log_path.parent),
            "PORT": str(port),
            "CF_INSTANCE_INDEX": str(index),
            "CF_INSTANCE_GUID": guid,
            "CF_INSTANCE_PORT": str(port),
            "CF_INSTANCE_ADDR": f"127.0.0.1:{port}",
            "MEMORY_LIMIT": f"{mem_mb}m",
            "VCAP_APPLICATION": json.dumps(
                {
                    "application_id": str(uuid.uuid4()),
                    "application_name": self.name,
                    "application_uris": [r["route"] for r in manifest_app.get("routes", [])],
                    "instance_id": guid,
                    "instance_index": index,
                    "limits": {"mem": mem_mb, "disk": 1024, "fds": 16384},
                    "space_name": "simulation",
                    "organization_name": "aerie",
                }
            ),
            "VCAP_SERVICES": json.dumps(vcap_services),
            **{str(k): str(v) for k, v in (manifest_app.get("env") or {}).items()},
        }
        # Each container has a network of its own, so every app listens on the manifest's one
        # internal metrics port; here the instances share one network and each gets its own.
        self.metrics_port: int | None = None
        if "AERIE_METRICS_PORT" in self.env:
            self.metrics_port = free_port()
            self.env["AERIE_METRICS_PORT"] = str(self.metrics_port)
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def start(self, timeout: float = 60.0) -> CfInstance:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                ["bash", "-c", self.command],
                cwd=self.app_dir,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.process.returncode}:\n{self.log_tail()}")
            with contextlib.suppress(requests.RequestException):
                if requests.get(f"{self.url}{self.ready_path}", timeout=2).status_code == 200:
                    return
            time.sleep(0.2)
        raise RuntimeError(f"{self.name} was not ready within {timeout}s:\n{self.log_tail()}")

    def wait_workers_loaded(self, workers: int, timeout: float = 30.0) -> None:
        """Until ``workers`` workers have loaded the app (lazy-apps: each after its fork).

        uWSGI 2.0 loses the graceful-stop SIGHUP of a worker still loading the app, and that
        worker then lives until SIGKILL; tests of the graceful stop wait for this first.
        """
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.log_tail(1_000_000).count("WSGI app 0 (mountpoint='') ready in") >= workers:
                return
            time.sleep(0.1)
        raise RuntimeError(f"{self.name}: {workers} workers did not load the app within {timeout}s")

    def log_tail(self, chars: int = 4000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:] if self.log_path.exists() else ""

    def stop(self) -> tuple[int | None, float]:
        """SIGTERM, as Cloud Foundry stops an instance; returns (exit status, seconds to exit).

        Status None means the instance outlived the 10 s and was killed, as the platform would.
        """
        if self.process is None or self.process.poll() is not None:
            return (self.process.returncode if self.process else None, 0.0)
        started = time.monotonic()
        self.process.send_signal(signal.SIGTERM)
        try:
            status: int | None = self.process.wait(CF_KILL_AFTER_S)
        except subprocess.TimeoutExpired:
            status = None
        elapsed = time.monotonic() - started
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()
        return status, elapsed


def _megabytes(limit: str) -> int:
    units = {"M": 1, "MB": 1, "G": 1024, "GB": 1024}
    text = limit.strip().upper()
    for suffix in sorted(units, key=len, reverse=True):
        if text.endswith(suffix):
            return int(text[: -len(suffix)]) * units[suffix]
    raise ValueError(f"unreadable memory limit {limit!r}")
