"""Drive HTTP load at one URL on this machine and measure it.

``wrk`` is used when it is on ``PATH`` (a small Lua script sets the method, headers and
body and prints the exact latency percentiles as one JSON line); otherwise a Python
generator: a few processes, each running several threads, each thread one
``http.client.HTTPConnection``. Both give the same :class:`LoadResult`, and the result
names the generator that produced it.

Every run is bounded: ``connections`` clients for ``warmup + duration`` seconds, each
request with a timeout, and only loopback targets are accepted.

Run alone: ``python bench/load.py http://127.0.0.1:8099/ --duration 5``.
"""

from __future__ import annotations

import argparse
import http.client
import ipaddress
import json
import math
import multiprocessing as mp
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

__all__ = ["LoadResult", "Target", "choose_tool", "percentile", "run_load"]

REQUEST_TIMEOUT_S = 5.0
MAX_CONNECTIONS = 256
MAX_DURATION_S = 120.0


@dataclass(frozen=True)
class Target:
    """One request, sent over and over: ``url`` is absolute (``http://127.0.0.1:PORT/path``)."""

    url: str
    method: str = "GET"
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes | None = None

    def __post_init__(self) -> None:
        parts = urlsplit(self.url)
        if parts.scheme != "http":
            raise ValueError(f"only plain http targets are supported, got {self.url!r}")
        host = parts.hostname or ""
        try:
            loopback = ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = host == "localhost"
        if not loopback:
            raise ValueError(f"load is only ever sent to this machine (loopback), not to {host!r}")

    @property
    def host(self) -> str:
        return urlsplit(self.url).hostname or "127.0.0.1"

    @property
    def port(self) -> int:
        return urlsplit(self.url).port or 80

    @property
    def path(self) -> str:
        parts = urlsplit(self.url)
        return (parts.path or "/") + (f"?{parts.query}" if parts.query else "")


@dataclass
class LoadResult:
    tool: str
    url: str
    method: str
    connections: int
    duration_s: float
    warmup_s: float
    requests: int
    errors: int
    rps: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    mean_ms: float
    #: Status code (as text) or exception name -> count, for the measured window.
    outcomes: dict[str, int] = field(default_factory=dict)
    error_samples: list[str] = field(default_factory=list)
    #: TCP connections opened in the measured window (Python generator only; -1 if unknown).
    connects: int = -1
    notes: list[str] = field(default_factory=list)
    #: Microseconds of CPU per request, the machine's and by process (bench/cpu.py), over
    #: warm-up and window; filled in by run.py.
    cpu_us: dict[str, float] = field(default_factory=dict)
    #: What the external tool printed (wrk), for the JSON results.
    output: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in 0..100) of an already sorted list; 0.0 when empty."""
    if not sorted_values:
        return 0.0
    rank = max(1, math.ceil(q / 100.0 * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


def choose_tool(preference: str = "auto") -> str:
    """``wrk`` when asked for or found on PATH (for ``auto``), else ``python``."""
    if preference == "python":
        return "python"
    if preference == "wrk":
        if shutil.which("wrk") is None:
            raise RuntimeError("--tool wrk was asked for but wrk is not on PATH")
        return "wrk"
    return "wrk" if shutil.which("wrk") else "python"


def run_load(
    target: Target,
    *,
    connections: int = 32,
    duration: float = 10.0,
    warmup: float = 2.0,
    tool: str = "auto",
    processes: int | None = None,
) -> LoadResult:
    if not 1 <= connections <= MAX_CONNECTIONS:
        raise ValueError(f"connections must be 1..{MAX_CONNECTIONS}")
    if not 0 < duration <= MAX_DURATION_S or not 0 <= warmup <= MAX_DURATION_S:
        raise ValueError(f"duration must be in (0, {MAX_DURATION_S}] s and warmup in [0, {MAX_DURATION_S}] s")
    chosen = choose_tool(tool)
    if chosen == "wrk":
        return _run_wrk(target, connections, duration, warmup)
    return _run_python(target, connections, duration, warmup, processes)


# --- wrk -----------------------------------------------------------------------------------

_WRK_LUA = r"""
wrk.method = %(method)s
wrk.body = %(body)s
%(headers)s
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'AERIE_BENCH_JSON {"requests": %%d, "duration_us": %%d, "p50_us": %%d, "p99_us": %%d, ' ..
    '"max_us": %%d, "mean_us": %%f, "connect": %%d, "read": %%d, "write": %%d, "status": %%d, "timeout": %%d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    latency.max, latency.mean, e.connect, e.read, e.write, e.status, e.timeout))
