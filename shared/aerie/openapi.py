"""The OpenAPI 3.1 document, generated from the ``@endpoint`` declarations the code runs on.

Nothing here is written by hand per route: paths come from the route table, parameters and
bodies from the Cerberus schemas the middleware validates with, and error responses from
what the middleware does for a declaration (401/403 for scoped routes, 422 when something
is validated, ...). So the document cannot drift from the behaviour: change a schema and
both change.

Cerberus rules are converted to JSON Schema (2020-12, the dialect of OpenAPI 3.1) as
faithfully as JSON Schema allows: a request the document accepts is one the validator
accepts. Rules with no JSON Schema equivalent (``coerce``, most ``check_with``, ``excludes``,
dict-form ``dependencies``) are left out, which only makes the document more permissive.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from http import HTTPStatus
from typing import Any

import falcon

from aerie.endpoints import PUBLIC, Endpoint, endpoint, responders_of
from aerie.errors import PROBLEM_JSON

__all__ = ["OPENAPI_VERSION", "OpenAPIResource", "build_openapi", "object_schema", "rule_schema"]

OPENAPI_VERSION = "3.1.0"
JSON = "application/json"
JSON_UTF8 = "application/json; charset=utf-8"
PROBLEM_REF = {"$ref": "#/components/schemas/Problem"}
BEARER = "bearerAuth"

#: Cerberus type name -> (JSON Schema type, extra keywords).
_TYPES: Mapping[str, tuple[str, Mapping[str, Any]]] = {
    "string": ("string", {}),
    "integer": ("integer", {}),
    "boolean": ("boolean", {}),
    "number": ("number", {}),
    "float": ("number", {}),
    "dict": ("object", {}),
    "list": ("array", {}),
    "set": ("array", {"uniqueItems": True}),
    "rfc3339": ("string", {"format": "date-time"}),
    "datetime": ("string", {"format": "date-time"}),
    "date": ("string", {"format": "date"}),
}
#: ``check_with`` names of ``aerie.validation.Validator`` that are JSON Schema formats.
_FORMAT_CHECKS: Mapping[str, str] = {"rfc3339": "date-time"}
#: Which JSON Schema keywords Cerberus' ``minlength``/``maxlength``/``empty`` become, per type:
#: Cerberus applies them to anything sized, JSON Schema has one keyword per type.
_LENGTH_KEYWORDS: Mapping[str, tuple[str, str]] = {
    "string": ("minLength", "maxLength"),
    "array": ("minItems", "maxItems"),
    "object": ("minProperties", "maxProperties"),
}
_COMBINATORS = {"anyof": "anyOf", "oneof": "oneOf", "allof": "allOf"}
_COMBINATOR_KEY = re.compile(r"^(anyof|oneof|allof|noneof)(?:_(\w+))?$")
#: ``{name}`` or ``{name:converter(args)}`` in a Falcon path template.
_PATH_FIELD = re.compile(r"\{(\w+)(?::(\w+)(?:\([^)]*\))?)?\}")
_CONVERTER_SCHEMAS: Mapping[str, Mapping[str, Any]] = {
    "int": {"type": "integer"},
    "float": {"type": "number"},
    "uuid": {"type": "string", "format": "uuid"},
    "dt": {"type": "string"},
    "path": {"type": "string"},
}
_VERSION_SEGMENT = re.compile(r"^v\d+$")

PROBLEM_SCHEMA: Mapping[str, Any] = {
    "type": "object",
    "description": "An RFC 9457 problem document; `code` is the stable, machine-readable part.",
    "required": ["type", "title", "status", "detail", "code"],
    "properties": {
        "type": {"type": "string", "format": "uri", "examples": ["urn:aerie:problem:not_found"]},
        "title": {"type": "string"},
        "status": {"type": "integer", "minimum": 100, "maximum": 599},
        "detail": {"type": "string"},
        "code": {"type": "string", "examples": ["validation_error"]},
        "request_id": {"type": ["string", "null"]},
        "errors": {
            "type": "array",
            "description": "One entry per invalid field (422 only); nested fields are dotted.",
            "items": {
                "type": "object",
                "required": ["field", "message"],
                "properties": {"field": {"type": "string"}, "message": {"type": "string"}},
            },
        },
    },
}

#: The errors the middleware itself answers, with what each means for the caller.
_STANDARD_ERRORS: Mapping[int, str] = {
    400: "The body is not a JSON object, or a header is malformed",
    401: "No token, or the token is invalid, expired or revoked",
    403: "The token lacks the scope, or the route needs a tenant-bound token",
    404: "No such resource",
    409: "An Idempotency-Key was reused with a different request, or is still in flight",
    412: "If-Match names a version that is no longer current",
    413: "The body is larger than the service accepts",
    415: "The body is not application/json",
    422: "The body or query has invalid fields; `errors` lists each one",
}


# --- Cerberus -> JSON Schema -------------------------------------------------------------


def object_schema(fields: Mapping[str, Any], *, strict: bool = True) -> dict[str, Any]:
    """A JSON object whose properties are the Cerberus ``fields``.

    ``strict`` mirrors how the validator treats input (unknown fields rejected, ``required``
    enforced); response schemas are descriptive only, so they are not strict: a response
    may carry fields the declaration does not list.
    """
    schema: dict[str, Any] = {"type": "object", "properties": {}}
    required: list[str] = []
    dependent: dict[str, list[str]] = {}
    for name, rule in fields.items():
        prop = rule_schema(rule, strict=strict)
        if strict and "default" in rule and not rule.get("nullable"):
            # Cerberus replaces a null with the default, so null is accepted (and means it).
            prop = _nullable(prop)
        schema["properties"][name] = prop
        # A default fills the field in before ``required`` is checked, so it is never missing.
        if strict and rule.get("required") and "default" not in rule:
            required.append(name)
        deps = rule.get("dependencies")
        if strict and isinstance(deps, str | list | tuple):
            dependent[name] = [deps] if isinstance(deps, str) else list(deps)
    if required:
        schema["required"] = required
    if dependent:
        schema["dependentRequired"] = dependent
    if strict:
        schema["additionalProperties"] = False
    return schema


def rule_schema(rule: Mapping[str, Any], *, strict: bool = True) -> dict[str, Any]:
    """The JSON Schema of one Cerberus field rule set (``{"type": ..., ...}``)."""
    schema = _base_schema(rule, strict=strict)
    if rule.get("nullable"):
        return _nullable(schema)
    if strict and "type" not in schema and not _has_combinator(rule):
        # Cerberus refuses None unless ``nullable``, whatever the type.
        _add_not(schema, {"type": "null"})
    return schema


def _add_not(schema: dict[str, Any], excluded: dict[str, Any]) -> None:
    if "not" in schema:
        schema.setdefault("allOf", []).append({"not": excluded})
    else:
        schema["not"] = excluded


def _base_schema(rule: Mapping[str, Any], *, strict: bool) -> dict[str, Any]:
    """Everything about a rule set except what ``nullable`` changes."""
    schema: dict[str, Any] = {}
    json_types = _apply_type(schema, rule)
    _apply_structure(schema, rule, json_types, strict=strict)
    _apply_lengths(schema, rule, json_types)
    _apply_values(schema, rule, json_types)
    _apply_combinators(schema, rule, strict=strict)
    _apply_meta(schema, rule)
    return schema


def _cerberus_types(rule: Mapping[str, Any]) -> list[str]:
    declared = rule.get("type")
    if declared is None:
        return []
    return [declared] if isinstance(declared, str) else list(declared)


def _apply_type(schema: dict[str, Any], rule: Mapping[str, Any]) -> list[str]:
    """Set ``type`` (and ``format``); return the JSON types, empty when unconstrained."""
    json_types: list[str] = []
    for name in _cerberus_types(rule):
        known = _TYPES.get(name)
        if known is None:
            # A type JSON cannot express: leave it unconstrained rather than refuse to start.
            schema.setdefault("x-cerberus-type", name)
            return []
        json_type, extra = known
        if json_type not in json_types:
            json_types.append(json_type)
        schema.update(extra)
    if json_types:
        schema["type"] = json_types[0] if len(json_types) == 1 else json_types
    return json_types


def _apply_structure(schema: dict[str, Any], rule: Mapping[str, Any], json_types: list[str], *, strict: bool) -> None:
    """Nested ``schema``/``items``/``keysrules``/``valuesrules`` of dicts and lists."""
    nested = rule.get("schema")
    is_list = "array" in json_types
    if nested is not None:
        if is_list:
            schema["items"] = rule_schema(nested, strict=strict)
        else:
            inner_strict = strict and not rule.get("allow_unknown")
            inner = object_schema(nested, strict=inner_strict)
            inner.pop("type")
            schema.update(inner)
            unknown = rule.get("allow_unknown")
            if strict and isinstance(unknown, Mapping):
                schema["additionalProperties"] = rule_schema(unknown, strict=strict)
    items = rule.get("items")
    if items is not None:
        schema["prefixItems"] = [rule_schema(item, strict=strict) for item in items]
        schema["items"] = False
        schema["minItems"] = schema["maxItems"] = len(items)
    keys = rule.get("keysrules", rule.get("keyschema"))
    if keys is not None:
        schema["propertyNames"] = _base_schema(keys, strict=strict)
    values = rule.get("valuesrules", rule.get("valueschema"))
    if values is not None:
        schema["additionalProperties"] = rule_schema(values, strict=strict)


def _length_keywords(json_types: list[str]) -> list[tuple[str, str]]:
    """Length keywords for the rule's types; all of them when the type is open."""
    if not json_types:
        return list(_LENGTH_KEYWORDS.values())
    return [_LENGTH_KEYWORDS[t] for t in json_types if t in _LENGTH_KEYWORDS]


