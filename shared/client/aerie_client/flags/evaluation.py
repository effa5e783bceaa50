"""The one flag evaluation that the flags service and the Python client both run.

The server answers ``POST /v1/evaluate`` with it and the client evaluates its tenant's
snapshot locally with it, so the two cannot disagree: there is no second implementation to
drift. The order and the bucket formula are docs/api.md's:

    disabled -> user override -> tenant override -> first matching rule -> rollout -> default

* ``enabled: false`` serves ``off`` (reason ``DISABLED``): the kill switch beats everything,
  overrides included. Without ``off``, a boolean flag serves ``false`` (so killing a flag
  whose default is ``true`` turns the feature off) and any other flag its ``default``.
* A user override counts only when ``allow_overrides`` is ``"user"``, a tenant override when
  it is ``"tenant"`` or ``"user"`` (reason ``TARGETING_MATCH``, rule ``override:user`` /
  ``override:tenant``). Overrides are passed in, not looked up here: where they live (Redis on
  the server, the snapshot in the client) is the caller's business.
* The first rule whose conditions all match serves its ``serve`` (rule ``rules[<index>]``).
* Rollout: the stickiness attribute, stringified, is hashed with :func:`bucket`; the user is in
  when ``bucket < percentage * 100`` (reason ``SPLIT``, rule ``rollout``). Because the bucket
  does not depend on the percentage, raising it only ever moves users in. With ``variants``
  the user gets the variant that ``bucket(f"{key}:variant", value)`` falls in over the
  cumulative weights (weight ``w`` covers ``w * 100`` buckets, in list order); a different
  salt than the rollout's, so who is in and which variant they see are independent. Without
  variants a rollout serves ``True``.
* Otherwise ``default`` (reason ``DEFAULT``).

Every evaluation carries ``revision``: the flag document's ``version`` that produced it (the
audit entry of that change names the same version), or None for a document without one.

:func:`compile_flag` does all parsing once; :meth:`CompiledFlag.evaluate` then does a few
dict lookups, the predicates of :mod:`aerie_client.flags.operators` and at most two SHA-256 hashes.
It never raises: a malformed flag or context gives the flag's default with reason ``ERROR``.
"""

from __future__ import annotations

import logging
import math
import struct
from bisect import bisect_right
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from hashlib import sha256
from typing import Any, Final

import orjson

from aerie_client.flags.operators import Predicate, compile_condition

__all__ = [
    "ABSENT",
    "DEFAULT",
    "DISABLED",
    "ERROR",
    "REASONS",
    "SPLIT",
    "STALE",
    "STICKINESS",
    "TARGETING_MATCH",
    "CompiledFlag",
    "Evaluation",
    "bucket",
    "compile_flag",
    "evaluate",
    "off_value",
]

log = logging.getLogger("aerie_client.flags")

DISABLED: Final = "DISABLED"
TARGETING_MATCH: Final = "TARGETING_MATCH"
SPLIT: Final = "SPLIT"
DEFAULT: Final = "DEFAULT"
ERROR: Final = "ERROR"
#: Client only: the last known state, served while the flags service cannot be reached.
STALE: Final = "STALE"
REASONS: Final = frozenset({DISABLED, TARGETING_MATCH, SPLIT, DEFAULT, ERROR, STALE})

STICKINESS: Final = frozenset({"user_id", "tenant_id", "session_id", "ip"})
BUCKETS: Final = 10_000

RULE_USER_OVERRIDE: Final = "override:user"
RULE_TENANT_OVERRIDE: Final = "override:tenant"
RULE_ROLLOUT: Final = "rollout"


