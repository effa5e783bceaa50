"""The one lifecycle of the threads every worker process runs: the pub/sub subscriber,
stream consumers (the tenant-deletion cascade, audit's ingest), sweepers (retention).

Threads do not survive a fork. ``base.ini`` sets ``lazy-apps``, so each uWSGI worker builds
its app after it forked, and every service's ``get_app()`` starts them there, through
:func:`aerie.service.started`. The app factory also calls :meth:`Background.ensure_started`
on every request and every ``/ready`` probe, and it notices a fork by the pid, so a worker
never runs without its threads for longer than one request. Tests build apps without
starting anything and call ``Infrastructure.close()``.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from typing import Protocol

__all__ = ["Background", "Periodic", "Worker"]


class Worker(Protocol):
    """Anything with a background thread: started once per process, stopped on close."""

    def start(self) -> object: ...

    def stop(self) -> None: ...


class Background:
    """This process's workers, made by their factories in the process that runs them."""

    def __init__(self) -> None:
        self._factories: dict[str, Callable[[], Worker]] = {}
        self._lock = threading.Lock()
        #: name -> (pid that started it, worker); a worker of another pid died in the fork.
        self._running: dict[str, tuple[int, Worker]] = {}
        self._ready_pid: int | None = None

    def add(self, name: str, factory: Callable[[], Worker]) -> None:
        """Register a worker; it starts with the others on the next :meth:`ensure_started`."""
        with self._lock:
            self._factories[name] = factory
            self._ready_pid = None

    def __bool__(self) -> bool:
        return bool(self._factories)

    def worker(self, name: str) -> Worker | None:
        """This process's running worker of that name (tests and ready checks look inside)."""
        entry = self._running.get(name)
        return entry[1] if entry is not None and entry[0] == os.getpid() else None

    def ensure_started(self) -> bool:
        """Start every worker once in this process; cheap (a pid compare) after that."""
        pid = os.getpid()
        if self._ready_pid == pid:
            return True
        with self._lock:
            if self._ready_pid != pid:
                for name, factory in self._factories.items():
                    entry = self._running.get(name)
                    if entry is None or entry[0] != pid:
                        worker = factory()
                        worker.start()
                        self._running[name] = (pid, worker)
                self._ready_pid = pid
        return True

    def stop(self) -> None:
        pid = os.getpid()
        with self._lock:
            for owner, worker in self._running.values():
                if owner == pid:
                    worker.stop()
            self._running.clear()
            self._ready_pid = None


class Periodic:
    """A :class:`Worker` that calls :meth:`tick` every ``interval_s`` seconds until stopped.

    A failing tick is logged (a lost Redis as a warning, anything else with its traceback)
    and the next one comes on time: sweepers and flushers retry by simply running again.
    Subclasses give ``thread_name`` and ``tick``.
    """

    thread_name = "periodic"

    def __init__(self, interval_s: float, log: logging.Logger) -> None:
        self._interval_s = interval_s
        self._log = log
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def tick(self) -> object:
        raise NotImplementedError

    def run(self) -> None:
        from aerie.redis import REDIS_DOWN  # aerie.redis is heavier than this module needs at import

        while not self._stop.wait(self._interval_s):
            try:
                self.tick()
            except REDIS_DOWN as exc:
                self._log.warning(
                    f"{self.thread_name}: Redis lost; next run later", extra={"error_type": type(exc).__name__}
                )
            except Exception:
                self._log.exception(f"{self.thread_name} failed; next run later")

    def start(self) -> threading.Thread:
        self._stop.clear()
        self._thread = threading.Thread(target=self.run, name=self.thread_name, daemon=True)
        self._thread.start()
        return self._thread

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
