"""CPU time per request, by process, read from ``/proc`` around a load window (Linux only).

Requests per second move with whatever else the machine's host is running (hello-world
ranged from 11k to 19k req/s between runs here); the CPU a request costs moves much less.
So beside each ratio the benchmark says where a request's CPU went: the service's uWSGI
processes, Redis, the load generator, and the machine as a whole.

Processes are grouped by name; a uWSGI process (master, worker or mule) by the folder it
runs in as well (``uwsgi:projects``, ``uwsgi:hello``), so two services never mix.
"""

from __future__ import annotations

import os
from collections import defaultdict
from pathlib import Path

__all__ = ["SERVER", "CpuSnapshot", "descendants", "per_request", "snapshot"]

#: The figure of every server process together: each uWSGI group (a service and all it calls,
#: or hello-world) and Redis, but not the load generator or the kernel's threads.
SERVER = "server"
_SERVER_GROUPS = ("uwsgi", "redis-server")

_PROC = Path("/proc")
_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100

#: Kernel workers rename themselves as they go (``kworker/0:2-events``); one group for all.
_KERNEL_THREADS = ("kworker", "ksoftirqd", "rcu_", "migration")

#: pid -> (group, CPU seconds so far); and the whole machine's busy seconds under ``"*"``.
CpuSnapshot = dict[str, tuple[str, float]]


def _group(pid: str, comm: str) -> str:
    if comm.startswith(_KERNEL_THREADS):
        return "kernel threads"
    if not comm.startswith("uwsgi"):
        try:
            argv0 = (_PROC / pid / "cmdline").read_bytes().split(b"\0", 1)[0]
        except OSError:
            return comm
        if b"uwsgi" not in argv0:
            return comm
    try:
        return f"uwsgi:{os.path.basename(os.readlink(_PROC / pid / 'cwd'))}"
    except OSError:
        return "uwsgi"


def snapshot() -> CpuSnapshot:
    """Every process's CPU seconds so far, and the machine's; empty where /proc is missing."""
    out: CpuSnapshot = {}
    if not _PROC.is_dir():
        return out
    for entry in _PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        comm = stat[stat.index("(") + 1 : stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2 :].split()
        out[entry.name] = (_group(entry.name, comm), (int(fields[11]) + int(fields[12])) / _TICKS)
    with (_PROC / "stat").open() as f:
        values = [int(v) for v in f.readline().split()[1:]]
    out["*"] = ("machine", (sum(values) - values[3] - values[4]) / _TICKS)  # all but idle and iowait
    return out


def descendants(root: int) -> set[str]:
    """The pids below ``root`` (children, theirs, ...): the processes a run started itself.

    Another stack on the same machine (a test run beside the benchmark) runs uWSGI groups of
    the same names; counting only these keeps its CPU out of the :data:`SERVER` figure.
    """
    parents: dict[str, str] = {}
    if not _PROC.is_dir():
        return set()
    for entry in _PROC.iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parents[entry.name] = stat[stat.rindex(")") + 2 :].split()[1]
    below: set[str] = set()
    frontier = {str(root)}
    while frontier:
        frontier = {pid for pid, parent in parents.items() if parent in frontier and pid not in below}
        below |= frontier
    return below


def per_request(
    before: CpuSnapshot, after: CpuSnapshot, requests: float, top: int = 4, servers: set[str] | None = None
) -> dict[str, float]:
    """Microseconds of CPU per request: the machine's, the servers' (:data:`SERVER`), then the
    ``top`` busiest groups.

    A process born during the window counts from zero; one that ended in it is lost (its
    time cannot be read any more), which only ever makes a figure lower. ``servers``, when
    given, are the only pids the :data:`SERVER` figure counts (:func:`descendants`).
    """
    if requests <= 0 or "*" not in before or "*" not in after:
        return {}
    spent: dict[str, float] = defaultdict(float)
    server = 0.0
    for pid, (group, seconds) in after.items():
        if pid == "*":
            continue
        earlier = before.get(pid)
        used = seconds - (earlier[1] if earlier and earlier[0] == group else 0.0)
        spent[group] += used
        if group.startswith(_SERVER_GROUPS) and (servers is None or pid in servers):
            server += used
    busiest = sorted(((g, s) for g, s in spent.items() if s > 0), key=lambda gs: -gs[1])[:top]
    machine = after["*"][1] - before["*"][1]
    return {"machine": round(machine / requests * 1e6, 1), SERVER: round(server / requests * 1e6, 1)} | {
        g: round(s / requests * 1e6, 1) for g, s in busiest
    }
