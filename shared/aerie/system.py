"""The unauthenticated routes every service answers: /health, /ready, /info."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping

import falcon

from aerie.config import Settings
from aerie.endpoints import PUBLIC, endpoint

__all__ = ["HealthResource", "InfoResource", "NotReady", "ReadyCheck", "ReadyResource"]

log = logging.getLogger("aerie.ready")
#: A readiness check returns normally when its dependency answers and raises when not. A
#: ``str`` it returns is a note for ``details`` (ready, but something is worth knowing).
ReadyCheck = Callable[[], object]


class NotReady(Exception):
    """A check's failure whose reason may be shown in ``/ready``'s ``details``.

    Other exceptions are reported by type only: their text may hold a URL or a password.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class HealthResource:
    @endpoint("Process liveness", scopes=PUBLIC, response={"status": {"type": "string"}})
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = {"status": "ok"}


class ReadyResource:
    """200 when every dependency answers, else 503 naming what failed.

    A check's state is logged when it changes, not on every probe: Cloud Foundry probes
    every few seconds, and one line per probe would bury the one that says why.
    """

    def __init__(self, checks: Mapping[str, ReadyCheck]) -> None:
        self._checks = dict(checks)
        self._lock = threading.Lock()
        self._last: dict[str, str] = {}

    @endpoint(
        "Readiness: Redis and what the service needs",
        scopes=PUBLIC,
        response={"status": {"type": "string"}, "checks": {"type": "dict"}, "details": {"type": "dict"}},
        responses={503: "A dependency is not answering"},
    )
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        results: dict[str, str] = {}
        details: dict[str, str] = {}
        for name, check in self._checks.items():
            try:
                note = check()
                results[name] = "ok"
                if isinstance(note, str):
                    details[name] = note
                self._changed(name, "ok", None)
            except Exception as exc:
                results[name] = "unavailable"
                reason = exc.reason if isinstance(exc, NotReady) else None
                if reason is not None:
                    details[name] = reason
                self._changed(name, f"{type(exc).__name__}: {reason}", type(exc).__name__, reason)
        failed = sorted(n for n, r in results.items() if r != "ok")
        body: dict[str, object] = (
            {"status": "unavailable", "failed": failed, "checks": results}
            if failed
            else {"status": "ok", "checks": results}
        )
        if details:
            body["details"] = details
        if failed:
            resp.status = 503
            resp.set_header("Retry-After", "1")
        resp.media = body

    def _changed(self, name: str, state: str, error_type: str | None, reason: str | None = None) -> None:
        with self._lock:
            before = self._last.get(name)
            if before == state or (before is None and error_type is None):
                self._last[name] = state
                return
            self._last[name] = state
        if error_type is None:
            log.info("readiness check recovered", extra={"check": name})
        else:
            log.warning("readiness check failed", extra={"check": name, "error_type": error_type, "reason": reason})


class InfoResource:
    def __init__(self, settings: Settings) -> None:
        self._body = {
            "name": settings.service,
            "version": settings.version,
            "commit": settings.commit,
            "instance_index": settings.instance_index,
        }

    @endpoint(
        "Service name, version, commit and instance",
        scopes=PUBLIC,
        response={
            "name": {"type": "string"},
            "version": {"type": "string"},
            "commit": {"type": "string"},
            "instance_index": {"type": "integer"},
        },
    )
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = self._body
