"""JSON log lines on stdout, one per event, as Cloud Foundry's log router expects.

Fields that could carry credentials are never logged: the access log records method,
path, status and identities, never headers, bodies or query strings.
"""

from __future__ import annotations

import logging
import sys

from pythonjsonlogger.json import JsonFormatter

__all__ = ["configure_logging"]


def configure_logging(service: str, instance_index: int, level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(
        JsonFormatter(
            "{levelname}{name}{message}",
            style="{",
            rename_fields={"levelname": "level", "name": "logger"},
            static_fields={"service": service, "instance": instance_index},
            timestamp="time",
            json_ensure_ascii=False,
        )
    )
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
