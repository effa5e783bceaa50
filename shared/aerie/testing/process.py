"""A service as a real uWSGI process, the way Cloud Foundry runs it, for service tests.

It starts ``uwsgi --ini uwsgi.ini`` in the service's folder (the same ini its manifest
uses) with a CF-like environment, waits for ``/ready``, and stops with SIGTERM, which the
production ini turns into a graceful shutdown.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

import requests

__all__ = ["UwsgiService", "uwsgi_binary"]


def uwsgi_binary() -> str:
    candidate = Path(sys.executable).parent / "uwsgi"
    return str(candidate) if candidate.exists() else "uwsgi"


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

    def start(self, timeout: float = 30.0, *, wait_ready: bool = True) -> UwsgiService:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [uwsgi_binary(), "--ini", "uwsgi.ini"],
            cwd=self.service_dir,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        if wait_ready:
            self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.process.returncode}:\n{self.log_tail()}")
            try:
                if requests.get(f"{self.url}/ready", timeout=1).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"{self.name} was not ready within {timeout}s:\n{self.log_tail()}")

    def log_tail(self, chars: int = 4000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:] if self.log_path.exists() else ""

    def stop(self, timeout: float = 15.0) -> int | None:
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process else None
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()

    def __enter__(self) -> UwsgiService:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
