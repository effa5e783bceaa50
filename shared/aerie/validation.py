"""Cerberus validation with the contract's 422: one ``{"field", "message"}`` per field.

Schemas are plain Cerberus dicts declared on the resource (``@endpoint(body=...)``). Unknown
fields are rejected. Validators are cached per schema and per thread: building one checks
the schema, which costs more than validating a document, and an instance keeps state while
it validates, so threads must not share it.

A document reports at most :data:`MAX_REPORTED_ERRORS` errors. Cerberus re-sorts its whole
error list on every error it records, so a body of 5,000 unknown keys took 26 s to refuse:
one tenant could hold every thread of an instance. Past the cap errors are dropped, which
keeps validation linear in the document's size.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import cerberus
import cerberus.errors

from aerie import errors
from aerie.i18n import msg

__all__ = [
    "LIST_QUERY",
    "MAX_REPORTED_ERRORS",
    "RFC3339",
    "Validator",
    "cursor_rule",
    "flatten_errors",
    "is_rfc3339",
    "limit_rule",
    "validate",
]


#: A field holding an RFC 3339 timestamp: ``{"type": "string", **RFC3339}``.
RFC3339: dict[str, Any] = {"check_with": "rfc3339"}


def is_rfc3339(value: Any) -> bool:
    if not isinstance(value, str) or "T" not in value.upper():
        return False
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        return False
    return parsed.tzinfo is not None


class _Messages(cerberus.errors.BasicErrorHandler):
    """Cerberus' messages, less the ones that speak Python to API clients.

    A failed ``coerce`` reports the exception (``invalid literal for int() with base 10``)
    beside the ``type`` rule's own ``must be of integer type``; every coerced field also
    declares its type, so that message says all the client needs and the other is dropped.
    """

    messages = {**cerberus.errors.BasicErrorHandler.messages, cerberus.errors.COERCION_FAILED.code: ""}


#: Errors one document reports (a client fixes the first ones, then sees the next).
MAX_REPORTED_ERRORS = 20


class Validator(cerberus.Validator):
    """Cerberus with the rules Aerie's schemas use (``check_with: rfc3339``), reporting at
    most :data:`MAX_REPORTED_ERRORS` errors (see the module's docstring)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("error_handler", _Messages)
        super().__init__(*args, **kwargs)

    def _error(self, *args: Any) -> None:
        # Dropping errors only once some are recorded keeps every verdict Cerberus draws from
        # "were there errors" (validate(), anyof, oneof) exactly as it was. Child validators
        # (nested dicts, list items) are capped the same way before they hand theirs up.
        if len(self._errors) >= MAX_REPORTED_ERRORS:
            self.errors_dropped = True
            return
        super()._error(*args)

    def validate(self, *args: Any, **kwargs: Any) -> bool:
        self.errors_dropped = False
        return super().validate(*args, **kwargs)

    def _check_with_rfc3339(self, field: str, value: Any) -> None:
        if value is None:  # Cerberus runs check_with on null too; `nullable` decides about it
            return
        if not is_rfc3339(value):
            self._error(field, "must be an RFC 3339 timestamp with a time zone")


class _CheckedSchema(cerberus.schema.DefinitionSchema):
    """A top-level schema Cerberus checked once, when its cached validator was built.

    Cerberus copies the schema and re-assigns every field's rules on each normalisation,
    and each copy and assignment re-checks the rules by hashing them: 1.3 ms for a 9-field
    query, more than the validation itself. Aerie's schemas are constants, so a copy of a
    checked schema and a field given back its own rules need no new check; a field given
    different rules is still checked.
    """

    def copy(self) -> _CheckedSchema:
        clone = object.__new__(type(self))
        clone.__dict__.update(self.__dict__)
        clone.schema = self.schema.copy()
        return clone

    def __setitem__(self, key: str, value: Any) -> None:
        if self.schema.get(key) is value:
            return
        super().__setitem__(key, value)


_local = threading.local()


def _validator(schema: Mapping[str, Any]) -> Validator:
    cache: dict[int, tuple[Mapping[str, Any], Validator]] = getattr(_local, "cache", None) or {}
    _local.cache = cache
    hit = cache.get(id(schema))
    if hit is None or hit[0] is not schema:
        validator = Validator(allow_unknown=False)
        validator.schema = _CheckedSchema(validator, dict(schema))  # checked here, once
        hit = (schema, validator)
        cache[id(schema)] = hit
    return hit[1]


def flatten_errors(tree: Mapping[str, Any], prefix: str = "") -> list[dict[str, str]]:
    """Cerberus' nested error tree as one entry per field, with dotted paths.

    A field that broke several rules (``coerce`` then ``type``, say) gets one entry whose
    message joins them.
    """
    out: list[dict[str, str]] = []
    for field, messages in tree.items():
        path = f"{prefix}{field}"
        own: list[str] = []
        for message in messages:
            if isinstance(message, dict):
                out.extend(flatten_errors(message, prefix=f"{path}."))
            else:
                own.append(str(message))
        if own:
            # A message left empty (see _Messages) still marks the field as invalid.
            said = "; ".join(m for m in own if m) or "has an invalid value"
            out.append({"field": path, "message": said})
    return out


def validate(schema: Mapping[str, Any], document: Mapping[str, Any], *, location: str = "body") -> dict[str, Any]:
    """The normalized document, or a 422 listing every invalid field."""
    v = _validator(schema)
    if v.validate(dict(document)):
        return dict(v.document)
    listed = flatten_errors(v.errors)
    detail = msg("The request %(location)s has invalid fields.", location=location)
    if v.errors_dropped or len(listed) > MAX_REPORTED_ERRORS:
        listed = listed[:MAX_REPORTED_ERRORS]
        detail = msg(
            "The request %(location)s has invalid fields; the first %(count)s are listed.",
            location=location,
            count=len(listed),
        )
    raise errors.validation_error(listed, detail=detail)


def limit_rule(default: int = 50, maximum: int = 200) -> dict[str, Any]:
    return {"type": "integer", "coerce": int, "min": 1, "max": maximum, "default": default}


def cursor_rule() -> dict[str, Any]:
    return {"type": "string", "maxlength": 512, "nullable": False}


#: The query every list route accepts; extend it with the route's own filters.
LIST_QUERY: dict[str, Any] = {"limit": limit_rule(), "cursor": cursor_rule()}
