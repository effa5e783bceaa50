"""A synthetic monitor: the smoke journeys on a schedule, their last results as metrics.

Why it runs pytest rather than its own checks: the journeys that gate a deploy
(``pytest e2e -m smoke``) are the ones that say whether a customer can work, so the monitor
runs exactly those, in a subprocess with a timeout (a hung journey must not hang the
monitor), and reads pytest's JUnit XML report. An alert then fires when a journey breaks,
not when a customer calls.

``python -m aerie.synthetic`` serves ``/health`` on ``$PORT`` (Cloud Foundry's health check)
and ``/metrics`` the way the services do: without credentials on the internal port
``AERIE_METRICS_PORT`` (``cf register-metrics-endpoint ... --internal-port``), and on
``$PORT`` only with ``Authorization: Bearer $AERIE_METRICS_TOKEN`` (else 404).

Settings (environment): ``AERIE_SYNTHETIC_JOURNEYS`` (the journeys directory, default ``e2e``),
``AERIE_SYNTHETIC_INTERVAL`` (seconds between runs, default 300), ``AERIE_SYNTHETIC_TIMEOUT``
(seconds a run may take, default 240), ``AERIE_SYNTHETIC_MARK`` (default ``smoke``). The
journeys read their own ``AERIE_*`` variables (service URLs, bootstrap client), inherited,
with the settings of a bound secrets service (``aerie-secrets-monitor``, which ``make deploy``
creates: :func:`aerie.config.with_bound_secrets`) filling what the environment leaves unset,
so the bootstrap client's secret never is in the app's environment.
"""

from __future__ import annotations

import contextlib
import hmac
import logging
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from aerie.config import ConfigError, with_bound_secrets
from aerie.metrics import METRICS_PORT, METRICS_TOKEN

__all__ = ["JourneyResult", "Monitor", "main", "parse_junit"]

log = logging.getLogger("aerie.synthetic")

#: The name a whole run is reported under when it produced no report (timeout, crash).
RUN = "run"


@dataclass(frozen=True)
class JourneyResult:
    """One journey's outcome: ``ok`` is False for a failure, an error or a missing report."""

    journey: str
    ok: bool
    seconds: float
    message: str = ""


def parse_junit(xml_text: str) -> list[JourneyResult]:
    """The journeys in a pytest JUnit XML report; skipped ones are left out (they did not run)."""
    root = ET.fromstring(xml_text)  # noqa: S314 (see the import)
    results = []
    for case in root.iter("testcase"):
        if case.find("skipped") is not None:
            continue
        name = case.get("name", "?")
        classname = case.get("classname", "")
        journey = f"{classname.rsplit('.', 1)[-1]}::{name}" if classname else name
        problem = case.find("failure")
        if problem is None:
            problem = case.find("error")
        message = ""
        if problem is not None:
            lines = (problem.get("message") or problem.text or "").strip().splitlines()
            message = lines[0] if lines else problem.tag
        results.append(JourneyResult(journey, problem is None, float(case.get("time") or 0.0), message))
    return results