def _apply_lengths(schema: dict[str, Any], rule: Mapping[str, Any], json_types: list[str]) -> None:
    minimum = rule.get("minlength")
    if rule.get("empty") is False:
        minimum = max(minimum or 0, 1)
    maximum = rule.get("maxlength")
    for low, high in _length_keywords(json_types):
        if minimum is not None:
            schema[low] = max(minimum, schema.get(low, 0))
        if maximum is not None:
            schema[high] = min(maximum, schema.get(high, maximum))


def _apply_values(schema: dict[str, Any], rule: Mapping[str, Any], json_types: list[str]) -> None:
    """``min``/``max``, ``allowed``/``forbidden``, ``regex``, ``default``, ``readonly``, formats."""
    if "min" in rule:
        schema["minimum"] = rule["min"]
    if "max" in rule:
        schema["maximum"] = rule["max"]
    if "regex" in rule:
        schema["pattern"] = cerberus_pattern(rule["regex"])
    if "allowed" in rule:
        # On a list, Cerberus checks each member against ``allowed``.
        on_members = json_types == ["array"] and isinstance(schema.get("items", {}), dict)
        target = schema.setdefault("items", {}) if on_members else schema
        target["enum"] = list(rule["allowed"])
    if "forbidden" in rule:
        _add_not(schema, {"enum": list(rule["forbidden"])})
    if "default" in rule and _is_json_value(rule["default"]):
        schema["default"] = rule["default"]
    if rule.get("readonly"):
        schema["readOnly"] = True
    if rule.get("check_with") in _FORMAT_CHECKS:
        schema["format"] = _FORMAT_CHECKS[rule["check_with"]]


