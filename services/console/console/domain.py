"""The console's rules, without HTTP: what a form turns into, and who may change what."""

from __future__ import annotations

import hmac
import json
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from aerie.auth.scopes import TENANT_ROLE_NAMES, TENANT_SCOPES
from aerie.i18n import msg

__all__ = [
    "CLIENT_SCOPES",
    "MEMBER_ROLES",
    "PLANS",
    "TENANT_STATUSES",
    "FormError",
    "audit_filters",
    "client_from_form",
    "flag_from_form",
    "override_from_form",
    "preview_context",
    "project_changes",
    "project_from_form",
    "slug_confirmed",
    "tenant_from_form",
    "with_kill_switch",
    "with_rollout",
]

KEY_PATTERN = re.compile(r"^[a-z0-9][a-z0-9._-]{0,127}$")
MEMBER_ROLES = TENANT_ROLE_NAMES
STICKINESS = ("user_id", "tenant_id", "session_id", "ip")
#: What a tenant's API client may hold; a person grants only those their own token holds,
#: which the tenants service checks again.
CLIENT_SCOPES = TENANT_SCOPES
SLUG_PATTERN = re.compile(r"^[a-z0-9][a-z0-9-]{1,62}$")
#: A user id as the flags service takes one in a path: printable, no whitespace, bounded.
USER_ID_PATTERN = re.compile(r"^[^\s\x00-\x1f\x7f]{1,256}$")
#: What a flag definition's PUT takes back of its GET (``last_evaluated_at`` is read-only).
_PUT_FIELDS = ("key", "description", "enabled", "default", "off", "variants", "rules", "rollout", "allow_overrides")


