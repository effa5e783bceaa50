"""Calls from one Aerie service to another, over ``requests``.

Three things go wrong between services, and this module decides once how each is met:

* **A peer is away** (refused, timed out, answering 5xx). The calling service must then
  answer ``503`` with ``Retry-After``, never ``500``: the caller's request was fine, a
  dependency was not. Every such failure becomes :class:`PeerUnavailable`, which a
  service's error handling (``aerie.errors``) renders as the contract's ``unavailable``
  problem. Its detail names the peer and nothing else (no URL, host, or
  exception text). Responses below 500 are handed back untouched: a 404 or 409 from a
  peer means something to the caller, who decides.
* **A blip** (an instance being replaced, a connection refused for a moment). Requests are
  retried a few times with a short backoff, but only when that is safe: a failed *connect*
  is retried for any method, since nothing was sent; a ``502``/``503``/``504`` is retried only
  for idempotent methods, since a ``POST`` may already have had its effect. A *read
  timeout* is never retried: a peer that was too slow once will likely be slow again, and
  retrying would multiply the caller's wait past its own client's patience.
* **A peer is silent** (accepts connections, never answers). Each call then holds a worker
  thread until its read timeout, and a uWSGI worker has only a few. A client made with
  ``max_in_flight`` lets that many calls wait on the peer at once; a further call waits at
  most ``queue_timeout_s`` for its turn and then fails as :class:`PeerUnavailable`, so a
  silent peer costs a worker one thread, not all of them (the bulkhead pattern).
  :class:`ClientCredentials` does the same for callers waiting on another thread's token
  fetch.
* **Tokens.** Services call each other with OAuth client-credentials tokens from the
  tenants service. :class:`ClientCredentials` fetches one, caches it for its lifetime less
  a margin, and lets concurrent threads share a single fetch. A ``401`` from a peer
  (token expired early, signing key rotated) makes :class:`ServiceClient` drop the token
  and retry once with a fresh one.

Nothing here touches the network at import or construction time, and sessions are per
process: uWSGI forks workers after importing the app, and a pooled socket must never be
shared by two processes.
"""

from aerie_client.http.client_credentials import USABLE_MARGIN_S, ClientCredentials
from aerie_client.http.errors import DEFAULT_RETRY_AFTER_S, CredentialsRejected, PeerUnavailable
from aerie_client.http.retries import IDEMPOTENT_METHODS, MAX_PASSED_RETRY_AFTER_S, RETRY_STATUSES
from aerie_client.http.service_client import ServiceClient, TokenProvider

__all__ = [
    "DEFAULT_RETRY_AFTER_S",
    "IDEMPOTENT_METHODS",
    "MAX_PASSED_RETRY_AFTER_S",
    "RETRY_STATUSES",
    "USABLE_MARGIN_S",
    "ClientCredentials",
    "CredentialsRejected",
    "PeerUnavailable",
    "ServiceClient",
    "TokenProvider",
]
