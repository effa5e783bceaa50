"""Cerberus schemas of the tenants API's bodies and queries (also its OpenAPI source)."""

from __future__ import annotations

from typing import Any

from aerie.validation import LIST_QUERY, RFC3339
from tenants.domain import LANGUAGE_PATTERN, PLANS, SLUG_PATTERN, STATUSES, TENANT_SCOPES

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
    "status": {"type": "string", "allowed": ["active", "revoked"]},
    "created_at": {"type": "string", **RFC3339},
    "revoked_at": {"type": "string", **RFC3339},
}

CLIENT_CREATED: dict[str, Any] = {**CLIENT, "client_secret": {"type": "string"}}