def _apply_combinators(schema: dict[str, Any], rule: Mapping[str, Any], *, strict: bool) -> None:
    """``anyof``/``oneof``/``allof``/``noneof`` and their ``*of_<rule>`` shorthands."""
    for key, value in rule.items():
        match = _COMBINATOR_KEY.match(key)
        if match is None:
            continue
        kind, shorthand = match.groups()
        variants = [{shorthand: v} for v in value] if shorthand else list(value)
        converted = [_base_schema(v, strict=strict) for v in variants]
        if kind == "noneof":
            schema.setdefault("allOf", []).extend({"not": c} for c in converted)
        else:
            schema.setdefault("allOf", []).append({_COMBINATORS[kind]: converted})
    parts = schema.get("allOf", [])
    if len(parts) == 1 and parts[0].keys().isdisjoint(schema):
        schema.update(schema.pop("allOf")[0])


def _apply_meta(schema: dict[str, Any], rule: Mapping[str, Any]) -> None:
    """Cerberus' free-form ``meta`` carries a field's description and examples."""
    meta = rule.get("meta")
    if not isinstance(meta, Mapping):
        return
    if "description" in meta:
        schema["description"] = str(meta["description"])
    if "example" in meta:
        schema["examples"] = [meta["example"]]
    if "examples" in meta:
        schema["examples"] = list(meta["examples"])


def _has_combinator(rule: Mapping[str, Any]) -> bool:
    return any(_COMBINATOR_KEY.match(key) for key in rule)


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    """Admit null too: Cerberus skips every other rule for None when ``nullable``."""
    if any(k in schema for k in ("anyOf", "oneOf", "allOf")):
        return {"anyOf": [schema, {"type": "null"}]}
    if "type" in schema:
        types = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        schema["type"] = [*types, "null"]
    if "enum" in schema:
        schema["enum"] = [*schema["enum"], None]
    return schema


def cerberus_pattern(regex: str) -> str:
    """A JSON Schema ``pattern`` matching what Cerberus' ``regex`` matches.

    Cerberus anchors at the start (``re.match``) and appends ``$`` unless present, while
    JSON Schema searches anywhere; anchor both ends unless the pattern already is.
    """
    anchored = regex if regex.endswith("$") else regex + "$"
    if anchored.startswith("^") and "|" not in anchored:
        return anchored
    return f"^(?:{anchored})"


