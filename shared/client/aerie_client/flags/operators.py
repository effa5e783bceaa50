"""Targeting conditions, compiled once into plain predicates over an evaluation context.

A condition ``{"attribute", "op", "values"}`` is turned into a function ``context -> bool``
when a flag is compiled, so evaluating it does no parsing, no validation and no dispatch on
the operator name: the client must evaluate at least 100,000 flags a second on one core.

The semantics are the ones the server and the client share (see docs/api.md and the flags
contract), and every rule here is chosen so that a predicate can never raise:

* ``attribute`` names a context key; a dotted path walks nested objects
  (``tenant.plan`` is ``context["tenant"]["plan"]``).
* An attribute that is absent, or ``None`` (JSON ``null``), is *missing*. Every operator but
  ``exists`` is false for a missing attribute, ``not_in`` and ``neq`` included: "this user's
  plan is not enterprise" says nothing about a user whose plan nobody knows.
* Values compare as JSON values: ``true`` is not ``1`` and ``"1"`` is not ``1`` (Python's
  ``True == 1`` must not leak into targeting). ``1`` and ``1.0`` are the same number.
* Any type mismatch (a number where a string is needed, a malformed timestamp, an unknown
  operator, a condition that is not an object) makes the condition false, never an error.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from functools import lru_cache
from typing import Any

__all__ = [
    "ATTRIBUTE_PATTERN",
    "NUMBER_OPERATORS",
    "OPERATORS",
    "OPERATOR_NAMES",
    "SINGLE_VALUE_OPERATORS",
    "STRING_OPERATORS",
    "TIME_OPERATORS",
    "Predicate",
    "compile_condition",
    "parse_timestamp",
    "resolver",
]

Predicate = Callable[[Mapping[str, Any]], bool]
Resolver = Callable[[Mapping[str, Any]], Any]

#: The contract's rule operators, in its order (which the console's rule editor offers).
OPERATOR_NAMES = (
    "in",
    "not_in",
    "eq",
    "neq",
    "contains",
    "starts_with",
    "ends_with",
    "gt",
    "gte",
    "lt",
    "lte",
    "before",
    "after",
    "exists",
)
OPERATORS = frozenset(OPERATOR_NAMES)
#: What each operator's ``values`` must be, as the flags service checks a definition.
SINGLE_VALUE_OPERATORS = frozenset({"eq", "neq", "gt", "gte", "lt", "lte", "before", "after"})
STRING_OPERATORS = frozenset({"contains", "starts_with", "ends_with"})
NUMBER_OPERATORS = frozenset({"gt", "gte", "lt", "lte"})
TIME_OPERATORS = frozenset({"before", "after"})
#: What a rule's ``attribute`` may be: a name, or up to five dotted (``tenant.plan``).
ATTRIBUTE_PATTERN = r"^[A-Za-z_][A-Za-z0-9_-]{0,63}(\.[A-Za-z_][A-Za-z0-9_-]{0,63}){0,4}$"

# RFC 3339 section 5.6 date-time (with the "T"/space separator its note allows). Python's
# fromisoformat alone accepts far more of ISO 8601 (week dates, no offset, basic format),
# which a JSON client in another language would not treat as a timestamp.
_RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:[Zz]|[+-]\d{2}:\d{2})")


def _never(_context: Mapping[str, Any]) -> bool:
    return False


@lru_cache(maxsize=4096)
def _parse_rfc3339(text: str) -> datetime | None:
    # Cached: the same few timestamps (a tenant's created_at) are compared again and again.
    if not _RFC3339.fullmatch(text):
        return None
    try:
        return datetime.fromisoformat(text.upper())
    except ValueError:  # a well-shaped but impossible date, e.g. 2024-02-30
        return None


def parse_timestamp(value: Any) -> datetime | None:
    """An RFC 3339 string (or an aware ``datetime``) as an aware datetime, else None."""
    if type(value) is str:
        return _parse_rfc3339(value)
    if isinstance(value, datetime) and value.utcoffset() is not None:
        return value
    return None


def _is_number(value: Any) -> bool:
    return type(value) in (int, float)


def resolver(attribute: str) -> Resolver:
    """A function that reads ``attribute`` (possibly dotted) from a context, None if missing."""
    parts = tuple(attribute.split("."))
    if len(parts) == 1:
        name = parts[0]

        def get_one(context: Mapping[str, Any]) -> Any:
            return context.get(name)

        return get_one

    def get_path(context: Mapping[str, Any]) -> Any:
        node: Any = context
        for part in parts:
            if type(node) is not dict and not isinstance(node, Mapping):  # the dict test is the fast path
                return None
            node = node.get(part)
        return node

    return get_path


class _JsonSet:
    """Membership by JSON equality: separate sets per JSON type, so ``True`` never equals ``1``."""

    __slots__ = ("bools", "numbers", "strings")

    def __init__(self, values: Sequence[Any]) -> None:
        self.strings = frozenset(v for v in values if type(v) is str)
        self.numbers = frozenset(v for v in values if _is_number(v))
        self.bools = frozenset(v for v in values if type(v) is bool)

    def __contains__(self, value: Any) -> bool:
        kind = type(value)
        if kind is str:
            return value in self.strings
        if kind is bool:
            return value in self.bools
        if kind is int or kind is float:
            return value in self.numbers
        return False  # objects and arrays are never members: targeting compares scalars


def _membership(get: Resolver, values: Sequence[Any], *, negate: bool) -> Predicate:
    members = _JsonSet(values)
    strings = members.strings
    if negate:

        def not_in(context: Mapping[str, Any]) -> bool:
            value = get(context)
            if value is None or not _is_scalar(value):
                return False
            return value not in members

        return not_in

    if strings and not members.numbers and not members.bools:
        # The common case (plans, countries, user ids) without the type dispatch.
        def in_strings(context: Mapping[str, Any]) -> bool:
            value = get(context)
            return type(value) is str and value in strings

        return in_strings

    def in_(context: Mapping[str, Any]) -> bool:
        return get(context) in members

    return in_


def _is_scalar(value: Any) -> bool:
    return type(value) in (str, int, float, bool)


def _string_op(get: Resolver, op: str, values: Sequence[Any]) -> Predicate:
    needles = tuple(v for v in values if type(v) is str)
    if not needles:
        return _never
    if op == "starts_with":

        def starts_with(context: Mapping[str, Any]) -> bool:
            value = get(context)
            return type(value) is str and value.startswith(needles)

        return starts_with
    if op == "ends_with":

        def ends_with(context: Mapping[str, Any]) -> bool:
            value = get(context)
            return type(value) is str and value.endswith(needles)

        return ends_with

    def contains(context: Mapping[str, Any]) -> bool:
        value = get(context)
        return type(value) is str and any(needle in value for needle in needles)

    return contains


def _number_op(get: Resolver, op: str, values: Sequence[Any]) -> Predicate:
    if not values or not _is_number(values[0]):
        return _never
    bound = values[0]
    if op == "gt":

        def gt(context: Mapping[str, Any]) -> bool:
            value = get(context)
            return _is_number(value) and value > bound

        return gt
    if op == "gte":

        def gte(context: Mapping[str, Any]) -> bool:
            value = get(context)
            return _is_number(value) and value >= bound

        return gte
    if op == "lt":

        def lt(context: Mapping[str, Any]) -> bool:
            value = get(context)
            return _is_number(value) and value < bound

        return lt

    def lte(context: Mapping[str, Any]) -> bool:
        value = get(context)
        return _is_number(value) and value <= bound

    return lte


def _time_op(get: Resolver, op: str, values: Sequence[Any]) -> Predicate:
    bound = parse_timestamp(values[0]) if values else None
    if bound is None:
        return _never
    if op == "before":

        def before(context: Mapping[str, Any]) -> bool:
            value = parse_timestamp(get(context))
            return value is not None and value < bound

        return before

    def after(context: Mapping[str, Any]) -> bool:
        value = parse_timestamp(get(context))
        return value is not None and value > bound

    return after


def _equality(get: Resolver, op: str, values: Sequence[Any]) -> Predicate:
    if not values or not _is_scalar(values[0]):
        return _never
    target = _JsonSet(values[:1])
    if op == "eq":

        def eq(context: Mapping[str, Any]) -> bool:
            return get(context) in target

        return eq

    def neq(context: Mapping[str, Any]) -> bool:
        value = get(context)
        return value is not None and _is_scalar(value) and value not in target

    return neq


def _exists(get: Resolver, values: Sequence[Any]) -> Predicate:
    # ``values`` is ignored, except that ``[false]`` asks for the attribute's absence.
    if values and values[0] is False:

        def absent(context: Mapping[str, Any]) -> bool:
            return get(context) is None

        return absent

    def present(context: Mapping[str, Any]) -> bool:
        return get(context) is not None

    return present


def compile_condition(condition: Any) -> Predicate:
    """The predicate for one condition document; a malformed one compiles to "never true"."""
    if not isinstance(condition, Mapping):
        return _never
    attribute = condition.get("attribute")
    op = condition.get("op")
    values = condition.get("values", [])
    if type(attribute) is not str or not attribute or type(op) is not str or op not in OPERATORS:
        return _never
    if values is None:
        values = []
    if not isinstance(values, list | tuple):
        return _never
    get = resolver(attribute)
    if op in ("in", "not_in"):
        return _membership(get, values, negate=op == "not_in")
    if op in ("eq", "neq"):
        return _equality(get, op, values)
    if op in ("contains", "starts_with", "ends_with"):
        return _string_op(get, op, values)
    if op in ("gt", "gte", "lt", "lte"):
        return _number_op(get, op, values)
    if op in ("before", "after"):
        return _time_op(get, op, values)
    return _exists(get, values)
