"""Errors to Sentry, when ``AERIE_SENTRY_DSN`` is set (in the environment or a bound secrets service).

What reaches Sentry is what the services already log at ERROR with its exception: an
unhandled request error (:func:`aerie.errors` logs it before answering 500), a background
worker's failure (consumers, sweepers, the subscriber log theirs), and any exception that
ends a thread. So the one hook is sentry-sdk's logging integration, plus its threading one;
no framework integration is needed, and no request or response body is ever attached.

Each event is tagged with the service, instance and version (its release), and with the
request id of the request it happened in, to find its log lines and access line. Before an
event leaves, every value under a key that names a credential, and every string that holds
a bearer token or a JWT, is replaced: tokens and secrets never leave the process.

sentry-sdk costs about 7 MiB a process, so it is imported only when a DSN is configured.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from typing import Any

from aerie.config import ConfigError, Settings
from aerie_client.http.context import current_request_id, current_vcap_request_id

__all__ = ["SENTRY_DSN", "SENTRY_ENVIRONMENT", "init_error_reporting", "scrubbed"]

SENTRY_DSN = "AERIE_SENTRY_DSN"
SENTRY_ENVIRONMENT = "AERIE_SENTRY_ENVIRONMENT"
SCRUBBED = "[scrubbed]"
#: Keys whose values are credentials, wherever they appear in an event.
_SECRET_KEY = re.compile(r"authorization|secret|token|password|passwd|signing|private|dsn|cookie|api[-_]?key", re.I)
#: A bearer credential or a JWT inside any string (a message, an exception's text).
_SECRET_TEXT = re.compile(
    r"(?i:bearer|basic)\s+[A-Za-z0-9._~+/=-]{8,}|eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*"
)

_initialised_for: tuple[str, str] | None = None


def init_error_reporting(settings: Settings) -> bool:
    """Send this process's errors to Sentry if a DSN is configured; whether it does."""
    global _initialised_for
    dsn = settings.extra.get(SENTRY_DSN)
    if not dsn:
        return False
    key = (dsn, settings.service)
    if _initialised_for == key:
        return True
    try:
        import sentry_sdk
        from sentry_sdk.integrations.logging import LoggingIntegration
        from sentry_sdk.integrations.threading import ThreadingIntegration
    except ImportError:  # pragma: no cover - a dependency of shared; guards a broken install
        raise ConfigError(f"{SENTRY_DSN} is set but sentry-sdk is not installed") from None
    try:
        sentry_sdk.init(
            dsn=dsn,
            release=settings.version,
            environment=settings.extra.get(SENTRY_ENVIRONMENT) or None,
            server_name=f"{settings.service}-{settings.instance_index}",
            default_integrations=False,
            # Nothing patched behind our back (its Falcon integration wraps falcon.App).
            auto_enabling_integrations=False,
            integrations=[
                LoggingIntegration(level=None, event_level=logging.ERROR),
                ThreadingIntegration(propagate_scope=False),
            ],
            send_default_pii=False,
            # Frames' local variables hold requests, tokens and secrets: none are sent.
            include_local_variables=False,
            traces_sample_rate=None,
            before_send=_before_send,
        )
    except Exception as exc:  # sentry-sdk refuses a malformed DSN with BadDsn
        raise ConfigError(f"{SENTRY_DSN} is not a Sentry DSN ({exc})") from None
    sentry_sdk.set_tag("service", settings.service)
    sentry_sdk.set_tag("instance", str(settings.instance_index))
    _initialised_for = key
    return True


def _before_send(event: dict[str, Any], hint: Mapping[str, Any]) -> dict[str, Any]:
    tags = event.setdefault("tags", {})
    request_id = current_request_id()
    if request_id:
        tags["request_id"] = request_id
    vcap = current_vcap_request_id()
    if vcap:
        tags["vcap_request_id"] = vcap
    return scrubbed(event)


def scrubbed(value: Any) -> Any:
    """``value`` with every credential replaced (see the module's docstring)."""
    if isinstance(value, dict):
        return {k: SCRUBBED if isinstance(k, str) and _SECRET_KEY.search(k) else scrubbed(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [scrubbed(v) for v in value]
    if isinstance(value, str):
        return _SECRET_TEXT.sub(SCRUBBED, value)
    return value
