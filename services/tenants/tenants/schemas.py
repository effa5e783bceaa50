"""Cerberus schemas of the tenants API's bodies and queries (also its OpenAPI source)."""

from __future__ import annotations

from typing import Any

from aerie.validation import LIST_QUERY, RFC3339
from tenants.domain import CLIENT_CREDENTIALS, GRANTS, LANGUAGE_PATTERN, PLANS, SLUG_PATTERN, STATUSES, TENANT_SCOPES
from tenants.roles import PLATFORM_ROLES, TENANT_ROLES

_name = {"type": "string", "empty": False, "maxlength": 200, "regex": r"^\S(.*\S)?$"}

TENANT_CREATE: dict[str, Any] = {
    "slug": {"type": "string", "required": True, "regex": SLUG_PATTERN},
    "name": {**_name, "required": True},
    "plan": {"type": "string", "allowed": list(PLANS), "default": "free"},
    "language": {"type": "string", "regex": LANGUAGE_PATTERN, "maxlength": 35, "default": "en"},
}

TENANT_PATCH: dict[str, Any] = {
    "name": _name,
    "plan": {"type": "string", "allowed": list(PLANS)},
    "language": {"type": "string", "regex": LANGUAGE_PATTERN, "maxlength": 35},
}

TENANT_LIST_QUERY: dict[str, Any] = {**LIST_QUERY, "status": {"type": "string", "allowed": list(STATUSES)}}

CLIENT_CREATE: dict[str, Any] = {
    "name": {**_name, "required": True},
    "scopes": {
        "type": "list",
        "required": True,
        "empty": False,
        "maxlength": len(TENANT_SCOPES),
        "schema": {"type": "string", "allowed": list(TENANT_SCOPES)},
    },
    "grants": {
        "type": "list",
        "empty": False,
        "maxlength": len(GRANTS),
        "default": [CLIENT_CREDENTIALS],
        "schema": {"type": "string", "allowed": list(GRANTS)},
        "meta": {"description": "token-exchange lets the client exchange its users' provider tokens (RFC 8693)"},
    },
}

TENANT: dict[str, Any] = {
    "id": {"type": "string"},
    "slug": {"type": "string"},
    "name": {"type": "string"},
    "plan": {"type": "string", "allowed": list(PLANS)},
    "status": {"type": "string", "allowed": list(STATUSES)},
    "language": {"type": "string"},
    "created_at": {"type": "string", **RFC3339},
    "updated_at": {"type": "string", **RFC3339},
    "version": {"type": "integer"},
}

CLIENT: dict[str, Any] = {
    "client_id": {"type": "string"},
    "tenant_id": {"type": "string"},
    "name": {"type": "string"},
    "scopes": {"type": "list", "schema": {"type": "string"}},
    "grants": {"type": "list", "schema": {"type": "string", "allowed": list(GRANTS)}},
    "status": {"type": "string", "allowed": ["active", "revoked"]},
    "created_at": {"type": "string", **RFC3339},
    "revoked_at": {"type": "string", **RFC3339},
}

CLIENT_CREATED: dict[str, Any] = {**CLIENT, "client_secret": {"type": "string"}}

#: An email address as people type them: one ``@``, a dotted domain, no spaces; at most 254
#: characters (RFC 5321's path limit). Stored lowercased.
EMAIL_PATTERN = r"^[^@\s]{1,64}@[^@\s.]+(\.[^@\s.]+)+$"


def _lowercase(value: Any) -> Any:
    return value.lower() if isinstance(value, str) else value


_email = {"type": "string", "maxlength": 254, "regex": EMAIL_PATTERN, "coerce": _lowercase}
_language = {"type": "string", "regex": LANGUAGE_PATTERN, "maxlength": 35, "nullable": True}


def member_create(platform: bool) -> dict[str, Any]:
    roles = PLATFORM_ROLES if platform else TENANT_ROLES
    return {
        "email": {**_email, "required": True},
        "role": {"type": "string", "required": True, "allowed": list(roles)},
        "language": {**_language, "default": None},
    }


def member_patch(platform: bool) -> dict[str, Any]:
    roles = PLATFORM_ROLES if platform else TENANT_ROLES
    return {"role": {"type": "string", "allowed": list(roles)}, "language": _language}


def member(platform: bool) -> dict[str, Any]:
    roles = PLATFORM_ROLES if platform else TENANT_ROLES
    return {
        "id": {"type": "string"},
        "tenant_id": {"type": "string", "nullable": True},
        "email": {"type": "string"},
        "role": {"type": "string", "allowed": list(roles)},
        "status": {"type": "string", "allowed": ["invited", "active"]},
        "language": {"type": "string", "nullable": True},
        "created_at": {"type": "string", **RFC3339},
        "updated_at": {"type": "string", **RFC3339},
        "version": {"type": "integer"},
    }
