"""Cerberus schemas of the projects API's bodies and queries (also its OpenAPI source)."""

from __future__ import annotations

from typing import Any

from aerie.validation import LIST_QUERY, RFC3339
from projects.domain import SLUG_PATTERN, STATUSES

_name = {"type": "string", "empty": False, "maxlength": 200, "regex": r"^\S(.*\S)?$"}
_slug = {"type": "string", "regex": SLUG_PATTERN}
_description = {"type": "string", "maxlength": 2000}
_status = {"type": "string", "allowed": list(STATUSES)}

PROJECT_CREATE: dict[str, Any] = {
    "name": {**_name, "required": True},
    "slug": _slug,
    "description": {**_description, "default": ""},
}

PROJECT_PATCH: dict[str, Any] = {
    "name": _name,
    "slug": _slug,
    "description": _description,
    "status": _status,
}

#: A batch applies one set of changes to many projects, so a slug (unique per tenant) is
#: not among them: it could only ever succeed for one project of the batch.
BATCH_CHANGES: dict[str, Any] = {k: v for k, v in PROJECT_PATCH.items() if k != "slug"}

MAX_BATCH = 100

BATCH_UPDATE: dict[str, Any] = {
    "ids": {
        "type": "list",
        "required": True,
        "empty": False,
        "maxlength": MAX_BATCH,
        "schema": {"type": "string", "empty": False, "maxlength": 64},
    },
    "changes": {"type": "dict", "required": True, "empty": False, "schema": BATCH_CHANGES},
}

PROJECT_LIST_QUERY: dict[str, Any] = {**LIST_QUERY, "status": _status}

PROJECT: dict[str, Any] = {
    "id": {"type": "string"},
    "tenant_id": {"type": "string"},
    "slug": {"type": "string"},
    "name": {"type": "string"},
    "description": {"type": "string"},
    "status": {"type": "string", "allowed": list(STATUSES)},
    "created_at": {"type": "string", **RFC3339},
    "updated_at": {"type": "string", **RFC3339},
    "version": {"type": "integer"},
}

BATCH_RESULT: dict[str, Any] = {
    "updated": {"type": "list", "schema": {"type": "string"}},
    "not_found": {"type": "list", "schema": {"type": "string"}},
}