class _Absent:
    """The type of :data:`ABSENT`: "no override", distinct from every JSON value (null too)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "ABSENT"

    def __bool__(self) -> bool:
        return False

    def __reduce__(self) -> str:
        return "ABSENT"  # pickles as the module singleton, so ``is ABSENT`` survives a copy


ABSENT: Final = _Absent()


@dataclass(frozen=True, slots=True)
class Evaluation:
    """One flag's answer: what to serve, why (``reason``, the ``rule`` that decided), and the
    flag's ``revision`` that decided it."""

    value: Any
    variant: str | None
    reason: str
    rule: str | None
    revision: int | None = None
    _fragment: orjson.Fragment | None = field(default=None, init=False, repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        """The per-key object of ``POST /v1/evaluate``."""
        return {
            "value": self.value,
            "variant": self.variant,
            "reason": self.reason,
            "rule": self.rule,
            "revision": self.revision,
        }

    def to_fragment(self) -> orjson.Fragment:
        """:meth:`to_dict` as JSON that ``orjson.dumps`` embeds as it is, encoded once.

        Most evaluations are made once, when their flag is compiled (each rule's, the
        default's, each variant's), and then answer every request: the server writes them
        without building and encoding ten dicts per request. Raises ``TypeError`` for a value
        JSON cannot carry (never one of a flag document's).
        """
        fragment = self._fragment
        if fragment is None:
            fragment = orjson.Fragment(orjson.dumps(self.to_dict(), option=orjson.OPT_NON_STR_KEYS))
            object.__setattr__(self, "_fragment", fragment)  # a cache, not state: frozen stays true
        return fragment

    def __reduce__(self) -> tuple[type[Evaluation], tuple[Any, str | None, str, str | None, int | None]]:
        # Pickles and copies without the cached fragment, which orjson cannot pickle.
        return (Evaluation, (self.value, self.variant, self.reason, self.rule, self.revision))


def bucket(key: str, value: str) -> int:
    """The rollout bucket (0..9999) of ``value`` for flag ``key``, exactly as docs/api.md fixes it."""
    return int.from_bytes(sha256(f"{key}:{value}".encode()).digest()[:4], "big") % BUCKETS


_FIRST_FOUR_BYTES = struct.Struct(">I").unpack_from


def _bucket_after(prefix: Any, value: bytes) -> int:
    """:func:`bucket` from a hash already fed ``f"{key}:"``: the flag's own, copied per call.

    The same digest as hashing the whole string, at about two thirds of the cost; a flag
    compiles its prefixes once. ``prefix`` is a ``hashlib`` object (its type is private).
    """
    digest = prefix.copy()
    digest.update(value)
    return _FIRST_FOUR_BYTES(digest.digest())[0] % BUCKETS


def _sticky(value: Any) -> str | None:
    """The stickiness value as hashed, or None when there is none to hash.

    Strings are used as they are and integers (not bools) as their decimal digits; an empty
    string, ``None`` and any other type count as "no value", since hashing ``str()`` of a
    float, an object or ``True`` would bucket users by Python's repr, which no other client
    could reproduce.
    """
    kind = type(value)
    if kind is str:
        return value or None
    if kind is int:
        return str(value)
    return None


def _is_number(value: Any) -> bool:
    return type(value) in (int, float)


class CompiledFlag:
    """A flag document, parsed once, ready to be evaluated many times."""

    __slots__ = (
        "_allow_tenant",
        "_allow_user",
        "_default_eval",
        "_disabled_eval",
        "_enabled",
        "_rollout_eval",
        "_rollout_prefix",
        "_rollout_threshold",
        "_rules",
        "_stickiness",
        "_variant_bounds",
        "_variant_evals",
        "_variant_names",
        "_variant_prefix",
        "default",
        "doc",
        "key",
        "off",
        "revision",
    )

    def __init__(self, doc: Mapping[str, Any]) -> None:
        self.doc = doc
        key = doc.get("key")
        self.key: str = key if type(key) is str else ""
        self.default: Any = doc.get("default")
        self.off: Any = off_value(doc)
        version = doc.get("version")
        self.revision: int | None = version if type(version) is int else None
        self._enabled = doc.get("enabled", True) is not False
        allow = doc.get("allow_overrides", "none")
        self._allow_user = allow == "user"
        self._allow_tenant = allow in ("tenant", "user")

        self._variant_names, self._variant_bounds, self._variant_evals = _compile_variants(
            doc.get("variants"), self.revision
        )
        self._rollout_prefix = sha256(f"{self.key}:".encode())
        self._variant_prefix = sha256(f"{self.key}:variant:".encode())
        self._disabled_eval = self._served(self.off, DISABLED, None)
        self._default_eval = self._served(self.default, DEFAULT, None)
        self._rules: tuple[tuple[tuple[Predicate, ...], Evaluation], ...] = tuple(
            _compile_rules(doc.get("rules"), self._served)
        )

        self._stickiness: str | None = None
        self._rollout_threshold = 0.0
        rollout = doc.get("rollout")
        if isinstance(rollout, Mapping):
            percentage = rollout.get("percentage")
            stickiness = rollout.get("stickiness", "user_id")
            usable = _is_number(percentage) and not math.isnan(percentage)
            if usable and type(stickiness) is str and stickiness in STICKINESS:
                self._stickiness = stickiness
                self._rollout_threshold = percentage * 100
        self._rollout_eval = Evaluation(True, None, SPLIT, RULE_ROLLOUT, self.revision)

    def _served(self, value: Any, reason: str, rule: str | None) -> Evaluation:
        """An evaluation serving ``value``, naming the variant when the value is one."""
        variant = value if type(value) is str and value in self._variant_names else None
        return Evaluation(value, variant, reason, rule, self.revision)

    def evaluate(
        self,
        context: Mapping[str, Any],
        *,
        tenant_override: Any = ABSENT,
        user_override: Any = ABSENT,
    ) -> Evaluation:
        """This flag's evaluation for ``context``; never raises (``ERROR`` instead)."""
        if type(context) is not dict and not isinstance(context, Mapping):
            return error_evaluation(self.default, self.revision)
        try:
            if not self._enabled:
                return self._disabled_eval
            if user_override is not ABSENT and self._allow_user:
                return self._served(user_override, TARGETING_MATCH, RULE_USER_OVERRIDE)
            if tenant_override is not ABSENT and self._allow_tenant:
                return self._served(tenant_override, TARGETING_MATCH, RULE_TENANT_OVERRIDE)
            for predicates, served in self._rules:
                for predicate in predicates:
                    if not predicate(context):
                        break
                else:
                    return served
            stickiness = self._stickiness
            if stickiness is None:
                return self._default_eval
            value = _sticky(context.get(stickiness))
            if value is None:
                return self._default_eval
            raw = value.encode()
            if _bucket_after(self._rollout_prefix, raw) >= self._rollout_threshold:
                return self._default_eval
            if not self._variant_names:
                return self._rollout_eval
            index = bisect_right(self._variant_bounds, _bucket_after(self._variant_prefix, raw))
            if index >= len(self._variant_evals):
                return self._default_eval  # weights summing to less than 100 leave a gap
            return self._variant_evals[index]
        except Exception:
            # Unreachable for a dict context; kept because a flag check must never take the
            # caller's request down (a context whose ``get`` raises, say).
            log.warning("flag evaluation failed", extra={"flag": self.key}, exc_info=True)
            return error_evaluation(self.default, self.revision)

    def __repr__(self) -> str:
        return f"CompiledFlag({self.key!r})"


def off_value(doc: Mapping[str, Any]) -> Any:
    """What the flag serves while ``enabled`` is false: ``off``, else false for a boolean flag,
    else its ``default``."""
    if "off" in doc:
        return doc["off"]
    default = doc.get("default")
    return False if type(default) is bool else default


def _compile_variants(
    raw: Any, revision: int | None
) -> tuple[frozenset[str], tuple[float, ...], tuple[Evaluation, ...]]:
    """Variant names, the cumulative upper bounds of their bucket ranges, and their evaluations.

    A variant that is malformed (no string name, a weight that is not a non-negative number)
    is dropped; the service validates definitions, this only keeps garbage from raising.
    """
    if not isinstance(raw, list | tuple):
        return frozenset(), (), ()
    names: list[str] = []
    bounds: list[float] = []
    total = 0.0
    for variant in raw:
        if not isinstance(variant, Mapping):
            continue
        name = variant.get("name")
        weight = variant.get("weight")
        if type(name) is not str or not _is_number(weight) or not math.isfinite(weight) or weight < 0:
            continue
        total += weight * 100
        names.append(name)
        bounds.append(total)
    # bisect_right over the upper bounds: bucket b goes to the first variant whose bound > b.
    return frozenset(names), tuple(bounds), tuple(Evaluation(n, n, SPLIT, RULE_ROLLOUT, revision) for n in names)


def _compile_rules(
    raw: Any, served: Callable[[Any, str, str | None], Evaluation]
) -> list[tuple[tuple[Predicate, ...], Evaluation]]:
    if not isinstance(raw, list | tuple):
        return []
    rules = []
    for index, rule in enumerate(raw):
        if not isinstance(rule, Mapping) or "serve" not in rule:
            continue  # keeps the index of the rules after it: rules[i] is the i-th in the document
        conditions = rule.get("conditions", [])
        if not isinstance(conditions, list | tuple):
            continue
        predicates = tuple(compile_condition(condition) for condition in conditions)
        rules.append((predicates, served(rule["serve"], TARGETING_MATCH, f"rules[{index}]")))
    return rules


def error_evaluation(default: Any, revision: int | None = None) -> Evaluation:
    """The declared default, with reason ``ERROR``: what a check gets when no answer can be had."""
    return Evaluation(default, None, ERROR, None, revision)


class _BrokenFlag(CompiledFlag):
    """What a document that cannot be compiled at all becomes: always its default, ``ERROR``."""

    __slots__ = ()

    def __init__(self, doc: Any) -> None:  # deliberately skips the parsing
        self.doc = doc
        self.key = ""
        self.default = None
        self.off = None
        self.revision = None
        if isinstance(doc, Mapping):
            key = doc.get("key")
            self.key = key if type(key) is str else ""
            self.default = doc.get("default")
            version = doc.get("version")
            self.revision = version if type(version) is int else None

    def evaluate(
        self, context: Mapping[str, Any], *, tenant_override: Any = ABSENT, user_override: Any = ABSENT
    ) -> Evaluation:
        return error_evaluation(self.default, self.revision)


def compile_flag(doc: Mapping[str, Any]) -> CompiledFlag:
    """Parse a flag document (as the API returns it) once; never raises.

    A document that is not an object, or whose parts cannot be parsed, compiles to a flag
    that always answers its ``default`` with reason ``ERROR`` and logs why once, here.
    """
    if not isinstance(doc, Mapping):
        return _BrokenFlag(doc)
    try:
        return CompiledFlag(doc)
    except Exception:
        log.warning("flag document cannot be compiled", extra={"flag": str(doc.get("key"))}, exc_info=True)
        return _BrokenFlag(doc)


def evaluate(
    doc: Mapping[str, Any],
    context: Mapping[str, Any],
    *,
    tenant_override: Any = ABSENT,
    user_override: Any = ABSENT,
) -> Evaluation:
    """Compile and evaluate in one go (tests, one-off checks); hot paths keep the compiled flag."""
    return compile_flag(doc).evaluate(context, tenant_override=tenant_override, user_override=user_override)