end
"""


def _lua_string(value: str) -> str:
    return json.dumps(value)  # a JSON string literal with ASCII escapes is a valid Lua string literal


def _wrk_script(target: Target) -> str:
    headers = "\n".join(f"wrk.headers[{_lua_string(k)}] = {_lua_string(v)}" for k, v in target.headers.items())
    body = _lua_string(target.body.decode()) if target.body else "nil"
    return _WRK_LUA % {"method": _lua_string(target.method), "body": body, "headers": headers}


def _wrk(target: Target, script: Path, connections: int, seconds: float) -> str:
    threads = max(1, min(connections, os.cpu_count() or 1))
    cmd = [
        "wrk",
        f"-t{threads}",
        f"-c{connections}",
        f"-d{max(1, round(seconds))}s",
        "--latency",
        f"--timeout={int(REQUEST_TIMEOUT_S)}s",
        "-s",
        str(script),
        target.url,
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 30, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"wrk exited with {done.returncode}: {done.stderr.strip() or done.stdout.strip()}")
    return done.stdout


def _run_wrk(target: Target, connections: int, duration: float, warmup: float) -> LoadResult:
    with tempfile.TemporaryDirectory(prefix="aerie-bench-") as tmp:
        script = Path(tmp) / "request.lua"
        script.write_text(_wrk_script(target))
        if warmup > 0:
            _wrk(target, script, connections, warmup)
        output = _wrk(target, script, connections, duration)
    return parse_wrk_output(output, target, connections, duration, warmup)


def parse_wrk_output(output: str, target: Target, connections: int, duration: float, warmup: float) -> LoadResult:
    line = next((ln for ln in output.splitlines() if ln.startswith("AERIE_BENCH_JSON ")), None)
    if line is None:
        raise RuntimeError(f"wrk printed no result line:\n{output}")
    data = json.loads(line.split(" ", 1)[1])
    # wrk counts a non-2xx/3xx answer as a "status" error; socket errors are counted apart.
    socket_errors = {k: int(data[k]) for k in ("connect", "read", "write", "timeout") if data[k]}
    errors = int(data["status"]) + sum(socket_errors.values())
    measured_s = data["duration_us"] / 1e6 or duration
    outcomes: dict[str, int] = {"ok": int(data["requests"]) - int(data["status"])}
    if data["status"]:
        outcomes["non-2xx/3xx"] = int(data["status"])
    outcomes.update({f"socket {k}": v for k, v in socket_errors.items()})
    threads = next((ln.strip() for ln in output.splitlines() if "threads and" in ln), "")
    notes = [f"wrk ({threads}): percentiles from wrk's own latency histogram"]
    return LoadResult(
        tool="wrk",
        url=target.url,
        method=target.method,
        connections=connections,
        duration_s=round(measured_s, 3),
        warmup_s=warmup,
        requests=int(data["requests"]),
        errors=errors,
        rps=round(int(data["requests"]) / measured_s, 1),
        p50_ms=round(data["p50_us"] / 1000, 3),
        p99_ms=round(data["p99_us"] / 1000, 3),
        max_ms=round(data["max_us"] / 1000, 3),
        mean_ms=round(data["mean_us"] / 1000, 3),
        outcomes=outcomes,
        notes=notes,
        output="\n".join(ln for ln in output.splitlines() if not ln.startswith("AERIE_BENCH_JSON ")),
    )


# --- the Python generator --------------------------------------------------------------------


def _default_processes(connections: int) -> int:
    # One process per core keeps each process's GIL from becoming the bottleneck; a few
    # threads per process is what keeps connections busy while one waits on the socket.
    return max(1, min(connections, os.cpu_count() or 1, 8))


def _run_python(target: Target, connections: int, duration: float, warmup: float, processes: int | None) -> LoadResult:
    nproc = max(1, min(processes or _default_processes(connections), connections))
    shares = [connections // nproc + (1 if i < connections % nproc else 0) for i in range(nproc)]
    # spawn: the children start clean, whatever threads the caller (a local stack) runs.
    ctx = mp.get_context("spawn")
    ready = ctx.Queue()
    results = ctx.Queue()
    go = ctx.Event()
    start_at = ctx.Value("d", 0.0)
    workers = [
        ctx.Process(target=_worker, args=(target, n, warmup, duration, start_at, go, ready, results), daemon=True)
        for n in shares
    ]
    for w in workers:
        w.start()
    try:
        for _ in workers:
            ready.get(timeout=60)
        # CLOCK_MONOTONIC is the same clock in every process on this machine.
        start_at.value = time.monotonic() + 0.2
        go.set()
        parts = [results.get(timeout=warmup + duration + REQUEST_TIMEOUT_S + 60) for _ in workers]
    finally:
        for w in workers:
            w.join(timeout=REQUEST_TIMEOUT_S + 5)
            if w.is_alive():
                w.terminate()
    return _merge(parts, target, connections, duration, warmup, nproc)


def _worker(
    target: Target,
    threads: int,
    warmup: float,
    duration: float,
    start_at: Any,
    go: Any,
    ready: Any,
    results: Any,
) -> None:
    ready.put(os.getpid())
    go.wait(60)
    begin = start_at.value
    measure_from = begin + warmup
    stop_at = measure_from + duration
    per_thread: list[dict[str, Any]] = [{} for _ in range(threads)]
    pool = [
        threading.Thread(target=_client, args=(target, measure_from, stop_at, per_thread[i]), daemon=True)
        for i in range(threads)
    ]
    now = time.monotonic()
    if begin > now:
        time.sleep(begin - now)
    for t in pool:
        t.start()
    for t in pool:
        t.join(timeout=warmup + duration + REQUEST_TIMEOUT_S + 5)
    merged: dict[str, Any] = {"latencies": [], "outcomes": Counter(), "errors": 0, "samples": [], "connects": 0}
    for part in per_thread:
        merged["latencies"].extend(part.get("latencies", []))
        merged["outcomes"].update(part.get("outcomes", {}))
        merged["errors"] += part.get("errors", 0)
        merged["connects"] += part.get("connects", 0)
        merged["samples"].extend(part.get("samples", [])[:3])
    merged["outcomes"] = dict(merged["outcomes"])
    results.put(merged)


def _client(target: Target, measure_from: float, stop_at: float, out: dict[str, Any]) -> None:
    latencies: list[float] = []
    outcomes: Counter[str] = Counter()
    samples: list[str] = []
    errors = connects = 0
    headers = {"Host": f"{target.host}:{target.port}", **target.headers}
    if target.body is not None:
        headers.setdefault("Content-Length", str(len(target.body)))
    conn = http.client.HTTPConnection(target.host, target.port, timeout=REQUEST_TIMEOUT_S)
    clock = time.monotonic
    while True:
        started = clock()
        if started >= stop_at:
            break
        fresh = conn.sock is None
        try:
            conn.request(target.method, target.path, body=target.body, headers=headers)
            resp = conn.getresponse()
            resp.read()
            status = resp.status
            outcome = str(status)
            failed = not 200 <= status < 300
            if failed and len(samples) < 3:
                samples.append(f"HTTP {status} {resp.reason}")
        except (OSError, http.client.HTTPException) as exc:
            conn.close()  # the next request opens a new connection
            outcome = type(exc).__name__
            failed = True
            if len(samples) < 3:
                samples.append(f"{type(exc).__name__}: {exc}")
        finished = clock()
        if started >= measure_from and finished <= stop_at:
            latencies.append((finished - started) * 1000.0)
            outcomes[outcome] += 1
            connects += fresh
            errors += failed
    conn.close()
    out.update(latencies=latencies, outcomes=outcomes, errors=errors, samples=samples, connects=connects)


def _merge(
    parts: list[dict[str, Any]], target: Target, connections: int, duration: float, warmup: float, nproc: int
) -> LoadResult:
    latencies = sorted(x for p in parts for x in p["latencies"])
    outcomes: Counter[str] = Counter()
    for p in parts:
        outcomes.update(p["outcomes"])
    errors = sum(p["errors"] for p in parts)
    connects = sum(p["connects"] for p in parts)
    samples = [s for p in parts for s in p["samples"]][:5]
    n = len(latencies)
    notes = [
        f"python ({nproc} process(es) x ~{math.ceil(connections / nproc)} threads, http.client): "
        f"{connects} TCP connects for {n} requests; latency includes the generator's own scheduling"
    ]
    return LoadResult(
        tool="python",
        url=target.url,
        method=target.method,
        connections=connections,
        duration_s=duration,
        warmup_s=warmup,
        requests=n,
        errors=errors,
        rps=round(n / duration, 1),
        p50_ms=round(percentile(latencies, 50), 3),
        p99_ms=round(percentile(latencies, 99), 3),
        max_ms=round(latencies[-1], 3) if latencies else 0.0,
        mean_ms=round(sum(latencies) / n, 3) if n else 0.0,
        outcomes=dict(sorted(outcomes.items())),
        error_samples=samples,
        connects=connects,
        notes=notes,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url")
    parser.add_argument("--method", default="GET")
    parser.add_argument("-H", "--header", action="append", default=[], help="'Name: value', repeatable")
    parser.add_argument("--body", default=None)
    parser.add_argument("--connections", "-c", type=int, default=32)
    parser.add_argument("--duration", "-d", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--tool", choices=("auto", "wrk", "python"), default="auto")
    parser.add_argument("--processes", type=int, default=None, help="Python generator only")
    args = parser.parse_args(argv)
    headers = dict(h.split(":", 1) for h in args.header)
    target = Target(
        args.url,
        args.method.upper(),
        {k.strip(): v.strip() for k, v in headers.items()},
        args.body.encode() if args.body is not None else None,
    )
    result = run_load(
        target,
        connections=args.connections,
        duration=args.duration,
        warmup=args.warmup,
        tool=args.tool,
        processes=args.processes,
    )
    json.dump(result.as_dict(), sys.stdout, indent=2)
    print()
    return 0 if result.errors == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
