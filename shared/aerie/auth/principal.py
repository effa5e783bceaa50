"""Who is calling: the verified claims of an access token."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["PLATFORM_ADMIN", "PLATFORM_READ", "Principal"]

PLATFORM_ADMIN = "platform:admin"
PLATFORM_READ = "platform:read"


@dataclass(frozen=True, slots=True)
class Principal:
    """A verified token's caller: an API client, or a person an app acts for.

    A person's token (RFC 8693 token exchange) names the member in ``sub`` and the app in
    ``client_id`` and ``act``; it carries the member's ``role``, ``email``, ``language`` and
    the ``member_version`` it was minted at, so every service answers ``/v1/me`` and cuts
    the tokens of a removed or re-roled member without asking the tenants service.
    """

    subject: str
    client_id: str
    tenant_id: str | None
    scopes: frozenset[str]
    token_id: str
    expires_at: int
    kind: str = "client"
    role: str | None = None
    email: str | None = None
    language: str | None = None
    member_version: int | None = None

    @property
    def is_user(self) -> bool:
        return self.kind == "user"

    @property
    def is_platform(self) -> bool:
        """A platform token is bound to no tenant."""
        return self.tenant_id is None

    def has_scope(self, scope: str) -> bool:
        """``platform:admin`` grants every scope."""
        return scope in self.scopes or PLATFORM_ADMIN in self.scopes

    def has_any(self, scopes: tuple[str, ...]) -> bool:
        """Whether any of ``scopes`` is granted (checked per request: set operations, no loop)."""
        return bool(scopes) and (PLATFORM_ADMIN in self.scopes or not self.scopes.isdisjoint(scopes))

    def actor(self) -> dict[str, str | None]:
        """The ``actor`` of events and audit entries caused by this caller."""
        if self.is_user:
            return {"type": "user", "id": self.subject, "client_id": self.client_id}
        return {"type": "platform" if self.is_platform else "client", "id": self.subject, "client_id": self.client_id}
