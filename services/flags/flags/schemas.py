"""Cerberus schemas of the flags API's bodies and queries (also its OpenAPI source).

They check shape only; :mod:`flags.domain` checks what spans several fields.
"""

from __future__ import annotations

from typing import Any

import orjson

from aerie import errors
from aerie.validation import LIST_QUERY, RFC3339
from aerie_client.flags.operators import OPERATORS
from flags.domain import ALLOW_OVERRIDES, ATTRIBUTE_PATTERN, STICKINESS_VALUES, VARIANT_PATTERN

#: What a flag may serve: any JSON value but null (null is "no answer" to most clients).
VALUE: dict[str, Any] = {"type": ["boolean", "number", "string", "dict", "list"]}
_SCALAR: dict[str, Any] = {"type": ["boolean", "number", "string"]}

CONDITION: dict[str, Any] = {
    "attribute": {"type": "string", "required": True, "regex": ATTRIBUTE_PATTERN},
    "op": {"type": "string", "required": True, "allowed": sorted(OPERATORS)},
    "values": {"type": "list", "maxlength": 1000, "schema": {**_SCALAR, "maxlength": 1000}},
}

RULE: dict[str, Any] = {
    "conditions": {
        "type": "list",
        "required": True,
        "maxlength": 20,
        "schema": {"type": "dict", "schema": CONDITION},
    },
    "serve": {**VALUE, "required": True},
}

VARIANT: dict[str, Any] = {
    "name": {"type": "string", "required": True, "regex": VARIANT_PATTERN},
    "weight": {"type": "integer", "required": True, "min": 0, "max": 100},
}

ROLLOUT: dict[str, Any] = {
    "percentage": {"type": "number", "required": True, "min": 0, "max": 100},
    "stickiness": {"type": "string", "allowed": list(STICKINESS_VALUES), "default": "user_id"},
}

#: ``PUT /v1/flags/{key}``. ``key``, ``version`` and the timestamps may be sent back as GET
#: returned them: ``key`` must match the path, ``version`` acts as If-Match, timestamps are ignored.
FLAG_PUT: dict[str, Any] = {
    "key": {"type": "string"},
    "description": {"type": "string", "maxlength": 2000, "default": ""},
    "enabled": {"type": "boolean", "default": True},
    "default": {**VALUE, "required": True},
    "off": {
        **VALUE,
        "meta": {"description": "Served while `enabled` is false; absent: false for a boolean flag, else `default`"},
    },
    "variants": {"type": "list", "maxlength": 50, "default": [], "schema": {"type": "dict", "schema": VARIANT}},
    "rules": {"type": "list", "maxlength": 100, "default": [], "schema": {"type": "dict", "schema": RULE}},
    "rollout": {"type": "dict", "nullable": True, "default": None, "schema": ROLLOUT},
    "allow_overrides": {"type": "string", "allowed": list(ALLOW_OVERRIDES), "default": "none"},
    "version": {"type": "integer", "min": 1},
    "created_at": {"type": "string", **RFC3339},
    "updated_at": {"type": "string", **RFC3339},
    "last_evaluated_at": {"type": "string", "nullable": True, **RFC3339},
}

FLAG: dict[str, Any] = {
    "key": {"type": "string"},
    "description": {"type": "string"},
    "enabled": {"type": "boolean"},
    "default": VALUE,
    "off": VALUE,
    "variants": {"type": "list", "schema": {"type": "dict", "schema": VARIANT}},
    "rules": {"type": "list", "schema": {"type": "dict", "schema": RULE}},
    "rollout": {"type": "dict", "nullable": True, "schema": ROLLOUT},
    "allow_overrides": {"type": "string", "allowed": list(ALLOW_OVERRIDES)},
    "version": {"type": "integer"},
    "created_at": {"type": "string", **RFC3339},
    "updated_at": {"type": "string", **RFC3339},
    "last_evaluated_at": {
        "type": "string",
        "nullable": True,
        **RFC3339,
        "meta": {"description": "When this service last evaluated the flag, within a minute; null: never"},
    },
}

FLAG_LIST_QUERY: dict[str, Any] = {
    **LIST_QUERY,
    "unused_since": {
        "type": "string",
        **RFC3339,
        "meta": {"description": "Only flags not evaluated since this time (RFC 3339), never-evaluated ones included"},
    },
}


def _change(name: str) -> dict[str, Any]:
    """A definition field as a scheduled change sends it: its shape, without PUT's defaults."""
    return {rule: value for rule, value in FLAG_PUT[name].items() if rule not in ("default", "required")}


#: ``POST /v1/flags/{key}/schedule``.
SCHEDULE_POST: dict[str, Any] = {
    "at": {
        "type": "string",
        "required": True,
        **RFC3339,
        "meta": {"description": "RFC 3339 with a time zone, in the future, at most 366 days ahead"},
    },
    "changes": {
        "type": "dict",
        "required": True,
        "minlength": 1,
        "schema": {name: _change(name) for name in ("enabled", "rollout", "rules", "default", "variants")},
        "meta": {"description": "Any of `enabled`, `rollout`, `rules`, `default`, `variants`, as in a PUT"},
    },
}

_ACTOR: dict[str, Any] = {
    "type": "dict",
    "nullable": True,
    "schema": {
        "type": {"type": "string"},
        "id": {"type": "string", "nullable": True},
        "client_id": {"type": "string", "nullable": True},
    },
}

