"""What can go wrong in a command, each as one line for stderr and an exit status.

Every failure a command expects (the API refusing, the network away, a missing setting)
is one of these, so :func:`aerie.cli.main.main` can print it as a single line and exit
non-zero instead of showing a traceback to someone who only asked to suspend a tenant.
"""

from __future__ import annotations

from typing import Any

__all__ = ["EXIT_FAILED", "EXIT_USAGE", "ApiError", "CliError", "ConfigError", "NetworkError"]

#: The API or the network failed.
EXIT_FAILED = 1
#: The command line or the configuration is wrong; argparse uses the same status.
EXIT_USAGE = 2


class CliError(Exception):
    """A failure the command reports as its message, and exits with ``exit_status``."""

    exit_status = EXIT_FAILED


class ConfigError(CliError):
    """A URL or credential the command needs is not configured anywhere."""

    exit_status = EXIT_USAGE


class NetworkError(CliError):
    """A service could not be reached, or stopped answering mid-way."""


class ApiError(CliError):
    """A service answered with an error: a problem document, an OAuth error, or anything else.

    The line carries the status, the contract's ``code``, the ``detail``, the field errors of
    a validation failure and the request id, which is what an operator needs to fix the
    call or to find the request in the service's logs.
    """

    def __init__(
        self,
        service: str,
        status: int,
        code: str | None,
        detail: str | None,
        *,
        errors: list[dict[str, Any]] | None = None,
        request_id: str | None = None,
    ) -> None:
        self.service = service
        self.status = status
        self.code = code
        self.detail = detail
        self.errors = errors or []
        self.request_id = request_id
        super().__init__(self._line())

    def _line(self) -> str:
        head = f"{self.service}: {self.status}"
        if self.code:
            head += f" {self.code}"
        parts = [head + (f": {self.detail}" if self.detail else "")]
        fields = [f"{e.get('field') or '(body)'}: {e.get('message')}" for e in self.errors if isinstance(e, dict)]
        if fields:
            parts.append("; ".join(fields))
        text = " - ".join(parts)
        return f"{text} (request id {self.request_id})" if self.request_id else text
