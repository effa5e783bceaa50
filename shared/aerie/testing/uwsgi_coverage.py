"""Coverage from inside a uWSGI worker, for the service test tier.

:class:`aerie.testing.process.UwsgiService` adds ``--import aerie.testing.uwsgi_coverage``
to the command line when ``AERIE_SERVER_COVERAGE`` names a coverage config file. uWSGI
imports ``--import`` modules in each worker before it loads the app (``lazy-apps``), so
this module starts measuring before any service module is imported, and only in workers:
the master never runs application code.

Two things make uWSGI different from a plain Python process:

* Its request threads are started by C code, not :mod:`threading`, so the trace function
  coverage installs with :func:`threading.settrace` never reaches them (Python 3.11 traces
  per thread). The first request a thread serves installs it there, by wrapping
  :meth:`falcon.App.__call__`; this happens only when this module is imported, so
  production never runs the wrapper.
* A worker stopped gracefully runs ``uwsgi.atexit`` (documented for exactly this), which
  saves the data; the file name carries the pid (``parallel = true`` in the config), and
  the tox env combines the files into one report.
"""

from __future__ import annotations

import os
import sys
import threading
from typing import Any

import coverage
import falcon

__all__ = ["CONFIG_ENV", "start"]

#: The variable naming the coverage config file; unset means no measurement.
CONFIG_ENV = "AERIE_SERVER_COVERAGE"

_cov: coverage.Coverage | None = None


def start() -> coverage.Coverage | None:
    """Start measuring this process once, as the config in ``$AERIE_SERVER_COVERAGE`` says."""
    global _cov
    config = os.environ.get(CONFIG_ENV)
    if not config or _cov is not None:
        return _cov
    _cov = coverage.Coverage(config_file=config, data_suffix=True)
    _cov.start()
    _trace_every_request_thread()
    _save_when_the_worker_stops()
    return _cov


def _trace_every_request_thread() -> None:
    original = falcon.App.__call__

    def traced_call(self: falcon.App, env: dict[str, Any], start_response: Any) -> Any:
        hook = threading.gettrace()
        if hook is not None and sys.gettrace() is None:
            sys.settrace(hook)  # coverage's installer: starts a tracer for this thread
        return original(self, env, start_response)

    falcon.App.__call__ = traced_call  # type: ignore[method-assign]


def _save_when_the_worker_stops() -> None:
    try:
        import uwsgi  # type: ignore[import-not-found]  # only inside uWSGI
    except ImportError:
        return
    previous = getattr(uwsgi, "atexit", None)

    def save() -> None:
        if _cov is not None:
            _cov.stop()
            _cov.save()
        if callable(previous):
            previous()

    uwsgi.atexit = save


start()
