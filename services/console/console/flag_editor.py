"""The flag editor's form, without HTTP: rules, conditions, variants, the off value, schedules.

The editor is one plain HTML form that works without JavaScript: its fields are numbered
(``rule-0-cond-1-op``), and every button but "Save" is an ``action`` that changes the rows
(``add-condition:0``, ``up:2``) and shows the form again. What the person typed is kept as
typed (:class:`Editor` holds text) until "Save" turns it into a definition; each problem is
keyed by the field's path as the flags service names it in a 422 (``rules.0.conditions.1.values``),
so the console's checks and the service's show in the same place.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from aerie.i18n import Message, msg
from aerie_client.flags.operators import (
    ATTRIBUTE_PATTERN,
    NUMBER_OPERATORS,
    OPERATOR_NAMES,
    SINGLE_VALUE_OPERATORS,
    STRING_OPERATORS,
)

__all__ = [
    "OPS",
    "Condition",
    "Editor",
    "EditorErrors",
    "Rule",
    "Variant",
    "apply_action",
    "definition_from_editor",
    "editor_from_flag",
    "editor_from_form",
    "schedule_from_form",
    "service_errors",
]

#: The operators the contract's rules allow, in the order the editor offers them.
OPS = OPERATOR_NAMES
_ATTRIBUTE = re.compile(ATTRIBUTE_PATTERN)
VARIANT_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?([Zz]|[+-]\d{2}:\d{2})?$")
#: The service's own limits on a definition.
MAX_RULES = 100
MAX_CONDITIONS = 20
MAX_VARIANTS = 50
#: Fields of the editor's form; a browser posts every row's three or four.
MAX_FIELDS = 4 + 3 * MAX_VARIANTS + MAX_RULES * (2 + 3 * 5)
_ROW = re.compile(r"^(variant|rule)-(\d{1,3})-(name|weight|serve)$")
_COND = re.compile(r"^rule-(\d{1,3})-cond-(\d{1,2})-(attribute|op|values)$")

EditorErrors = dict[str, Message | str]


@dataclass
class Condition:
    attribute: str = ""
    op: str = "in"
    values: str = ""


@dataclass
class Rule:
    serve: str = "true"
    conditions: list[Condition] = field(default_factory=lambda: [Condition()])


@dataclass
class Variant:
    name: str = ""
    weight: str = ""


@dataclass
class Editor:
    """The editor's rows, as typed; ``version`` is the one the page showed (sent as If-Match)."""

    version: int | None
    description: str = ""
    default: str = "false"
    off: str = ""
    allow_overrides: str = "none"
    variants: list[Variant] = field(default_factory=list)
    rules: list[Rule] = field(default_factory=list)


def _text(value: Any) -> str:
    """A JSON value as the form shows it: strings bare, everything else as JSON."""
    return value if isinstance(value, str) else json.dumps(value)


def _value(raw: str) -> Any:
    """A value typed into a form: JSON when it parses (true, 3, "x"), else the text itself."""
    text = raw.strip()
    try:
        return json.loads(text)
    except ValueError:
        return text


def _values_text(values: list[Any]) -> str:
    if any(isinstance(v, str) and ("," in v or v != v.strip()) for v in values):
        return json.dumps(values)
    return ", ".join(_text(v) for v in values)


def editor_from_flag(flag: Mapping[str, Any]) -> Editor:
    return Editor(
        version=flag.get("version"),
        description=flag.get("description") or "",
        default=_text(flag.get("default", False)),
        off=_text(flag["off"]) if "off" in flag else "",
        allow_overrides=flag.get("allow_overrides") or "none",
        variants=[Variant(str(v.get("name", "")), str(v.get("weight", ""))) for v in flag.get("variants") or ()],
        rules=[
            Rule(
                _text(r.get("serve")),
                [
                    Condition(str(c.get("attribute", "")), str(c.get("op", "in")), _values_text(c.get("values") or []))
                    for c in r.get("conditions") or ()
                ],
            )
            for r in flag.get("rules") or ()
        ],
    )


