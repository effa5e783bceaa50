"""Which failed calls are tried again, how soon, and what Retry-After is passed on.

The rules are the package's (:mod:`aerie_client.http`): a failed connect is retried for any
method, a 502/503/504 only for an idempotent one, a read timeout never.
"""

from __future__ import annotations

from typing import Any, ClassVar

from urllib3.exceptions import InvalidHeader, ReadTimeoutError
from urllib3.util.retry import Retry

from aerie_client.http.errors import DEFAULT_RETRY_AFTER_S

__all__ = ["IDEMPOTENT_METHODS", "MAX_PASSED_RETRY_AFTER_S", "RETRY_STATUSES", "PeerRetry", "passed_retry_after"]

#: Methods that may be sent twice with the effect of once (RFC 9110 section 9.2.2).
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})
#: Statuses that mean "a proxy or the peer is momentarily unable", worth one more try.
RETRY_STATUSES = frozenset({502, 503, 504})
#: Upper bound on a Retry-After passed on from a peer to our caller.
MAX_PASSED_RETRY_AFTER_S = 30


class PeerRetry(Retry):
    """urllib3's ``Retry``, with the three refinements :mod:`aerie_client.http` argues for.

    * A read timeout is raised at once instead of retried (for every method).
    * Only ``503`` counts as "has a Retry-After worth waiting for"; urllib3 would also retry
      a ``413`` or ``429`` that carries one, and a rate limit is not a blip.
    * A Retry-After from the peer is obeyed but capped at :attr:`RETRY_AFTER_CAP` seconds,
      and a malformed one is ignored (urllib3 would raise): we are inside somebody else's
      request and cannot wait long.
    """

    RETRY_AFTER_STATUS_CODES: ClassVar[frozenset[int]] = frozenset({503})
    RETRY_AFTER_CAP: ClassVar[float] = 1.0

    def increment(self, method: str | None = None, url: str | None = None, *args: Any, **kwargs: Any) -> Retry:
        error = kwargs.get("error")
        if error is None and len(args) >= 2:
            error = args[1]
        if isinstance(error, ReadTimeoutError):
            raise error
        return super().increment(method, url, *args, **kwargs)

    def parse_retry_after(self, retry_after: str) -> float:
        try:
            seconds = super().parse_retry_after(retry_after)
        except InvalidHeader:
            return 0.0  # falls back to the exponential backoff
        return min(seconds, self.RETRY_AFTER_CAP)


def passed_retry_after(raw: str | None) -> int:
    """The peer's Retry-After in whole seconds, if plain and sane, else our default."""
    value = (raw or "").strip()
    # isascii: str.isdigit also takes "²", which int() refuses; nine digits keep int() quick.
    if value.isascii() and value.isdigit() and len(value) <= 9:
        return max(1, min(int(value), MAX_PASSED_RETRY_AFTER_S))
    return DEFAULT_RETRY_AFTER_S
