"""How a call to an Aerie service fails when the service, not the request, is at fault."""

from __future__ import annotations

__all__ = ["DEFAULT_RETRY_AFTER_S", "CredentialsRejected", "PeerUnavailable"]

#: The Retry-After a service tells its own caller, unless the peer asked for another.
DEFAULT_RETRY_AFTER_S = 1


class PeerUnavailable(Exception):
    """An Aerie service could not be reached, failed, or was too slow to answer.

    Inside an Aerie service this becomes the contract's 503 ``unavailable`` problem with
    ``Retry-After`` (:func:`aerie.errors.install_error_handling`), whose detail names the
    peer and no internals; what went wrong in detail is logged and kept as ``__cause__``.
    ``slow`` tells a peer that accepted the call but answered too late (or a bulkhead whose
    queue was full) from one that is down.
    """

    def __init__(self, peer: str, *, retry_after: int = DEFAULT_RETRY_AFTER_S, slow: bool = False) -> None:
        what = "is slow to answer" if slow else "is not answering"
        super().__init__(f"the {peer} service {what}; try again in {retry_after}s")
        self.peer = peer
        self.retry_after = retry_after
        self.slow = slow


class CredentialsRejected(PeerUnavailable):
    """The tenants service refused this caller's client credentials (or its scope).

    A deployment error (a wrong or revoked secret, a scope the client lacks), not the end
    user's fault, so a service still answers its own caller 503. The OAuth error code is
    kept as :attr:`oauth_error` so code and tests can tell it from an outage.
    """

    def __init__(self, peer: str, oauth_error: str, *, retry_after: int = DEFAULT_RETRY_AFTER_S) -> None:
        super().__init__(peer, retry_after=retry_after)
        self.args = (f"the {peer} service refused this client's credentials ({oauth_error})",)
        self.oauth_error = oauth_error