def _is_json_value(value: object) -> bool:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return False
    return True


# --- operations --------------------------------------------------------------------------


def openapi_path(template: str) -> tuple[str, list[dict[str, Any]]]:
    """A Falcon path template as an OpenAPI path, with its required path parameters.

    ``{name}`` is already OpenAPI syntax; ``{name:int}`` loses its converter, which becomes
    the parameter's type instead.
    """
    parameters: list[dict[str, Any]] = []

    def replace(match: re.Match[str]) -> str:
        name, converter = match.group(1), match.group(2)
        schema = dict(_CONVERTER_SCHEMAS.get(converter or "", {"type": "string"}))
        parameters.append({"name": name, "in": "path", "required": True, "schema": schema})
        return "{" + name + "}"

    return _PATH_FIELD.sub(replace, template), parameters


def tag_of(path: str) -> str:
    """The first segment after the API version (``/v1/tenants/...`` -> ``tenants``)."""
    segments = [s for s in path.strip("/").split("/") if s]
    if len(segments) >= 2 and _VERSION_SEGMENT.match(segments[0]) and not segments[1].startswith("{"):
        return segments[1]
    return "system"


def operation_id(method: str, path: str) -> str:
    """``get /v1/tenants/{tenant_id}`` -> ``get_v1_tenants_tenant_id``."""
    slug = re.sub(r"[^A-Za-z0-9]+", "_", path).strip("_") or "root"
    return f"{method}_{slug}"


def _description(spec: Endpoint) -> str | None:
    parts = [spec.description] if spec.description else []
    if spec.scopes:
        parts.append("Scopes: any of " + ", ".join(spec.scopes) + ".")
    elif spec.scopes is not None:
        parts.append("Any valid token, whatever its scopes.")
    if spec.tenant:
        parts.append("Acts on the caller's tenant: a platform token gets 403 `tenant_required`.")
    return "\n\n".join(parts) or None


