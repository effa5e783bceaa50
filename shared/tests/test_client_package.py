"""``aerie-client`` runs in an application that has none of the services' libraries.

An application installs ``aerie-client`` to evaluate flags or call a service; if importing
it reached Falcon, Redis, uWSGI or the ``aerie`` service library, that application would
need them all. The imports run in a fresh interpreter whose import system refuses those
packages, so a stray import anywhere in the client fails here by name.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

SERVICE_ONLY = ("aerie", "falcon", "redis", "uwsgi", "uwsgidecorators", "cerberus", "jwt", "waitress")

PROBE = textwrap.dedent(
    """
    import importlib.abc, sys

    BLOCKED = set(sys.argv[1].split(","))

    class Refuse(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                raise ImportError(f"aerie-client imported {name}, a service-only package")
            return None

    sys.meta_path.insert(0, Refuse())
    for module in sys.argv[2].split(","):
        __import__(module)
    print("imported")
    """
)


@pytest.mark.parametrize(
    "modules",
    [
        "aerie_client.flags.client,aerie_client.flags.evaluation,aerie_client.flags.testing",
        "aerie_client.http,aerie_client.http.context",
        "aerie_client.flags.openfeature",
    ],
)
def test_client_imports_without_service_libraries(modules: str) -> None:
    result = subprocess.run(
        [sys.executable, "-I", "-c", PROBE, ",".join(SERVICE_ONLY), modules],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "imported"


def test_the_probe_refuses_a_service_library() -> None:
    result = subprocess.run(
        [sys.executable, "-I", "-c", PROBE, "falcon", "falcon"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "aerie-client imported falcon" in result.stderr
