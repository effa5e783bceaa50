"""The unauthenticated routes every service answers: /health, /ready, /info."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping

import falcon

from aerie.config import Settings
from aerie.endpoints import PUBLIC, endpoint

__all__ = ["HealthResource", "InfoResource", "ReadyCheck", "ReadyResource"]

log = logging.getLogger("aerie.ready")
#: A readiness check returns normally when its dependency answers and raises when not.
ReadyCheck = Callable[[], object]


class HealthResource:
    @endpoint("Process liveness", scopes=PUBLIC, response={"status": {"type": "string"}})
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = {"status": "ok"}


class ReadyResource:
    """200 when every dependency answers, else 503 naming what failed."""

    def __init__(self, checks: Mapping[str, ReadyCheck]) -> None:
        self._checks = dict(checks)

    @endpoint(
        "Readiness: Redis and what the service needs",
        scopes=PUBLIC,
        response={"status": {"type": "string"}, "checks": {"type": "dict"}},
        responses={503: "A dependency is not answering"},
    )
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        results: dict[str, str] = {}
        for name, check in self._checks.items():
            try:
                check()
                results[name] = "ok"
            except Exception as exc:
                log.warning("readiness check failed", extra={"check": name, "error_type": type(exc).__name__})
                results[name] = "unavailable"
        failed = sorted(n for n, r in results.items() if r != "ok")
        if failed:
            resp.status = 503
            resp.set_header("Retry-After", "1")
            resp.media = {"status": "unavailable", "failed": failed, "checks": results}
        else:
            resp.media = {"status": "ok", "checks": results}


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
