"""What every service's ``app.py`` shares: the process it is built in, and its start.

Each service has the same shape (README, "Layout"): ``build(settings, config, *, infra,
tenants, process)`` returns a ``<Svc>Service`` holding the app and its infrastructure;
``create_app`` is ``build(...).app``; ``get_app()`` reads the environment and calls
:func:`started`, which starts the background work in the worker uWSGI forked (lazy-apps,
``shared/uwsgi/base.ini``), so nothing runs or connects at import time.
"""

from __future__ import annotations

from dataclasses import dataclass

import falcon

from aerie.app import Infrastructure
from aerie.sse import uwsgi_harakiri, uwsgi_threads
from aerie.stream_server import STREAM_THREADS, socket_path

__all__ = ["Process", "Service", "started"]


@dataclass(frozen=True)
class Process:
    """The process a service is built in; all None outside uWSGI (tests).

    ``threads`` caps open streams and sizes the Redis pool, ``harakiri`` bounds a stream's
    life in a worker, and ``streams_socket`` is where the instance's stream mule listens
    (``aerie.stream_server``), which ``/ready`` then checks.
    """

    threads: int | None = None
    harakiri: int | None = None
    streams_socket: str | None = None

    @classmethod
    def uwsgi_worker(cls) -> Process:
        return cls(threads=uwsgi_threads(), harakiri=uwsgi_harakiri(), streams_socket=socket_path())

    @classmethod
    def stream_mule(cls, threads: int = STREAM_THREADS) -> Process:
        """A mule has no harakiri, and is itself what serves the streams socket."""
        return cls(threads=threads)


@dataclass
class Service:
    """The app and what runs beside it, so tests (and wsgi) can start and stop it.

    Each service's ``<Svc>Service`` adds what its tests look into (its config, its tenant
    directory, ...).
    """

    app: falcon.App
    infra: Infrastructure

    def close(self) -> None:
        self.infra.close()


def started(service: Service) -> falcon.App:
    """The app, with this worker's background work running (the one place it starts)."""
    service.infra.background.ensure_started()
    return service.app