def editor_from_form(form: Mapping[str, str]) -> Editor:
    """The rows the form posted, in their numbered order (gaps closed)."""
    raw = form.get("version", "").strip()
    editor = Editor(
        version=int(raw) if raw.isdigit() else None,
        description=form.get("description", ""),
        default=form.get("default", ""),
        off=form.get("off", ""),
        allow_overrides=form.get("allow_overrides", "none"),
    )
    variants: dict[int, Variant] = {}
    rules: dict[int, tuple[Rule, dict[int, Condition]]] = {}
    for name, value in form.items():
        if m := _ROW.match(name):
            kind, i, part = m.group(1), int(m.group(2)), m.group(3)
            if kind == "variant":
                setattr(variants.setdefault(i, Variant()), part, value)
            elif part == "serve":
                rules.setdefault(i, (Rule(conditions=[]), {}))[0].serve = value
        elif m := _COND.match(name):
            i, j, part = int(m.group(1)), int(m.group(2)), m.group(3)
            setattr(rules.setdefault(i, (Rule(conditions=[]), {}))[1].setdefault(j, Condition()), part, value)
    editor.variants = [variants[i] for i in sorted(variants)]
    for i in sorted(rules):
        rule, conditions = rules[i]
        rule.conditions = [conditions[j] for j in sorted(conditions)]
        editor.rules.append(rule)
    return editor


def apply_action(editor: Editor, action: str) -> Editor:
    """One of the form's row buttons; an action it does not know changes nothing."""
    name, _, where = action.partition(":")
    at = [int(n) for n in where.split(":") if n.isdigit()]
    rules, variants = editor.rules, editor.variants
    if name == "add-rule" and len(rules) < MAX_RULES:
        rules.append(Rule())
    elif name == "add-variant" and len(variants) < MAX_VARIANTS:
        variants.append(Variant())
    elif len(at) == 1 and name == "remove-variant" and at[0] < len(variants):
        del variants[at[0]]
    elif len(at) == 1 and at[0] < len(rules):
        i = at[0]
        if name == "remove-rule":
            del rules[i]
        elif name == "up" and i > 0:
            rules[i - 1], rules[i] = rules[i], rules[i - 1]
        elif name == "down" and i + 1 < len(rules):
            rules[i + 1], rules[i] = rules[i], rules[i + 1]
        elif name == "add-condition" and len(rules[i].conditions) < MAX_CONDITIONS:
            rules[i].conditions.append(Condition())
    elif len(at) == 2 and name == "remove-condition" and at[0] < len(rules):
        conditions = rules[at[0]].conditions
        if at[1] < len(conditions):
            del conditions[at[1]]
    return editor


def _values(raw: str) -> list[Any] | None:
    """A condition's values: a JSON array, or comma-separated values each typed as for a flag."""
    text = raw.strip()
    if not text:
        return []
    if text.startswith("["):
        try:
            parsed = json.loads(text)
        except ValueError:
            return None
        return parsed if isinstance(parsed, list) else None
    return [_value(part) for part in text.split(",")]


def _condition_problem(op: str, values: list[Any]) -> Message | None:
    if op == "exists":
        if values and (len(values) != 1 or not isinstance(values[0], bool)):
            return msg("exists takes no values, or true, or false.")
        return None
    if not values:
        return msg("%(op)s needs at least one value.", op=op)
    if op in SINGLE_VALUE_OPERATORS and len(values) != 1:
        return msg("%(op)s takes exactly one value.", op=op)
    if op in STRING_OPERATORS and not all(isinstance(v, str) for v in values):
        return msg("%(op)s compares text only.", op=op)
    if op in NUMBER_OPERATORS and (isinstance(values[0], bool) or not isinstance(values[0], int | float)):
        return msg("%(op)s compares numbers only.", op=op)
    if op in ("before", "after") and not (isinstance(values[0], str) and RFC3339.match(values[0])):
        return msg("%(op)s needs a time such as 2026-01-31T12:00:00Z.", op=op)
    return None


