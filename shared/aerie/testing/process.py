"""A service as a real uWSGI process, the way Cloud Foundry runs it, for service tests.

It starts ``uwsgi --ini uwsgi.ini`` in the service's folder (the same ini its manifest
uses) with a CF-like environment, waits for ``/ready``, and stops with SIGTERM, which the
production ini turns into a graceful shutdown.

Each service runs in a session of its own, so a Ctrl-C in the terminal reaches only pytest
(whose fixtures then stop it gracefully) and :meth:`UwsgiService.kill` can take the master
and its workers down at once. When ``AERIE_SERVER_COVERAGE`` names a coverage config (the
tox ``service`` env sets it), the workers are measured too: see
:mod:`aerie.testing.uwsgi_coverage`.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

import requests

__all__ = ["UwsgiService", "uwsgi_binary", "uwsgi_command"]

#: Names a coverage config file; when set, uWSGI workers measure themselves (service tier).
SERVER_COVERAGE_ENV = "AERIE_SERVER_COVERAGE"


def uwsgi_binary() -> str:
    candidate = Path(sys.executable).parent / "uwsgi"
    return str(candidate) if candidate.exists() else "uwsgi"


def uwsgi_command(ini: str = "uwsgi.ini", *extra: str) -> list[str]:
    """``uwsgi --ini <ini>``, plus the coverage hook when the test tier asks for coverage."""
    command = [uwsgi_binary(), "--ini", ini, *extra]
    if os.environ.get(SERVER_COVERAGE_ENV):
        # --import runs in every worker before the app loads (lazy-apps), not in the master.
        command += ["--import", "aerie.testing.uwsgi_coverage"]
    return command


class UwsgiService:
    def __init__(self, service_dir: Path, port: int, env: Mapping[str, str], *, log_path: Path) -> None:
        self.service_dir = Path(service_dir)
        self.name = self.service_dir.name
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.log_path = Path(log_path)
        self.env = {
            **os.environ,
            "PORT": str(port),
            "CF_INSTANCE_INDEX": "0",
            "VCAP_APPLICATION": json.dumps(
                {"application_name": self.name, "instance_index": 0, "application_uris": [], "limits": {"mem": 128}}
            ),
            **env,
        }
        self.process: subprocess.Popen[bytes] | None = None
        self._log_start = 0

    def start(self, timeout: float = 30.0, *, wait_ready: bool = True, ready_path: str = "/ready") -> UwsgiService:
        """Spawn uWSGI; unless ``wait_ready`` is false, return once ``ready_path`` answers 200.

        ``ready_path="/health"`` is for a test that starts a service whose peers are away on
        purpose (its ``/ready`` then rightly says 503).
        """
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log_start = self.log_path.stat().st_size if self.log_path.exists() else 0
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            uwsgi_command(),
            cwd=self.service_dir,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        if wait_ready:
            self.wait_ready(timeout, ready_path)
        return self

    def wait_ready(self, timeout: float = 30.0, path: str = "/ready") -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.process.returncode}:\n{self.log_tail()}")
            try:
                if requests.get(f"{self.url}{path}", timeout=1).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"{self.name} did not answer {path} with 200 within {timeout}s:\n{self.log_tail()}")

    def wait_workers_loaded(self, workers: int = 2, timeout: float = 30.0) -> None:
        """Until ``workers`` workers of this start have loaded the app (lazy-apps: each after its fork).

        uWSGI 2.0 loses the graceful-stop signal of a worker still loading its app, and that
        worker then lives until the mercy runs out; a test of the graceful stop waits for this
        first, since ``/ready`` answering proves only one worker.
        """
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.process.returncode}:\n{self.log_tail()}")
            with self.log_path.open("rb") as log:
                log.seek(self._log_start)
                if log.read().count(b"WSGI app 0 (mountpoint='') ready in") >= workers:
                    return
            time.sleep(0.05)
        raise RuntimeError(f"{self.name}: {workers} workers did not load the app within {timeout}s")

    def log_tail(self, chars: int = 4000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:] if self.log_path.exists() else ""

    def stop(self, timeout: float = 15.0) -> int | None:
        """SIGTERM (graceful: in-flight requests finish), then SIGKILL to the group after ``timeout``."""
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process else None
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            return self.process.returncode
        finally:
            self._kill_group()

    def kill(self) -> None:
        """SIGKILL the master and every worker at once: a crash, or the end of the grace time."""
        if self.process is None:
            return
        self._kill_group()
        self.process.wait()

    def _kill_group(self) -> None:
        if self.process is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.process.pid, signal.SIGKILL)

    def __enter__(self) -> UwsgiService:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