class FormError(ValueError):
    """A form value the console refuses before asking any service; the message names the field."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        #: What the page says (a :func:`~aerie.i18n.msg`, translated when shown).
        self.message = message


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
        raise FormError(msg("Key: lower-case letters, digits, '.', '_' and '-', starting with a letter or digit."))
    doc: dict[str, Any] = {
        "description": form.get("description", "").strip(),
        "enabled": form.get("enabled") == "on",
        "default": _value(form.get("default", "false") or "false"),
        "allow_overrides": form.get("allow_overrides", "none"),
    }
    if doc["allow_overrides"] not in ("none", "tenant", "user"):
        raise FormError(msg("Overrides: none, tenant or user."))
    if form.get("percentage", "").strip():
        doc["rollout"] = {"percentage": percentage(form["percentage"]), "stickiness": stickiness(form)}
    return key, doc


def percentage(raw: str) -> float | int:
    try:
        value = float(raw.strip())
    except ValueError:
        raise FormError(msg("Rollout: a percentage from 0 to 100.")) from None
    if not 0 <= value <= 100:
        raise FormError(msg("Rollout: a percentage from 0 to 100."))
    return int(value) if value.is_integer() else value


def stickiness(form: Mapping[str, str]) -> str:
    value = form.get("stickiness", "user_id") or "user_id"
    if value not in STICKINESS:
        raise FormError(msg("Stickiness: one of %(choices)s.", choices=", ".join(STICKINESS)))
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
        raise FormError(msg("Tenant: the id of the tenant to evaluate as (ten_...)."))
    context: dict[str, Any] = {}
    for name in ("user_id", "session_id", "ip"):
        if form.get(name, "").strip():
            context[name] = form[name].strip()
    return tenant_id, context


#: What a name field says when it is empty or too long, by what is named (whole sentences:
#: "the client's name" and "the project's name" decline differently in other languages).
_NAME_ERRORS = {
    "client": msg("Name: the client's name, 1 to 200 characters."),
    "project": msg("Name: the project's name, 1 to 200 characters."),
    "tenant": msg("Name: the tenant's name, 1 to 200 characters."),
}


def _name(form: Mapping[str, str], what: str) -> str:
    name = form.get("name", "").strip()
    if not name or len(name) > 200:
        raise FormError(_NAME_ERRORS[what])
    return name


def client_from_form(form: Mapping[str, str]) -> dict[str, Any]:
    """A new API client: its name and the scopes ticked (one checkbox ``scope:<scope>`` each)."""
    scopes = [s for s in CLIENT_SCOPES if form.get(f"scope:{s}") == "on"]
    if not scopes:
        raise FormError(msg("Scopes: tick at least one scope for the client."))
    return {"name": _name(form, "client"), "scopes": scopes}


def _slug(form: Mapping[str, str]) -> str | None:
    slug = form.get("slug", "").strip()
    if slug and not SLUG_PATTERN.match(slug):
        raise FormError(msg("Slug: 2 to 63 lower-case letters, digits and '-', starting with a letter or digit."))
    return slug or None


def project_from_form(form: Mapping[str, str]) -> dict[str, Any]:
    doc: dict[str, Any] = {"name": _name(form, "project"), "description": form.get("description", "").strip()}
    slug = _slug(form)
    if slug:
        doc["slug"] = slug
    return doc


def project_changes(form: Mapping[str, str]) -> tuple[dict[str, Any], int | None]:
    """The PATCH of the edit form, and the version it was read at (sent as ``If-Match``)."""
    changes = project_from_form(form)
    raw = form.get("version", "").strip()
    return changes, int(raw) if raw.isdigit() else None


def override_from_form(form: Mapping[str, str]) -> tuple[str | None, Any]:
    """Whose override (None: the tenant's) and, to set one, its value typed as for a flag."""
    user_id = None
    if form.get("scope") == "user":
        user_id = form.get("user_id", "").strip()
        if not USER_ID_PATTERN.match(user_id):
            raise FormError(msg("User id: the id your application evaluates the flag with, without spaces."))
    raw = form.get("value", "")
    if form.get("action") != "clear" and not raw.strip():
        raise FormError(msg('Value: the value to serve (JSON: true, 3, "text"; anything else is text).'))
    return user_id, _value(raw)


#: A tenant's plans and statuses, as the tenants service has them.
PLANS = ("free", "team", "enterprise")
TENANT_STATUSES = ("active", "suspended", "deleted")
#: The languages a new tenant may be given here: those the console itself ships.
TENANT_LANGUAGES = ("en", "de")


def tenant_from_form(form: Mapping[str, str]) -> dict[str, Any]:
    """A new tenant: its slug (required: it is what a deletion is confirmed with), name, plan, language."""
    slug = form.get("slug", "").strip()
    if not SLUG_PATTERN.match(slug):
        raise FormError(msg("Slug: 2 to 63 lower-case letters, digits and '-', starting with a letter or digit."))
    plan = form.get("plan", "free") or "free"
    if plan not in PLANS:
        raise FormError(msg("Plan: one of %(choices)s.", choices=", ".join(PLANS)))
    doc: dict[str, Any] = {"slug": slug, "name": _name(form, "tenant"), "plan": plan}
    language = form.get("language", "").strip()
    if language:
        if language not in TENANT_LANGUAGES:
            raise FormError(msg("Language: one of %(choices)s.", choices=", ".join(TENANT_LANGUAGES)))
        doc["language"] = language
    return doc


def slug_confirmed(form: Mapping[str, str], slug: str) -> bool:
    """Whether the person typed the tenant's slug, exactly (surrounding spaces aside)."""
    typed = form.get("confirm_slug", "").strip()
    return bool(slug) and hmac.compare_digest(typed.encode(), slug.encode())


#: The audit service's own filter patterns (its schemas): refused here, with the field named.
ACTION_FILTER = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*){0,4}(\.\*)?$")
KIND = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")
AUDIT_FILTERS = ("action", "actor_id", "target_type", "target_id", "since", "until")


#: What a moment field says when it does not parse, by field (whole sentences, as for names).
_MOMENT_ERRORS = {
    "since": msg("Since: a date and time such as 2026-12-04T19:30 (UTC)."),
    "until": msg("Until: a date and time such as 2026-12-04T19:30 (UTC)."),
}


def _moment(raw: str, field: str) -> str:
    """A form's moment as RFC 3339 UTC: ``datetime-local`` (``2026-12-04T19:30``) is taken as UTC."""
    text = raw.strip()
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise FormError(_MOMENT_ERRORS[field]) from None
    moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def audit_filters(query: Mapping[str, str]) -> dict[str, str]:
    """The audit list's filters from the page's query, in the audit service's terms (empty ones left out)."""
    found = {name: str(query.get(name) or "").strip() for name in AUDIT_FILTERS}
    filters = {name: value for name, value in found.items() if value}
    if "action" in filters and (len(filters["action"]) > 100 or not ACTION_FILTER.match(filters["action"])):
        raise FormError(msg("Action: an action such as flag.updated, or a prefix such as flag.*."))
    if "target_type" in filters and not KIND.match(filters["target_type"]):
        raise FormError(msg("Target type: a lower-case kind such as flag or project."))
    for name in ("actor_id", "target_id"):
        if len(filters.get(name, "")) > 200:
            raise FormError(msg("Ids: at most 200 characters."))
    for name in ("since", "until"):
        if name in filters:
            filters[name] = _moment(filters[name], name)
    if "since" in filters and "until" in filters and filters["since"] >= filters["until"]:
        raise FormError(msg("Until: a moment after Since."))
    return filters
