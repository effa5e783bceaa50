"""Cerberus schemas of the audit API's bodies and queries (also its OpenAPI source)."""

from __future__ import annotations

from typing import Any

from aerie.validation import LIST_QUERY, RFC3339

TENANT_ID_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
#: Dotted lower-case words, two to five of them: ``invoice.paid``, ``flag.override.set``.
ACTION_PATTERN = r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*){1,4}$"
#: The same, or a prefix ending in ``.*`` (``project.*``) as a filter.
ACTION_FILTER_PATTERN = r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*){0,4}(\.\*)?$"
KIND_PATTERN = r"^[a-z][a-z0-9_-]{0,31}$"
ENTRY_ID_PATTERN = r"^[A-Za-z0-9._:-]{1,128}$"
REQUEST_ID_PATTERN = r"^[A-Za-z0-9._-]{1,128}$"

_tenant = {"type": "string", "regex": TENANT_ID_PATTERN}
_ref_id = {"type": "string", "empty": False, "maxlength": 200}
_time = {"type": "string", **RFC3339}

#: ``tenant_id`` picks another trail: platform:admin only (others get 403).
TRAIL_QUERY: dict[str, Any] = {"tenant_id": _tenant}

FILTERS: dict[str, Any] = {
    **TRAIL_QUERY,
    "action": {"type": "string", "maxlength": 100, "regex": ACTION_FILTER_PATTERN},
    "actor_id": _ref_id,
    "target_type": {"type": "string", "regex": KIND_PATTERN},
    "target_id": _ref_id,
    "since": _time,
    "until": _time,
}

LIST_EVENTS_QUERY: dict[str, Any] = {**LIST_QUERY, **FILTERS}

EXPORT_QUERY: dict[str, Any] = {
    **FILTERS,
    "format": {"type": "string", "allowed": ["ndjson", "csv"], "default": "ndjson"},
}

APPEND: dict[str, Any] = {
    # Not starting with evt_ (any case): checked by audit.append, with a message saying why.
    "id": {
        "type": "string",
        "required": True,
        "regex": ENTRY_ID_PATTERN,
        "meta": {"description": "Your own id for the entry; `evt_...` ids are the ingested events' (422)"},
    },
    "tenant_id": {**_tenant, "nullable": True},
    "action": {"type": "string", "required": True, "maxlength": 100, "regex": ACTION_PATTERN},
    "actor": {
        "type": "dict",
        "required": True,
        "schema": {
            "type": {"type": "string", "required": True, "regex": KIND_PATTERN},
            "id": {**_ref_id, "nullable": True, "default": None},
            "client_id": {**_ref_id, "nullable": True, "default": None},
        },
    },
    "target": {
        "type": "dict",
        "required": True,
        "schema": {
            "type": {"type": "string", "required": True, "regex": KIND_PATTERN},
            "id": {**_ref_id, "nullable": True, "default": None},
        },
    },
    "occurred_at": _time,
    # An address: checked by audit.append, as Cerberus has no rule for "IPv4 or IPv6".
    "ip": {"type": "string", "nullable": True, "maxlength": 64, "meta": {"description": "An IPv4 or IPv6 address"}},
    "user_agent": {"type": "string", "nullable": True, "maxlength": 512},
    "request_id": {"type": "string", "nullable": True, "regex": REQUEST_ID_PATTERN},
    "message": {"type": "string", "maxlength": 1000, "default": ""},
    "metadata": {"type": "dict", "default": {}, "allow_unknown": True},
}

ENTRY: dict[str, Any] = {
    "id": {"type": "string"},
    "seq": {"type": "integer"},
    "tenant_id": {"type": "string", "nullable": True},
    "occurred_at": {"type": "string", **RFC3339},
    "recorded_at": {"type": "string", **RFC3339},
    "action": {"type": "string"},
    "actor": {
        "type": "dict",
        "schema": {
            "type": {"type": "string"},
            "id": {"type": "string", "nullable": True},
            "client_id": {"type": "string", "nullable": True},
        },
    },
    "target": {"type": "dict", "schema": {"type": {"type": "string"}, "id": {"type": "string", "nullable": True}}},
    "ip": {"type": "string", "nullable": True},
    "user_agent": {"type": "string", "nullable": True},
    "request_id": {"type": "string", "nullable": True},
    "message": {"type": "string"},
    "metadata": {"type": "dict"},
    "source": {
        "type": "string",
        "allowed": ["event", "api"],
        "meta": {
            "description": "`event`: ingested from the event stream; `api`: appended with POST /v1/audit/events. "
            "Absent on entries recorded before entries named their source."
        },
    },
    "prev_hash": {"type": "string"},
    "hash": {"type": "string"},
}

_seq_hash = {"type": "dict", "schema": {"seq": {"type": "integer"}, "hash": {"type": "string"}}}

VERIFY_RESULT: dict[str, Any] = {
    "valid": {"type": "boolean"},
    "entries": {"type": "integer"},
    "head": _seq_hash,
    "first_invalid_seq": {"type": "integer", "nullable": True},
    "checkpoint": {**_seq_hash, "nullable": True},
    "reason": {"type": "string"},
}