def _path_parameters(found: list[dict[str, Any]], declared: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    """The template's path parameters, each with its declared rules when it has some."""
    parameters = []
    for parameter in found:
        rule = (declared or {}).get(parameter["name"])
        parameters.append(parameter if rule is None else {**parameter, "schema": rule_schema(rule)})
    return parameters


def _query_parameters(query: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    parameters = []
    for name, rule in (query or {}).items():
        schema = rule_schema(rule)
        parameter: dict[str, Any] = {"name": name, "in": "query", "required": bool(rule.get("required"))}
        if "description" in schema:
            parameter["description"] = schema.pop("description")
        parameter["schema"] = schema
        parameters.append(parameter)
    return parameters


def _header_parameters(method: str, spec: Endpoint) -> list[dict[str, Any]]:
    headers = []
    if spec.idempotent:
        headers.append(
            {
                "name": "Idempotency-Key",
                "in": "header",
                "required": False,
                "description": "Replays this request's first response for 24 hours; reuse with another request is 409.",
                "schema": {"type": "string", "pattern": "^[!-~]{1,255}$"},
            }
        )
    if method in ("patch", "put"):
        headers.append(
            {
                "name": "If-Match",
                "in": "header",
                "required": False,
                "description": "The ETag read earlier; a stale one is 412. Absent or `*`: any version.",
                "schema": {"type": "string"},
            }
        )
    return headers


def _request_body(spec: Endpoint) -> dict[str, Any] | None:
    if spec.body is None:
        return None
    schema = object_schema(spec.body)
    # Any other route reads its own body, of the media type it names (``raw``: any).
    media = {"json": JSON, "raw": "*/*"}.get(spec.media, spec.media)
    return {"required": bool(schema.get("required")), "content": {media: {"schema": schema}}}


def _problem(description: str) -> dict[str, Any]:
    return {"description": description, "content": {PROBLEM_JSON: {"schema": dict(PROBLEM_REF)}}}


def _error_statuses(method: str, spec: Endpoint, has_path_params: bool) -> set[int]:
    """The errors the middleware answers for this declaration, whatever the resource does."""
    statuses: set[int] = set()
    json_body = spec.body is not None and spec.media == "json"
    if spec.scopes is not None:
        statuses |= {401, 403} if spec.scopes or spec.tenant else {401}
    if json_body or spec.query is not None or spec.path is not None:
        statuses.add(422)
    if json_body:
        statuses |= {400, 413, 415}
    if has_path_params:
        statuses.add(404)
    if spec.idempotent:
        statuses |= {400, 409}
    if method in ("patch", "put"):
        statuses.add(412)
    return statuses


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return f"Status {status}"


def _responses(method: str, spec: Endpoint, has_path_params: bool) -> dict[str, Any]:
    """The declared success, the middleware's errors, then the declaration's extras.

    Extra 4xx entries of JSON routes are problem documents too, and an extra 2xx answers the
    declared body; a 5xx extra or one of a route reading its own body (the OAuth token
    endpoint answers RFC 6749 errors) is described only.
    """
    success: dict[str, Any] = {"description": _phrase(spec.status)}
    if spec.response is not None and spec.status != 204:
        success["content"] = {spec.response_media: {"schema": object_schema(spec.response, strict=False)}}
    elif spec.response_media != JSON and spec.status != 204:  # text of its own kind (an event stream)
        success["content"] = {spec.response_media: {"schema": {"type": "string"}}}
    responses: dict[int, dict[str, Any]] = {spec.status: success}
    for status in _error_statuses(method, spec, has_path_params):
        responses[status] = _problem(_STANDARD_ERRORS[status])
    if 404 in responses and spec.media != "json":
        # The resource answers its own 404, in the format of a route reading its own body (OFREP's JSON).
        responses[404] = {"description": _STANDARD_ERRORS[404]}
    for status, text in spec.responses.items():
        if status in responses:
            responses[status]["description"] += f"; {text}"
        elif 400 <= status < 500 and spec.media == "json":
            responses[status] = _problem(text)
        elif 200 <= status < 300 and "content" in success:  # another success, with the same body
            responses[status] = {"description": text, "content": success["content"]}
        else:
            responses[status] = {"description": text}
    return {str(status): responses[status] for status in sorted(responses)}


def _operation(method: str, path: str, path_params: list[dict[str, Any]], spec: Endpoint) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "operationId": operation_id(method, path),
        "summary": spec.summary,
        "tags": [tag_of(path)],
    }
    description = _description(spec)
    if description:
        operation["description"] = description
    parameters = [
        *_path_parameters(path_params, spec.path),
        *_query_parameters(spec.query),
        *_header_parameters(method, spec),
    ]
    if parameters:
        operation["parameters"] = parameters
    body = _request_body(spec)
    if body is not None:
        operation["requestBody"] = body
    operation["responses"] = _responses(method, spec, bool(path_params))
    operation["security"] = [] if spec.scopes is None else [{BEARER: []}]
    return operation


def _unique_operation_ids(paths: Mapping[str, Mapping[str, dict[str, Any]]]) -> None:
    """Two paths may slug alike (``/a-b``, ``/a_b``); number the later ones."""
    seen: set[str] = set()
    for item in paths.values():
        for operation in item.values():
            base = candidate = operation["operationId"]
            n = 2
            while candidate in seen:
                candidate, n = f"{base}_{n}", n + 1
            operation["operationId"] = candidate
            seen.add(candidate)


def _collect_paths(routes: Iterable[tuple[str, object]]) -> dict[str, dict[str, Any]]:
    paths: dict[str, dict[str, Any]] = {}
    for template, resource in routes:
        path, path_params = openapi_path(template)
        item = paths.setdefault(path, {})
        for method, spec in responders_of(resource).items():
            if spec is None:
                raise TypeError(f"{type(resource).__name__}.on_{method} ({template}) has no @endpoint declaration")
            item[method] = _operation(method, path, path_params, spec)
    return {path: paths[path] for path in sorted(paths) if paths[path]}


def build_openapi(
    *, title: str, version: str, description: str, routes: Sequence[tuple[str, object]]
) -> dict[str, Any]:
    """The OpenAPI 3.1 document of ``routes`` (path template, resource), paths sorted."""
    paths = _collect_paths(routes)
    _unique_operation_ids(paths)
    tags = sorted({op["tags"][0] for item in paths.values() for op in item.values()})
    info: dict[str, Any] = {"title": title, "version": version}
    if description:
        info["description"] = description
    return {
        "openapi": OPENAPI_VERSION,
        "info": info,
        "tags": [{"name": tag} for tag in tags],
        "paths": paths,
        "components": {
            "schemas": {"Problem": dict(PROBLEM_SCHEMA)},
            "securitySchemes": {
                BEARER: {
                    "type": "http",
                    "scheme": "bearer",
                    "bearerFormat": "JWT",
                    "description": "An access token from POST /v1/oauth/token (client credentials).",
                }
            },
        },
    }


class OpenAPIResource:
    """Serves the document; serialized once, since it cannot change while the app runs."""

    def __init__(self, document: Mapping[str, Any]) -> None:
        self._data = json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode()

    @endpoint("OpenAPI document", scopes=PUBLIC, response={"openapi": {"type": "string"}})
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.content_type = JSON_UTF8
        resp.data = self._data
