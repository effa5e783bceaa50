"""The 503 a service answers when a peer is away, and the one that says its credentials were refused."""

from __future__ import annotations

from aerie.errors import Problem
from aerie.i18n import msg

__all__ = ["DEFAULT_RETRY_AFTER_S", "CredentialsRejected", "PeerUnavailable"]

#: The Retry-After this service tells its own caller, unless the peer asked for another.
DEFAULT_RETRY_AFTER_S = 1


class PeerUnavailable(Problem):
    """Another service could not be reached or failed: this service answers 503.

    The detail names the peer and no internals, because it ends up in the problem document
    that this service's caller sees. What went wrong in detail is logged (and kept as
    ``__cause__``) instead.
    """

    def __init__(self, peer: str, *, retry_after: int = DEFAULT_RETRY_AFTER_S, detail: str | None = None) -> None:
        super().__init__(
            503,
            "unavailable",
            detail or msg("The %(peer)s service is not answering; try again shortly.", peer=peer),
            headers={"Retry-After": str(retry_after)},
        )
        self.peer = peer
        self.retry_after = retry_after


class CredentialsRejected(PeerUnavailable):
    """The tenants service refused this service's client credentials (or its scope).

    This is a deployment error (wrong or revoked ``AERIE_CLIENT_SECRET``, a scope the client
    lacks), not the caller's fault, so it is still a 503 to the caller, to whom the service
    is simply unable to do its work right now. It is logged at ERROR with the OAuth error
    code, kept here as :attr:`oauth_error` so code and tests can tell it from an outage.
    """

    def __init__(self, peer: str, oauth_error: str, *, retry_after: int = DEFAULT_RETRY_AFTER_S) -> None:
        super().__init__(
            peer,
            retry_after=retry_after,
            detail=msg("This service could not authenticate to the %(peer)s service; try again later.", peer=peer),
        )
        self.oauth_error = oauth_error
