"""Authentication (JWT verification) and authorization (scopes, tenant binding)."""

from aerie.auth.principal import Principal

__all__ = ["Principal"]