class Monitor:
    """Runs the journeys and keeps their last results in its own registry."""

    def __init__(
        self,
        journeys: Path,
        *,
        timeout: float,
        mark: str = "smoke",
        python: str = sys.executable,
        env: Mapping[str, str] | None = None,
    ) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge

        self.journeys = journeys
        #: The journeys' environment (None: this process's).
        self.env = env
        self.timeout = timeout
        self.mark = mark
        self.python = python
        self.registry = CollectorRegistry(auto_describe=True)
        self.up = Gauge(
            "aerie_synthetic_journey_up",
            "1 if the journey passed on its last run, 0 if it failed, errored or the run timed out",
            ["journey"],
            registry=self.registry,
        )
        self.duration = Gauge(
            "aerie_synthetic_journey_duration_seconds",
            "The journey's time on its last run",
            ["journey"],
            registry=self.registry,
        )
        self.last_run = Gauge(
            "aerie_synthetic_last_run_timestamp_seconds",
            "When the last run finished (Unix time): an alert on its age catches a monitor that stopped",
            registry=self.registry,
        )
        self.runs = Counter(
            "aerie_synthetic_runs", "Runs, by result: passed, failed, timeout", ["result"], registry=self.registry
        )
        self._known: set[str] = set()

    def command(self, report: Path) -> list[str]:
        return [
            self.python, "-m", "pytest", str(self.journeys), "-m", self.mark, "-q", "-p", "no:cacheprovider",
            f"--junitxml={report}",
        ]  # fmt: skip

    def run_once(self) -> list[JourneyResult]:
        """One run: its results, recorded; a run with no report marks every known journey down."""
        with tempfile.TemporaryDirectory(prefix="aerie-synthetic-") as tmp:
            report = Path(tmp) / "report.xml"
            outcome = "failed"
            try:
                output, returncode = self._pytest(report)
                try:
                    results = parse_junit(report.read_text()) if report.exists() else []
                except ET.ParseError:  # pytest killed mid-write: no result is a result, down
                    results = []
                if not results:
                    tail = output.decode(errors="replace").strip().splitlines()[-1:] or ["no output"]
                    results = [JourneyResult(RUN, False, 0.0, f"no journey reported (exit {returncode}): {tail[0]}")]
                elif all(r.ok for r in results):
                    outcome = "passed"
            except subprocess.TimeoutExpired:
                outcome = "timeout"
                message = f"run timed out after {self.timeout:g} s"
                results = [JourneyResult(j, False, self.timeout, message) for j in sorted(self._known)]
                results = results or [JourneyResult(RUN, False, self.timeout, message)]
        self.record(results, outcome)
        return results

    def _pytest(self, report: Path) -> tuple[bytes, int]:
        """pytest's output and exit status; on the timeout its whole process group is killed,
        so nothing a journey started outlives the run that started it."""
        proc = subprocess.Popen(
            self.command(report),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=None if self.env is None else dict(self.env),
        )
        try:
            output, _ = proc.communicate(timeout=self.timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            raise
        return output, proc.returncode

    def record(self, results: Sequence[JourneyResult], outcome: str) -> None:
        seen = {r.journey for r in results}
        # "run" is whether the run itself reported: down on a timeout or a crash of pytest.
        self.up.labels(RUN).set(0 if RUN in seen or outcome == "timeout" else 1)
        for result in results:
            self.up.labels(result.journey).set(1 if result.ok else 0)
            self.duration.labels(result.journey).set(result.seconds)
            if not result.ok:
                log.error("synthetic journey failed: %s: %s", result.journey, result.message)
        self._known |= seen - {RUN}
        self.runs.labels(outcome).inc()
        self.last_run.set(time.time())
        log.info("synthetic run %s: %d journeys, %d failed", outcome, len(results), sum(not r.ok for r in results))

    def exposition(self) -> bytes:
        from prometheus_client import generate_latest

        return generate_latest(self.registry)

    def loop(self, interval: float, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                self.run_once()
            except Exception:  # the monitor must keep monitoring
                log.exception("synthetic run crashed")
                self.runs.labels("crashed").inc()
            stop.wait(interval)


def _handler(monitor: Monitor, metrics_port: str | None, token: str | None) -> type[BaseHTTPRequestHandler]:
    secret = token.encode() if token else None

    class Handler(BaseHTTPRequestHandler):
        def _allowed(self) -> bool:
            if metrics_port is not None and str(self.server.server_address[1]) == metrics_port:
                return True
            if secret is None:
                return False
            scheme, _, given = (self.headers.get("Authorization") or "").partition(" ")
            return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), secret)

        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/health":
                self._send(200, b"ok\n", "text/plain")
            elif path == "/metrics" and self._allowed():
                from prometheus_client import CONTENT_TYPE_LATEST

                self._send(200, monitor.exposition(), CONTENT_TYPE_LATEST)
            else:
                self._send(404, b"not found\n", "text/plain")

        def _send(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # scrapes every few seconds would drown the journeys' lines

    return Handler


def main(argv: Sequence[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    try:
        env = with_bound_secrets(os.environ)
    except ConfigError as exc:
        log.error("synthetic monitor cannot start: %s", exc)
        raise SystemExit(1) from None
    journeys = Path(env.get("AERIE_SYNTHETIC_JOURNEYS") or "e2e")
    monitor = Monitor(
        journeys,
        timeout=float(env.get("AERIE_SYNTHETIC_TIMEOUT", "240")),
        mark=env.get("AERIE_SYNTHETIC_MARK", "smoke"),
        env=env,
    )
    bound = sorted(k for k in env if k not in os.environ)
    if bound:
        log.info("synthetic monitor: %s from the bound secrets service", ", ".join(bound))
    metrics_port = env.get(METRICS_PORT)
    handler = _handler(monitor, metrics_port, env.get(METRICS_TOKEN))
    servers = [ThreadingHTTPServer(("0.0.0.0", int(env.get("PORT", "8080"))), handler)]
    if metrics_port:
        servers.append(ThreadingHTTPServer(("0.0.0.0", int(metrics_port)), handler))
    for server in servers[1:]:
        threading.Thread(target=server.serve_forever, daemon=True).start()
    stop = threading.Event()
    threading.Thread(
        target=monitor.loop, args=(float(env.get("AERIE_SYNTHETIC_INTERVAL", "300")), stop), daemon=True
    ).start()
    log.info("synthetic monitor: journeys %s, serving on %s", journeys, [s.server_address[1] for s in servers])
    try:
        servers[0].serve_forever()
    finally:
        stop.set()


if __name__ == "__main__":
    main()
