"""The instance's ``PROMETHEUS_MULTIPROC_DIR``, made by the uWSGI master before it forks.

Every service's ``uwsgi.ini`` shared-imports this module first, so the master sets the
variable before anything imports ``prometheus_client`` and every worker and mule it forks
writes its values beside the others (:mod:`aerie.metrics`). One directory per master:
``<tmp>/aerie-metrics-<pid>``, so several instances on one machine (the local stack, the
tests) never sum each other's; directories of masters that are gone are removed here.
A variable already set is the operator's and is left as it is.

The library is imported here too, once the variable is set: in the master, its pages are
shared by every process forked after (about 1.5 MiB PSS less per worker and mule).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path

from aerie.metrics import MULTIPROC_ENV

__all__ = ["prepare"]

PREFIX = "aerie-metrics-"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def prepare(root: Path | None = None) -> Path:
    """Set (or keep) the variable; the directory it names, created empty when made here."""
    configured = os.environ.get(MULTIPROC_ENV)
    if configured:
        return Path(configured)
    root = root or Path(tempfile.gettempdir())
    for stale in root.glob(PREFIX + "*"):
        pid = stale.name[len(PREFIX) :]
        if pid.isdigit() and pid.isascii() and not _alive(int(pid)):
            with contextlib.suppress(OSError):
                shutil.rmtree(stale)
    directory = root / f"{PREFIX}{os.getpid()}"
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(mode=0o700, parents=True)
    os.environ[MULTIPROC_ENV] = str(directory)
    return directory


prepare()

import prometheus_client.multiprocess  # noqa: E402, F401  (after prepare(): it reads the variable)
