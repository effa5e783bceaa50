"""The console's rules, without HTTP: what a form turns into, and who may change what."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

__all__ = [
    "MEMBER_ROLES",
    "FormError",
    "flag_from_form",
    "preview_context",
    "with_kill_switch",
    "with_rollout",
]

KEY_PATTERN = re.compile(r"^[a-z0-9][a-z0-9._-]{0,127}$")
MEMBER_ROLES = ("owner", "admin", "developer", "viewer")
STICKINESS = ("user_id", "tenant_id", "session_id", "ip")
#: What a flag definition's PUT takes back of its GET (``last_evaluated_at`` is read-only).
_PUT_FIELDS = ("key", "description", "enabled", "default", "off", "variants", "rules", "rollout", "allow_overrides")


class FormError(ValueError):
    """A form value the console refuses before asking any service; the message names the field."""


def _value(raw: str) -> Any:
    """A flag value typed into a form: JSON when it parses (true, 3, "x"), else the text itself."""
    text = raw.strip()
    try:
        return json.loads(text)
    except ValueError:
        return text


def flag_from_form(form: Mapping[str, str]) -> tuple[str, dict[str, Any]]:
    key = form.get("key", "").strip()
    if not KEY_PATTERN.match(key):
        raise FormError("Key: lower-case letters, digits, '.', '_' and '-', starting with a letter or digit.")
    doc: dict[str, Any] = {
        "description": form.get("description", "").strip(),
        "enabled": form.get("enabled") == "on",
        "default": _value(form.get("default", "false") or "false"),
        "allow_overrides": form.get("allow_overrides", "none"),
    }
    if doc["allow_overrides"] not in ("none", "tenant", "user"):
        raise FormError("Overrides: none, tenant or user.")
    if form.get("percentage", "").strip():
        doc["rollout"] = {"percentage": percentage(form["percentage"]), "stickiness": stickiness(form)}
    return key, doc


def percentage(raw: str) -> float | int:
    try:
        value = float(raw.strip())
    except ValueError:
        raise FormError("Rollout: a percentage from 0 to 100.") from None
    if not 0 <= value <= 100:
        raise FormError("Rollout: a percentage from 0 to 100.")
    return int(value) if value.is_integer() else value


def stickiness(form: Mapping[str, str]) -> str:
    value = form.get("stickiness", "user_id") or "user_id"
    if value not in STICKINESS:
        raise FormError(f"Stickiness: one of {', '.join(STICKINESS)}.")
    return value


def _put_body(flag: Mapping[str, Any]) -> dict[str, Any]:
    """The definition to PUT back, conditional on the version it was read at."""
    return {**{k: flag[k] for k in _PUT_FIELDS if k in flag}, "version": flag["version"]}


def with_kill_switch(flag: Mapping[str, Any], killed: bool) -> dict[str, Any]:
    return {**_put_body(flag), "enabled": not killed}


def with_rollout(flag: Mapping[str, Any], form: Mapping[str, str]) -> dict[str, Any]:
    raw = form.get("percentage", "").strip()
    body = _put_body(flag)
    if not raw:
        body["rollout"] = None
        return body
    body["rollout"] = {"percentage": percentage(raw), "stickiness": stickiness(form)}
    return body


def preview_context(form: Mapping[str, str]) -> tuple[str, dict[str, Any]]:
    """The tenant and evaluation context the preview form names."""
    tenant_id = form.get("tenant_id", "").strip()
    if not re.match(r"^[A-Za-z0-9_-]{1,64}$", tenant_id):
        raise FormError("Tenant: the id of the tenant to evaluate as (ten_...).")
    context: dict[str, Any] = {}
    for name in ("user_id", "session_id", "ip"):
        if form.get(name, "").strip():
            context[name] = form[name].strip()
    return tenant_id, context
