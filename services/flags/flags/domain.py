"""What a valid flag is, beyond what a Cerberus schema can say.

:mod:`flags.schemas` checks the shape of a definition (types, allowed operators and
stickiness, ranges); this module checks what depends on several fields at once: variant
weights summing to 100, every served value having the flag's type, each operator getting
values it can compare. The engine (:mod:`aerie_client.flags.evaluation`) never raises on a bad
definition, it just answers ``ERROR`` or never matches; refusing such a definition here with
a 422 naming the field is what keeps an admin from shipping one.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any

from aerie import errors
from aerie.json_input import nests_deeper_than
from aerie_client.flags.evaluation import STICKINESS
from aerie_client.flags.operators import (
    ATTRIBUTE_PATTERN,
    NUMBER_OPERATORS,
    SINGLE_VALUE_OPERATORS,
    STRING_OPERATORS,
    TIME_OPERATORS,
    parse_timestamp,
)

__all__ = [
    "ALLOW_OVERRIDES",
    "ATTRIBUTE_PATTERN",
    "KEY_PATTERN",
    "STICKINESS_VALUES",
    "VARIANT_PATTERN",
    "check_definition",
    "check_override_value",
    "definition_problems",
    "is_key",
    "json_kind",
]

#: Flag keys: lower-case, URL-safe, no ``:`` (the bucket hashes ``f"{key}:{value}"``).
KEY_PATTERN = r"^[a-z0-9][a-z0-9._-]{0,99}$"
_KEY_RE = re.compile(KEY_PATTERN)
VARIANT_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
ALLOW_OVERRIDES = ("none", "tenant", "user")
STICKINESS_VALUES = tuple(sorted(STICKINESS))


#: Paths under /v1/flags/ that are not flags.
RESERVED_KEYS = ("snapshot", "stream")


def is_key(key: str) -> bool:
    return bool(_KEY_RE.match(key)) and key not in RESERVED_KEYS


def json_kind(value: Any) -> str:
    """The JSON type of a value; ``True`` is a boolean, not a number."""
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, dict):
        return "object"
    if isinstance(value, list):
        return "array"
    return "null"


#: How deeply a served JSON value may nest (the JSON encoders refuse a few hundred levels).
MAX_VALUE_DEPTH = 20


def _value_problem(value: Any, doc: Mapping[str, Any]) -> str | None:
    """Why ``value`` cannot be served by the flag ``doc``, or None when it can."""
    if nests_deeper_than(value, MAX_VALUE_DEPTH):
        return f"nests deeper than {MAX_VALUE_DEPTH} levels"
    names = [v["name"] for v in doc.get("variants") or ()]
    if names:
        if value not in names or not isinstance(value, str):
            return f"must name one of the flag's variants ({', '.join(names)})"
        return None
    expected = json_kind(doc["default"])
    if json_kind(value) != expected:
        return f"must be a {expected}, like the flag's default"
    return None


def check_definition(key: str, doc: Mapping[str, Any]) -> None:
    """Raise a 422 listing every cross-field problem of a definition (shape already checked)."""
    found = definition_problems(key, doc)
    if found:
        raise errors.validation_error(found, detail="The flag definition has invalid fields.")


def definition_problems(key: str, doc: Mapping[str, Any]) -> list[dict[str, str]]:
    """Every cross-field problem of a definition, each ``{"field", "message"}``; none is valid."""
    return list(_definition_problems(key, doc))


def check_override_value(value: Any, doc: Mapping[str, Any]) -> None:
    """An override serves a value the flag could serve, or null (which the engine serves as it is)."""
    problem = None if value is None else _value_problem(value, doc)
    if problem is not None:
        raise errors.validation_error([{"field": "value", "message": problem}])


def _definition_problems(key: str, doc: Mapping[str, Any]) -> Iterator[dict[str, str]]:
    if not is_key(key):
        yield {"field": "key", "message": f"must match {KEY_PATTERN} and not be one of {', '.join(RESERVED_KEYS)}"}
    if "key" in doc and doc["key"] != key:
        yield {"field": "key", "message": "must be the key in the path"}
    if nests_deeper_than(doc["default"], MAX_VALUE_DEPTH):
        yield {"field": "default", "message": f"nests deeper than {MAX_VALUE_DEPTH} levels"}
    variants = doc.get("variants") or []
    if variants:
        yield from _variant_problems(variants)
        if not isinstance(doc["default"], str) or doc["default"] not in {v["name"] for v in variants}:
            yield {"field": "default", "message": "must name one of the flag's variants"}
    rollout = doc.get("rollout")
    if rollout is not None and not variants and not isinstance(doc["default"], bool):
        yield {
            "field": "rollout",
            "message": "a rollout without variants serves true, so the default must be a boolean",
        }
    if "off" in doc:
        problem = _value_problem(doc["off"], doc)
        if problem is not None:
            yield {"field": "off", "message": problem}
    for i, rule in enumerate(doc.get("rules") or ()):
        problem = _value_problem(rule["serve"], doc)
        if problem is not None:
            yield {"field": f"rules.{i}.serve", "message": problem}
        for j, condition in enumerate(rule["conditions"]):
            problem = _condition_problem(condition["op"], condition.get("values") or [])
            if problem is not None:
                yield {"field": f"rules.{i}.conditions.{j}.values", "message": problem}


def _variant_problems(variants: list[Mapping[str, Any]]) -> Iterator[dict[str, str]]:
    seen: set[str] = set()
    total = 0
    for i, variant in enumerate(variants):
        weight = variant["weight"]
        if isinstance(weight, bool):  # Cerberus' integer admits booleans
            yield {"field": f"variants.{i}.weight", "message": "must be an integer 0..100"}
        else:
            total += weight
        if variant["name"] in seen:
            yield {"field": f"variants.{i}.name", "message": "is used by another variant"}
        seen.add(variant["name"])
    if total != 100:
        yield {"field": "variants", "message": f"weights must sum to 100, not {total}"}


def _condition_problem(op: str, values: list[Any]) -> str | None:
    """What is wrong with the values of an ``op`` condition, or None."""
    if op == "exists":
        if values and (len(values) != 1 or not isinstance(values[0], bool)):
            return "exists takes no values, or [true] or [false]"
        return None
    if not values:
        return f"{op} needs at least one value"
    if op in SINGLE_VALUE_OPERATORS and len(values) != 1:
        return f"{op} takes exactly one value"
    if op in STRING_OPERATORS and not all(isinstance(v, str) for v in values):
        return f"{op} compares strings only"
    if op in NUMBER_OPERATORS and (isinstance(values[0], bool) or not isinstance(values[0], int | float)):
        return f"{op} compares numbers only"
    if op in TIME_OPERATORS and parse_timestamp(values[0]) is None:
        return f"{op} needs an RFC 3339 timestamp with a time zone"
    return None
