"""The synthetic monitor as its own process: it runs a journeys directory with pytest on a
schedule and a scrape of its /metrics says which journey is up, which is down, and why."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests

from aerie.local.redis_server import free_port

TOKEN = uuid.uuid4().hex

JOURNEYS = """
import os
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

PROBE = os.environ["AERIE_PROBE_URL"]


def _status(path):
    try:
        with urllib.request.urlopen(PROBE + path, timeout=5) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


@pytest.mark.smoke
def test_healthy_service():
    assert _status("/ok") == 200


@pytest.mark.smoke
def test_broken_service():
    status = _status("/broken")
    assert status == 200, f"probe answered {status}"


@pytest.mark.smoke
def test_sometimes_hangs():
    hang = Path(os.environ["AERIE_PROBE_HANG"])
    if hang.exists():
        child = subprocess.Popen(["sleep", "120"])
        hang.with_suffix(".pid").write_text(str(child.pid))
        time.sleep(120)


def test_not_a_smoke_journey():
    raise AssertionError("only the smoke journeys run")
"""


class Probe(BaseHTTPRequestHandler):
    """The 'deployment' the journeys call: /ok answers 200, anything else 503."""

    def do_GET(self) -> None:
        self.send_response(200 if self.path == "/ok" else 503)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def probe() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Probe)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


class MonitorProcess:
    def __init__(self, journeys: Path, probe: str, hang: Path, log: Path) -> None:
        self.port, self.metrics_port = free_port(), free_port()
        env = {
            **os.environ,
            "PORT": str(self.port),
            "AERIE_METRICS_PORT": str(self.metrics_port),
            "AERIE_METRICS_TOKEN": TOKEN,
            "AERIE_SYNTHETIC_JOURNEYS": str(journeys),
            "AERIE_SYNTHETIC_INTERVAL": "0.5",
            "AERIE_SYNTHETIC_TIMEOUT": "8",
            "AERIE_PROBE_URL": probe,
            "AERIE_PROBE_HANG": str(hang),
        }
        self.log = log
        self._out = log.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "aerie.synthetic"], env=env, stdout=self._out, stderr=subprocess.STDOUT
        )

    def metrics(self) -> requests.Response:
        """The internal port: no credentials, like Cloud Foundry's metric registrar."""
        return requests.get(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5)

    def wait_for(self, predicate: Callable[[str], bool], timeout: float = 60) -> str:
        deadline = time.monotonic() + timeout
        text = ""
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.log.read_text()
            try:
                text = self.metrics().text
            except requests.ConnectionError:
                text = ""
            if text and predicate(text):
                return text
            time.sleep(0.3)
        raise AssertionError(f"metrics never matched:\n{text}\nlog:\n{self.log.read_text()}")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)
        self._out.close()


def _value(text: str, name: str, journey: str | None = None) -> float | None:
    label = f'{{journey="{journey}"}}' if journey else ""
    match = re.search(rf"^{re.escape(name + label)} (\S+)$", text, re.M)
    return float(match.group(1)) if match else None


def _gone(pid: int, within: float = 5) -> bool:
    """Whether ``pid`` has exited (reaped, or a zombie waiting for its new parent)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except FileNotFoundError:
            return True
        if state == "Z":
            return True
        time.sleep(0.1)
    return False


HEALTHY = "test_journeys::test_healthy_service"
BROKEN = "test_journeys::test_broken_service"
HANGS = "test_journeys::test_sometimes_hangs"


@pytest.fixture(scope="module")
def monitor(probe: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[MonitorProcess]:
    root = tmp_path_factory.mktemp("synthetic")
    journeys = root / "journeys"
    journeys.mkdir()
    (journeys / "test_journeys.py").write_text(textwrap.dedent(JOURNEYS))
    process = MonitorProcess(journeys, probe, root / "hang", root / "monitor.log")
    yield process
    process.stop()


def test_passing_journey_is_up_and_failing_one_down_with_its_message_logged(monitor: MonitorProcess) -> None:
    text = monitor.wait_for(lambda t: _value(t, "aerie_synthetic_journey_up", BROKEN) is not None)
    assert _value(text, "aerie_synthetic_journey_up", HEALTHY) == 1
    assert _value(text, "aerie_synthetic_journey_up", BROKEN) == 0
    assert _value(text, "aerie_synthetic_journey_up", HANGS) == 1
    assert _value(text, "aerie_synthetic_journey_up", "run") == 1
    assert "test_not_a_smoke_journey" not in text
    assert (_value(text, "aerie_synthetic_last_run_timestamp_seconds") or 0) > time.time() - 60
    assert (_value(text, 'aerie_synthetic_runs_total{result="failed"}') or 0) >= 1
    failed = [line for line in monitor.log.read_text().splitlines() if "synthetic journey failed" in line]
    assert any(BROKEN in line and "probe answered 503" in line for line in failed), failed
    assert not any(HEALTHY in line for line in failed), failed


def test_metrics_need_the_internal_port_or_the_token(monitor: MonitorProcess) -> None:
    public = f"http://127.0.0.1:{monitor.port}"
    assert requests.get(f"{public}/health", timeout=5).status_code == 200
    assert requests.get(f"{public}/metrics", timeout=5).status_code == 404
    wrong = requests.get(f"{public}/metrics", headers={"Authorization": "Bearer nope"}, timeout=5)
    assert wrong.status_code == 404
    right = requests.get(f"{public}/metrics", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=5)
    assert right.status_code == 200
    assert "aerie_synthetic_journey_up" in right.text


def test_a_journey_hanging_past_the_timeout_is_reported_down(monitor: MonitorProcess) -> None:
    monitor.wait_for(lambda t: _value(t, "aerie_synthetic_journey_up", HANGS) == 1)
    flag = monitor.log.parent / "hang"
    flag.touch()
    try:
        text = monitor.wait_for(lambda t: _value(t, "aerie_synthetic_journey_up", HANGS) == 0, timeout=40)
        assert _value(text, "aerie_synthetic_journey_up", "run") == 0
        assert (_value(text, 'aerie_synthetic_runs_total{result="timeout"}') or 0) >= 1
        assert "run timed out after 8 s" in monitor.log.read_text()
        grandchild = int(flag.with_suffix(".pid").read_text())
        assert _gone(grandchild), "a process the hung journey started outlived the run"
    finally:
        flag.unlink()
    monitor.wait_for(lambda t: _value(t, "aerie_synthetic_journey_up", HANGS) == 1, timeout=40)
