"""The stack's child processes: started apart from the terminal, watched, and stopped gracefully.

Each service runs ``uwsgi --ini uwsgi.ini`` in its own session, as its manifest runs it,
with its output in a log file (and, verbose, on the console prefixed with its name).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from aerie.local.discovery import HOST
from aerie.local.errors import StackError

__all__ = [
    "ServiceProcess",
    "answers_ready",
    "log_tail",
    "reap",
    "sigint_blocked",
    "spawn",
    "terminate",
    "uwsgi_binary",
    "wait_ready",
]


@dataclass
class ServiceProcess:
    """One service's uWSGI master and where its output goes."""

    name: str
    port: int
    directory: Path
    log_path: Path
    process: subprocess.Popen[bytes] | None = None
    log_file: IO[bytes] | None = None
    pump: threading.Thread | None = None
    stopping: bool = field(default=False)

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"


@contextlib.contextmanager
def sigint_blocked() -> Iterator[None]:
    """Start children with SIGINT blocked, so a Ctrl-C in the terminal reaches only the stack.

    A blocked signal mask survives fork and exec, and redis-server does not unblock SIGINT:
    Redis then stops when the stack tells it to, after the services, instead of with them.
    """
    if not hasattr(signal, "pthread_sigmask"):
        yield
        return
    old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def uwsgi_binary() -> str:
    """uWSGI from the running interpreter's venv (pyuwsgi installs it there), else from PATH."""
    beside = Path(sys.executable).parent / "uwsgi"
    if beside.exists():
        return str(beside)
    found = shutil.which("uwsgi")
    if not found:
        raise StackError("no uwsgi executable beside the Python interpreter nor on PATH: pip install 'pyuwsgi>=2.0.29'")
    return found


def spawn(
    svc: ServiceProcess,
    uwsgi: str,
    env: Mapping[str, str],
    *,
    verbose: bool,
    echo: Callable[[str], None],
) -> ServiceProcess:
    """Start ``svc``'s uWSGI; the previous run's log is kept beside the new one for a post-mortem."""
    if svc.log_path.exists():
        svc.log_path.replace(svc.log_path.with_name(f"{svc.name}.log.1"))
    svc.log_file = open(svc.log_path, "ab")  # noqa: SIM115 - closed in reap
    # A session of its own: Ctrl-C (SIGINT) makes uWSGI drop everything at once, so only
    # the stack gets it and sends the graceful SIGTERM itself.
    svc.process = subprocess.Popen(
        [uwsgi, "--ini", "uwsgi.ini"],
        cwd=svc.directory,
        env=dict(env),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE if verbose else svc.log_file,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    if verbose:
        svc.pump = threading.Thread(target=_pump, args=(svc,), name=f"log-{svc.name}", daemon=True)
        svc.pump.start()
    echo(f"{svc.name:<9} {svc.url} (pid {svc.process.pid}, log {svc.log_path})")
    return svc


def _pump(svc: ServiceProcess) -> None:
    """Copy a service's output to its log and, prefixed with its name, to the console."""
    assert svc.process is not None and svc.process.stdout is not None and svc.log_file is not None
    prefix = f"{svc.name:<9}| ".encode()
    for line in iter(svc.process.stdout.readline, b""):
        svc.log_file.write(line)
        svc.log_file.flush()
        with contextlib.suppress(ValueError, OSError):
            sys.stdout.buffer.write(prefix + line)
            sys.stdout.flush()


def answers_ready(base_url: str) -> bool:
    try:
        with urllib.request.urlopen(base_url + "/ready", timeout=2) as resp:  # noqa: S310 - our own http URL
            return resp.status == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False


def wait_ready(services: Sequence[ServiceProcess], timeout: float, tail: Callable[[str], str]) -> None:
    """Return once every service answers ``GET /ready`` with 200; raise with ``tail(name)`` if one cannot."""
    deadline = time.monotonic() + timeout
    pending = list(services)
    while pending:
        for svc in list(pending):
            assert svc.process is not None
            if svc.process.poll() is not None:
                raise StackError(
                    f"{svc.name} exited with status {svc.process.returncode} while starting.\n{tail(svc.name)}"
                )
            if answers_ready(svc.url):
                pending.remove(svc)
        if pending and time.monotonic() > deadline:
            svc = pending[0]
            raise StackError(f"{svc.name} did not answer GET /ready with 200 within {timeout:.0f}s.\n{tail(svc.name)}")
        if pending:
            time.sleep(0.2)


def log_tail(path: Path, lines: int = 40) -> str:
    if not path.exists():
        return f"(no log at {path})"
    tail = path.read_text(errors="replace").splitlines()[-lines:]
    return f"--- last {len(tail)} lines of {path} ---\n" + "\n".join(tail)


def terminate(svc: ServiceProcess) -> None:
    """SIGTERM: uWSGI finishes its in-flight requests, then exits."""
    svc.stopping = True
    if svc.process is not None and svc.process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            svc.process.terminate()


def reap(svc: ServiceProcess, deadline: float, grace: float, echo: Callable[[str], None]) -> None:
    """Wait for ``svc`` until ``deadline`` (``time.monotonic()``), SIGKILL its group after; close its log."""
    if svc.process is not None:
        try:
            svc.process.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            echo(f"{svc.name} did not stop within {grace:.0f}s; killing it")
            with contextlib.suppress(ProcessLookupError):
                os.killpg(svc.process.pid, signal.SIGKILL)  # the master and its workers
            svc.process.wait()
        else:
            echo(f"{svc.name} stopped (status {svc.process.returncode})")
            if svc.process.returncode < 0:  # the master was killed: leave no orphaned worker
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(svc.process.pid, signal.SIGKILL)
    if svc.pump is not None:
        svc.pump.join(timeout=2)
    if svc.process is not None and svc.process.stdout is not None:
        svc.process.stdout.close()
    if svc.log_file is not None:
        svc.log_file.close()
