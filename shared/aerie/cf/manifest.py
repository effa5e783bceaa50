"""Cloud Foundry manifests: ``((var))`` interpolation as ``cf push`` does it, then schema validation.

The SchemaStore schema wants integers where our manifests hold ``((vars))`` (``instances``),
so a manifest is only checkable after interpolation. Interpolation follows the cf CLI's
rules: a scalar that is exactly ``((name))`` takes the variable's value with its YAML type
(so ``instances: ((n))`` becomes an integer), a var inside a longer string is spliced in as
text, and any variable without a value is an error, as ``cf push`` makes it one.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import yaml

__all__ = [
    "SCHEMA_RELATIVE_PATH",
    "ManifestError",
    "interpolate",
    "load_manifest",
    "load_vars",
    "manifest_vars",
    "schema_validator",
    "validate_manifest",
]

#: Where the repository keeps its copy of the SchemaStore schema (never read from elsewhere).
SCHEMA_RELATIVE_PATH = Path("manifests") / "schema" / "cloudfoundry-application-manifest.json"

# The cf CLI's grammar for a variable name: ((name)), optionally with a path like ((a.b)).
_VAR = re.compile(r"\(\(([-/.\w!]+)\)\)")


class ManifestError(ValueError):
    """A manifest or vars file that ``cf push`` would reject; the message says where and why."""


def load_manifest(path: Path) -> dict[str, Any]:
    """The manifest at ``path`` as YAML data, uninterpolated."""
    data = _load_yaml(path)
    if not isinstance(data, dict):
        raise ManifestError(f"{path}: a manifest must be a YAML mapping")
    return data


def load_vars(paths: Iterable[Path]) -> dict[str, Any]:
    """Variables from ``--vars-file`` files; a later file overrides an earlier one, as in cf."""
    merged: dict[str, Any] = {}
    for path in paths:
        data = _load_yaml(path)
        if data is None:
            continue
        if not isinstance(data, dict):
            raise ManifestError(f"{path}: a vars file must be a YAML mapping of names to values")
        merged.update(data)
    return merged


def manifest_vars(node: Any) -> set[str]:
    """Every ``((var))`` name a manifest uses."""
    if isinstance(node, str):
        return set(_VAR.findall(node))
    if isinstance(node, Mapping):
        return set().union(*(manifest_vars(v) for v in node.values())) if node else set()
    if isinstance(node, list):
        return set().union(*(manifest_vars(v) for v in node)) if node else set()
    return set()


def interpolate(manifest: Any, variables: Mapping[str, Any]) -> Any:
    """``manifest`` with every ``((var))`` replaced; raises :class:`ManifestError` naming all missing ones."""
    missing = sorted(name for name in manifest_vars(manifest) if _lookup(variables, name) is _MISSING)
    if missing:
        raise ManifestError("no value for " + ", ".join(f"(({name}))" for name in missing))
    return _substitute(manifest, variables)


def validate_manifest(manifest: Mapping[str, Any], schema_path: Path) -> None:
    """Raise :class:`ManifestError` listing every place an interpolated manifest breaks the schema."""
    problems = sorted(schema_validator(Path(schema_path)).iter_errors(manifest), key=lambda e: list(e.absolute_path))
    if problems:
        lines = [f"{'/'.join(str(p) for p in e.absolute_path) or '<root>'}: {e.message}" for e in problems]
        raise ManifestError("; ".join(lines))


@cache
def schema_validator(schema_path: Path) -> jsonschema.protocols.Validator:
    """A validator for the schema's own draft, built once per schema file."""
    schema = json.loads(Path(schema_path).read_text(encoding="utf-8"))
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


_MISSING = object()


def _lookup(variables: Mapping[str, Any], name: str) -> Any:
    # cf accepts ((a.b)) as the key b inside the value of a; try the whole name first.
    if name in variables:
        return variables[name]
    node: Any = variables
    for part in name.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return _MISSING
        node = node[part]
    return node


def _substitute(node: Any, variables: Mapping[str, Any]) -> Any:
    if isinstance(node, str):
        whole = _VAR.fullmatch(node)
        if whole:
            return _lookup(variables, whole.group(1))
        return _VAR.sub(lambda m: _as_text(m.group(1), _lookup(variables, m.group(1))), node)
    if isinstance(node, Mapping):
        return {key: _substitute(value, variables) for key, value in node.items()}
    if isinstance(node, list):
        return [_substitute(item, variables) for item in node]
    return node


def _as_text(name: str, value: Any) -> str:
    if isinstance(value, Mapping | list):
        raise ManifestError(f"(({name})) holds a structure and cannot sit inside a string")
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _load_yaml(path: Path) -> Any:
    try:
        with Path(path).open(encoding="utf-8") as f:
            return yaml.safe_load(f)
    except OSError as exc:
        raise ManifestError(f"{path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise ManifestError(f"{path}: not valid YAML ({exc})") from None