SCHEDULE: dict[str, Any] = {
    "id": {"type": "string"},
    "key": {"type": "string"},
    "at": {"type": "string", **RFC3339},
    "changes": {"type": "dict"},
    "status": {"type": "string", "allowed": ["pending", "applied", "failed"]},
    "created_at": {"type": "string", **RFC3339},
    "created_by": _ACTOR,
    "applied_at": {"type": "string", **RFC3339, "meta": {"description": "When applied"}},
    "version": {"type": "integer", "meta": {"description": "The flag version the change made"}},
    "failed_at": {"type": "string", **RFC3339, "meta": {"description": "When it could not be applied"}},
    "errors": {
        "type": "list",
        "meta": {"description": "Why it could not be applied: `{field, message}`, as a 422 lists them"},
    },
}

SCHEDULE_LIST: dict[str, Any] = {"items": {"type": "list", "schema": {"type": "dict", "schema": SCHEDULE}}}

#: An override may be null (the contract's ``ABSENT`` is what "no override" is): it serves null.
OVERRIDE_PUT: dict[str, Any] = {"value": {**VALUE, "required": True, "nullable": True}}

OVERRIDE: dict[str, Any] = {
    "key": {"type": "string"},
    "scope": {"type": "string", "allowed": ["tenant", "user"]},
    "user_id": {"type": "string"},
    "value": {**VALUE, "nullable": True},
}

#: Limits on an evaluation request: its context is walked and hashed per flag.
MAX_CONTEXT_BYTES = 8192
MAX_CONTEXT_KEYS = 100
#: orjson's own limit: the size check writes the context with it.
MAX_CONTEXT_DEPTH = 254
MAX_KEYS = 200
MAX_KEY_LENGTH = 100

EVALUATE: dict[str, Any] = {
    # No ``default``: Cerberus would put it in place of an explicit null, which must be refused.
    "context": {"type": "dict", "maxlength": MAX_CONTEXT_KEYS},
    "keys": {
        "type": "list",
        "maxlength": MAX_KEYS,
        "nullable": True,
        "schema": {"type": "string", "maxlength": MAX_KEY_LENGTH},
    },
}


def check_evaluate(body: dict[str, Any]) -> dict[str, Any]:
    """``EVALUATE`` checked by hand, with Cerberus' field names (the endpoint's ``check``).

    ``POST /v1/evaluate`` is the service's hot path and Cerberus costs about 100 us on it,
    more than evaluating ten flags; this does the same checks in a few. A test holds the two
    to the same verdicts. The context's size as JSON is checked here too.
    """
    found: list[dict[str, str]] = [{"field": k, "message": "unknown field"} for k in body if k not in EVALUATE]
    context = body.get("context", {})
    if not isinstance(context, dict):
        found.append({"field": "context", "message": "must be of dict type"})
    elif len(context) > MAX_CONTEXT_KEYS:
        found.append({"field": "context", "message": f"max length is {MAX_CONTEXT_KEYS}"})
    else:
        try:
            size = len(orjson.dumps(context))
        except TypeError:  # orjson refuses nesting deeper than 254 levels
            found.append({"field": "context", "message": f"nests deeper than {MAX_CONTEXT_DEPTH} levels"})
        else:
            if size > MAX_CONTEXT_BYTES:
                found.append({"field": "context", "message": f"is {size} bytes as JSON; at most {MAX_CONTEXT_BYTES}"})
    keys = body.get("keys")
    if keys is not None:
        if not isinstance(keys, list):
            found.append({"field": "keys", "message": "must be of list type"})
        elif len(keys) > MAX_KEYS:
            found.append({"field": "keys", "message": f"max length is {MAX_KEYS}"})
        else:
            for i, key in enumerate(keys):
                if not isinstance(key, str):
                    found.append({"field": f"keys.{i}", "message": "must be of string type"})
                elif len(key) > MAX_KEY_LENGTH:
                    found.append({"field": f"keys.{i}", "message": f"max length is {MAX_KEY_LENGTH}"})
    if found:
        raise errors.validation_error(found, detail="The request body has invalid fields.")
    return body


EVALUATION: dict[str, Any] = {
    "value": {"type": ["boolean", "number", "string", "dict", "list"], "nullable": True},
    "variant": {"type": "string", "nullable": True},
    "reason": {"type": "string", "allowed": ["DISABLED", "TARGETING_MATCH", "SPLIT", "DEFAULT", "ERROR"]},
    "rule": {"type": "string", "nullable": True},
    "revision": {
        "type": "integer",
        "nullable": True,
        "meta": {"description": "The flag's version that produced this evaluation (null for an unknown key)"},
    },
}

EVALUATE_RESULT: dict[str, Any] = {
    "flags": {"type": "dict", "valuesrules": {"type": "dict", "schema": EVALUATION}},
}

EVALUATION_QUERY: dict[str, Any] = {
    "user_id": {"type": "string", "maxlength": 256},
    "session_id": {"type": "string", "maxlength": 256},
    "ip": {"type": "string", "maxlength": 64},
}

TENANT_ATTRIBUTES: dict[str, Any] = {
    "plan": {"type": "string", "nullable": True},
    "created_at": {"type": "string", "nullable": True},
    "language": {"type": "string", "nullable": True},
}

SNAPSHOT: dict[str, Any] = {
    "flags": {"type": "dict", "valuesrules": {"type": "dict", "schema": FLAG}},
    "overrides": {
        "type": "dict",
        "schema": {
            "tenant": {"type": "dict"},
            "users": {"type": "dict", "valuesrules": {"type": "dict"}},
        },
    },
    "tenant": {"type": "dict", "schema": TENANT_ATTRIBUTES},
    "tenant_id": {"type": "string"},
    "revision": {"type": "integer"},
}