def definition_from_editor(editor: Editor) -> tuple[dict[str, Any], EditorErrors]:
    """The definition's editable fields, and every problem found, keyed as the service keys them."""
    errors: EditorErrors = {}
    doc: dict[str, Any] = {"description": editor.description.strip(), "default": _value(editor.default or "false")}
    if len(doc["description"]) > 2000:
        errors["description"] = msg("Description: at most 2,000 characters.")
    if editor.allow_overrides not in ("none", "tenant", "user"):
        errors["allow_overrides"] = msg("Overrides: none, tenant or user.")
    doc["allow_overrides"] = editor.allow_overrides
    if editor.off.strip():
        doc["off"] = _value(editor.off)
    variants = []
    total, names = 0, set()
    for i, row in enumerate(editor.variants):
        name, weight = row.name.strip(), row.weight.strip()
        if not name and not weight:
            continue  # an empty row the person added and left
        if not VARIANT_PATTERN.match(name):
            errors[f"variants.{i}.name"] = msg("Name: letters, digits, '.', '_' and '-', up to 64.")
        elif name in names:
            errors[f"variants.{i}.name"] = msg("Another variant has this name.")
        names.add(name)
        if not weight.isdigit() or int(weight) > 100:
            errors[f"variants.{i}.weight"] = msg("Weight: a whole number from 0 to 100.")
        else:
            total += int(weight)
        variants.append({"name": name, "weight": int(weight) if weight.isdigit() else 0})
    if variants and total != 100 and not any(k.startswith("variants.") for k in errors):
        errors["variants"] = msg("The variants' weights must add up to 100, not %(total)s.", total=total)
    doc["variants"] = variants
    rules = []
    for i, row in enumerate(editor.rules):
        conditions = []
        for j, cond in enumerate(row.conditions):
            where = f"rules.{i}.conditions.{j}"
            attribute = cond.attribute.strip()
            if not _ATTRIBUTE.match(attribute):
                errors[f"{where}.attribute"] = msg("Attribute: a context key such as plan or tenant.plan.")
            if cond.op not in OPS:
                errors[f"{where}.op"] = msg("Operator: one of %(choices)s.", choices=", ".join(OPS))
            values = _values(cond.values)
            if values is None:
                errors[f"{where}.values"] = msg('Values: comma-separated, or a JSON array such as ["a,b", 3].')
                values = []
            elif cond.op in OPS and (problem := _condition_problem(cond.op, values)) is not None:
                errors[f"{where}.values"] = problem
            conditions.append({"attribute": attribute, "op": cond.op, "values": values})
        if not row.serve.strip():
            errors[f"rules.{i}.serve"] = msg("Serve: the value this rule serves.")
        rules.append({"conditions": conditions, "serve": _value(row.serve)})
    doc["rules"] = rules
    return doc, errors


def service_errors(problem_errors: list[Mapping[str, Any]] | None) -> EditorErrors:
    """A 422's ``errors`` by field, in the service's words (already in the person's language)."""
    found: EditorErrors = {}
    for entry in problem_errors or ():
        name = str(entry.get("field", ""))
        found.setdefault(name, str(entry.get("message", "")))
    return found


#: What a scheduled change may set, as the schedule form offers it.
SCHEDULE_CHANGES = ("enable", "disable", "rollout", "no-rollout")
STICKINESS = ("user_id", "tenant_id", "session_id", "ip")


def schedule_from_form(form: Mapping[str, str], now: datetime | None = None) -> tuple[dict[str, Any], EditorErrors]:
    """``{"at", "changes"}`` from the schedule form; ``at`` without a zone is UTC."""
    errors: EditorErrors = {}
    raw = form.get("at", "").strip()
    at = ""
    if not RFC3339.match(raw):
        errors["at"] = msg("When: a date and time in UTC, such as 2026-01-31T12:00.")
    else:
        text = raw.upper().replace(" ", "T").replace("Z", "+00:00")
        if not re.search(r"[+-]\d{2}:\d{2}$", text):
            text += "+00:00"
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            errors["at"] = msg("When: a date and time in UTC, such as 2026-01-31T12:00.")
        else:
            current = now or datetime.now(UTC)
            if moment <= current:
                errors["at"] = msg("When: a time in the future.")
            elif moment > current + timedelta(days=366):
                errors["at"] = msg("When: at most 366 days ahead.")
            at = moment.astimezone(UTC).isoformat().replace("+00:00", "Z")
    change = form.get("change", "")
    changes: dict[str, Any] = {}
    if change == "enable":
        changes["enabled"] = True
    elif change == "disable":
        changes["enabled"] = False
    elif change == "no-rollout":
        changes["rollout"] = None
    elif change == "rollout":
        stickiness = form.get("stickiness") or "user_id"
        try:
            percentage = float(form.get("percentage", "").strip())
        except ValueError:
            percentage = -1.0
        if not 0 <= percentage <= 100:
            errors["changes.rollout.percentage"] = msg("Rollout: a percentage from 0 to 100.")
        if stickiness not in STICKINESS:
            errors["changes.rollout.stickiness"] = msg("Stickiness: one of %(choices)s.", choices=", ".join(STICKINESS))
        number: float | int = int(percentage) if percentage.is_integer() else percentage
        changes["rollout"] = {"percentage": number, "stickiness": stickiness}
    else:
        errors["changes"] = msg("Change: enable, kill, set or remove the rollout.")
    return {"at": at, "changes": changes}, errors
