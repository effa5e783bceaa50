"""OpenFeature Remote Evaluation Protocol (OFREP v1): any OpenFeature SDK evaluates our flags.

``POST /ofrep/v1/evaluate/flags/{key}`` (one flag, what server-side providers call per
evaluation) and ``POST /ofrep/v1/evaluate/flags`` (every flag of the caller's tenant, what
client-side providers fetch and cache, revalidated with ``If-None-Match``). Both evaluate
with the same :class:`flags.evaluator.Evaluator` as ``POST /v1/evaluate``, so the two APIs
cannot disagree: ``targetingKey`` is the ``user_id``, every other attribute passes as it is.

Errors here are OFREP's JSON (``{"key"?, "errorCode", "errorDetails"}``), not problem
documents, because OFREP providers read ``errorCode`` to tell the SDK what went wrong; only
what the middleware answers before the request reaches us (401, 403, and 413 for a body
past the service's limit) stays problem+json, which OFREP leaves unspecified. Where the
protocol leaves a choice, this is what we chose and why:

* A body that is not JSON, not an object, or holds a field besides ``context`` is
  ``PARSE_ERROR`` (the request itself cannot be read); a ``context`` that is not an object,
  a ``targetingKey`` that is not a string, or a context past ``POST /v1/evaluate``'s limits
  is ``INVALID_CONTEXT``. No body, or one without ``context``, is an empty context: the
  Python provider sends ``{}`` when the SDK has no context. The body is read as JSON whatever
  its ``Content-Type`` says (``curl -d`` sends a form type).
* ``TARGETING_KEY_MISSING`` is never answered: a rollout with nobody to bucket serves its
  default (reason ``DEFAULT``), exactly as ``POST /v1/evaluate`` does.
* Reasons are the engine's, which are OpenFeature's names (``DEFAULT`` included: OFREP's
  description defers to OpenFeature's reason list, which every SDK parses).
* A flag whose evaluation fails (reason ``ERROR``: a definition the engine cannot compile) is
  an ``evaluationFailure`` with ``GENERAL``: 400 for one flag, since that is the status whose
  schema carries ``GENERAL`` and the key; an item of the list in bulk, so the others still work.
* A null value (a user or tenant override of null) is sent without ``value``: OFREP's
  code-default answer, the SDK serves the default written in the code.
* One flag always carries ``variant`` (null when the value is no variant): the Python provider
  reads the field unconditionally. Bulk items omit it when null, as the schema reads.
* ``metadata.revision`` is the flag's version that produced the answer (bulk: also the
  snapshot's revision for the whole set). The bulk answer's ``ETag`` is a hash of its exact
  bytes, written with sorted keys and flags, so every worker gives the same answer the same
  tag and any change to it, a new revision included, changes the tag.
"""

from __future__ import annotations

from collections.abc import Mapping
from hashlib import blake2b
from typing import Any

import falcon
import orjson

from aerie import errors
from aerie.app import JSON_UTF8, dumps_json
from aerie.auth.principal import Principal
from aerie.endpoints import endpoint
from aerie.json_input import NotStorable, NotUTF8, loads_json
from aerie.middleware import read_body
from aerie.tenancy import TenantScope
from aerie_client.flags.evaluation import ERROR, Evaluation
from flags import schemas
from flags.evaluator import Evaluator
from flags.resources.evaluation import READ, with_person
from flags.snapshot import FlagReplica, State

__all__ = ["EncodedItems", "OfrepError", "OfrepFlag", "OfrepFlags", "failure", "read_context", "supplied_context"]

PARSE_ERROR = "PARSE_ERROR"
INVALID_CONTEXT = "INVALID_CONTEXT"
FLAG_NOT_FOUND = "FLAG_NOT_FOUND"
GENERAL = "GENERAL"
TARGETING_KEY = "targetingKey"
#: Answers depend on the caller's token and context: a shared cache must not keep them, and
#: a client's copy is revalidated (``If-None-Match``) before each use.
CACHE_CONTROL = "private, no-cache"
BROKEN_FLAG = "The flag's definition cannot be evaluated; the code default applies."

_VALUE: dict[str, Any] = {
    "type": ["boolean", "number", "string", "dict", "list"],
    "meta": {"description": "Absent when the flag serves null: use the default written in the code"},
}
_REVISION: dict[str, Any] = {
    "type": "dict",
    "schema": {"revision": {"type": "integer", "meta": {"description": "The flag's version that decided"}}},
}
_ERROR_CODE: dict[str, Any] = {"type": "string", "allowed": [GENERAL]}

REQUEST: dict[str, Any] = {
    "context": {
        "type": "dict",
        "maxlength": schemas.MAX_CONTEXT_KEYS,
        "allow_unknown": True,
        "schema": {"targetingKey": {"type": "string", "meta": {"description": "The user_id"}}},
    },
}

SUCCESS: dict[str, Any] = {
    "key": {"type": "string"},
    "value": _VALUE,
    "reason": {"type": "string", "allowed": ["DISABLED", "TARGETING_MATCH", "SPLIT", "DEFAULT"]},
    "variant": {"type": "string", "nullable": True},
    "metadata": _REVISION,
}

BULK: dict[str, Any] = {
    "flags": {
        "type": "list",
        "schema": {
            "type": "dict",
            "schema": {**SUCCESS, "errorCode": _ERROR_CODE, "errorDetails": {"type": "string"}},
        },
    },
    "metadata": {"type": "dict", "schema": {"revision": {"type": "integer"}}},
}

_ERRORS = (
    "Errors are OFREP's JSON `{key?, errorCode, errorDetails}`, not problem documents: `PARSE_ERROR` (the body is "
    'not a JSON object `{"context": {...}}`), `INVALID_CONTEXT` (`context` not an object, `targetingKey` not a '
    f"string, more than {schemas.MAX_CONTEXT_KEYS} keys or {schemas.MAX_CONTEXT_BYTES} bytes as JSON). "
    "`TARGETING_KEY_MISSING` is never answered: a rollout with nobody to bucket serves its default (`DEFAULT`)."
)
_CONTEXT = (
    'Body `{"context": {"targetingKey"?, ...attributes}}` (both optional), read as JSON whatever its '
    "Content-Type. `targetingKey` is the `user_id`; with a person's token and no `targetingKey` nor `user_id`, "
    "the person (the token's `sub`). The server adds `tenant_id` and `tenant`, as for `POST /v1/evaluate`, whose "
    "evaluation this is."
)


class OfrepError(Exception):
    """An answer in OFREP's error shape (see :func:`failure`), raised to end the request."""

    def __init__(self, status: int, body: dict[str, Any], headers: Mapping[str, str] | None = None) -> None:
        super().__init__(body.get("errorDetails"))
        self.status = status
        self.body = body
        self.headers = dict(headers or {})

    def answer(self, resp: falcon.Response) -> None:
        resp.status = self.status
        resp.content_type = JSON_UTF8
        resp.data = dumps_json(self.body)
        for name, value in self.headers.items():
            resp.set_header(name, value)


def failure(status: int, code: str, details: str, key: str | None = None) -> OfrepError:
    """OFREP's ``evaluationFailure`` / ``flagNotFound`` (with the flag's ``key``) or
    ``bulkEvaluationFailure`` (without)."""
    body: dict[str, Any] = {"errorCode": code, "errorDetails": details}
    return OfrepError(status, body if key is None else {"key": key, **body})


def read_context(req: falcon.Request) -> dict[str, Any]:
    """The request's OFREP evaluation context, checked; raises :class:`OfrepError`.

    The checks are ``POST /v1/evaluate``'s (:func:`flags.schemas.check_evaluate`), so both
    APIs take the same contexts; only their verdicts are worded the OFREP way.
    """
    try:
        raw = read_body(req)
    except errors.Problem as exc:
        if exc.status_code != 400:
            raise  # 413 and 411 stay the middleware's: OFREP says nothing about either
        raise failure(400, PARSE_ERROR, exc.description or "The body cannot be read.") from None
    if not raw.strip():
        return {}
    try:
        body = loads_json(raw)
    except NotStorable as exc:
        if exc.errors:
            raise failure(400, INVALID_CONTEXT, _listed(exc.errors)) from None
        raise failure(400, PARSE_ERROR, "The body holds a number out of range or text that is not Unicode.") from None
    except NotUTF8:
        raise failure(400, PARSE_ERROR, "The body must be JSON in UTF-8, without a byte order mark.") from None
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise failure(400, PARSE_ERROR, "The body is not valid JSON.") from None
    if not isinstance(body, dict):
        raise failure(400, PARSE_ERROR, 'The body must be a JSON object: {"context": {...}}.')
    unknown = sorted(name for name in body if name != "context")
    if unknown:
        raise failure(400, PARSE_ERROR, f'Unknown fields {", ".join(unknown)}; the body is {{"context": {{...}}}}.')
    context = body.get("context", {})
    if not isinstance(context, dict):
        raise failure(400, INVALID_CONTEXT, "context must be a JSON object.")
    if TARGETING_KEY in context and type(context[TARGETING_KEY]) is not str:
        raise failure(400, INVALID_CONTEXT, "context.targetingKey must be a string.")
    try:
        schemas.check_evaluate({"context": context})
    except errors.Problem as exc:
        raise failure(400, INVALID_CONTEXT, _listed(exc.errors or [])) from None
    return context


def _listed(found: list[dict[str, str]]) -> str:
    return "; ".join(f"{item['field']} {item['message']}" for item in found) or "The context is invalid."


def supplied_context(principal: Principal, context: Mapping[str, Any]) -> Mapping[str, Any]:
    """The context as ``POST /v1/evaluate`` would take it: ``targetingKey`` becomes ``user_id``.

    ``targetingKey`` wins over a ``user_id`` attribute sent beside it; without either, a
    person's token evaluates as the person.
    """
    if TARGETING_KEY not in context:
        return with_person(principal, context)
    supplied = {name: value for name, value in context.items() if name != TARGETING_KEY}
    supplied["user_id"] = context[TARGETING_KEY]
    return supplied


def _current(snapshot: FlagReplica) -> State:
    """The snapshot, or the 503 of one not loaded yet in OFREP's shape (with its Retry-After)."""
    try:
        return snapshot.current()
    except errors.Problem as exc:
        # OFREP's generalErrorResponse: details only.
        details = {"errorDetails": exc.description or "Try again shortly."}
        raise OfrepError(exc.status_code, details, exc.headers) from None


def _success(key: str, evaluation: Evaluation) -> dict[str, Any]:
    item: dict[str, Any] = {"key": key, "reason": evaluation.reason}
    if evaluation.value is not None:
        item["value"] = evaluation.value
    if evaluation.variant is not None:
        item["variant"] = evaluation.variant
    if evaluation.revision is not None:
        item["metadata"] = {"revision": evaluation.revision}
    return item


def _failure(key: str, evaluation: Evaluation) -> dict[str, Any]:
    item: dict[str, Any] = {"key": key, "errorCode": GENERAL, "errorDetails": BROKEN_FLAG}
    if evaluation.revision is not None:
        item["metadata"] = {"revision": evaluation.revision}
    return item


def _item(key: str, evaluation: Evaluation) -> dict[str, Any]:
    return _failure(key, evaluation) if evaluation.reason == ERROR else _success(key, evaluation)


class EncodedItems:
    """Bulk items as JSON (sorted keys), encoded once per evaluation rather than per request.

    The engine makes most evaluations when a flag is compiled (its default, each rule's, each
    variant's) and hands the same object to every request that ends there, so after the first
    few requests a bulk answer is ten lookups and one join. Evaluations made per request (an
    override's, an error's) are new objects each time: they are encoded like the others, and
    the map, bounded, starts over when full. An entry holds its evaluation, so the id it is
    filed under cannot be reused while it is there.
    """

    def __init__(self, limit: int = 4096) -> None:
        self._limit = limit
        self._items: dict[int, tuple[Evaluation, str, orjson.Fragment]] = {}

    def item(self, key: str, evaluation: Evaluation) -> orjson.Fragment:
        found = self._items.get(id(evaluation))
        if found is not None and found[0] is evaluation and found[1] == key:
            return found[2]
        fragment = orjson.Fragment(orjson.dumps(_item(key, evaluation), option=orjson.OPT_SORT_KEYS))
        if len(self._items) >= self._limit:
            self._items = {}  # one rebinding: a thread still filling the old map does no harm
        self._items[id(evaluation)] = (evaluation, key, fragment)
        return fragment


class OfrepFlag:
    """``POST /ofrep/v1/evaluate/flags/{key}``: one flag for one context."""

    def __init__(self, evaluator: Evaluator, snapshot: FlagReplica, scope: TenantScope) -> None:
        self._evaluator = evaluator
        self._snapshot = snapshot
        self._scope = scope

    @endpoint(
        "OFREP: evaluate one flag",
        scopes=READ,
        tenant=True,
        body=REQUEST,
        media="application/json",
        response=SUCCESS,
        responses={
            400: "OFREP `evaluationFailure`: PARSE_ERROR, INVALID_CONTEXT, or GENERAL for a flag that cannot "
            "be evaluated",
            404: "OFREP `flagNotFound`: errorCode FLAG_NOT_FOUND",
            503: "The flag definitions are not loaded yet: `{errorDetails}`, with Retry-After",
        },
        description="OpenFeature Remote Evaluation Protocol v1 (https://openfeature.dev/docs/reference/"
        f"other-technologies/ofrep/). {_CONTEXT} Answers `{{key, value, reason, variant, metadata: "
        "{revision}}}`: `variant` is null when the value is none of the flag's variants, `value` is absent where "
        f"the flag serves null (the code default applies), `revision` is the flag's version. {_ERRORS}",
    )
    def on_post(self, req: falcon.Request, resp: falcon.Response, key: str) -> None:
        principal = req.context.principal
        try:
            supplied = supplied_context(principal, read_context(req))
            tenant_id = self._scope.own(principal)
            state = _current(self._snapshot)
            evaluation = self._evaluator.one(state, tenant_id, key, self._evaluator.context(tenant_id, supplied))
            if evaluation is None:
                raise failure(404, FLAG_NOT_FOUND, f"There is no flag {key!r}.", key)
            if evaluation.reason == ERROR:
                raise OfrepError(400, _failure(key, evaluation))
        except OfrepError as exc:
            exc.answer(resp)
            return
        answer = _success(key, evaluation)
        answer.setdefault("variant", None)
        resp.set_header("Cache-Control", CACHE_CONTROL)
        resp.content_type = JSON_UTF8
        resp.data = dumps_json(answer)


class OfrepFlags:
    """``POST /ofrep/v1/evaluate/flags``: every flag of the caller's tenant, with an ETag."""

    def __init__(self, evaluator: Evaluator, snapshot: FlagReplica, scope: TenantScope) -> None:
        self._evaluator = evaluator
        self._snapshot = snapshot
        self._scope = scope
        self._encoded = EncodedItems()
        # The snapshot last seen and its flag keys sorted: sorted once per change, not per request.
        self._ordered: tuple[State | None, list[str]] = (None, [])

    @endpoint(
        "OFREP: evaluate every flag (bulk)",
        scopes=READ,
        tenant=True,
        body=REQUEST,
        media="application/json",
        response=BULK,
        responses={
            304: "`If-None-Match` names the answer's ETag (or is `*`): the answer has not changed",
            400: "OFREP `bulkEvaluationFailure`: PARSE_ERROR or INVALID_CONTEXT",
            503: "The flag definitions are not loaded yet: `{errorDetails}`, with Retry-After",
        },
        description="OpenFeature Remote Evaluation Protocol v1, for client-side providers that evaluate once "
        f"and cache. {_CONTEXT} Answers `{{flags: [...], metadata: {{revision}}}}`, one item per flag sorted by "
        "key: `{key, value, reason, variant?, metadata: {revision}}`, or `{key, errorCode: GENERAL, errorDetails}` "
        "for a flag that cannot be evaluated; `metadata.revision` of the whole is the snapshot's revision. The "
        "`ETag` is a hash of the exact answer: send it back as `If-None-Match` (a list, `W/` tags and `*` are "
        f"understood) to get 304 without a body while the answer is unchanged. {_ERRORS}",
    )
    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        principal = req.context.principal
        try:
            supplied = supplied_context(principal, read_context(req))
            tenant_id = self._scope.own(principal)
            state = _current(self._snapshot)
        except OfrepError as exc:
            exc.answer(resp)
            return
        context = self._evaluator.context(tenant_id, supplied)
        ordered = self._ordered
        if ordered[0] is not state:
            ordered = self._ordered = (state, sorted(state.flags))
        item = self._encoded.item
        flags = state.flags
        items = []
        if state.overrides.get(tenant_id) is None:  # as Evaluator.evaluate_flags: no overrides to look up
            for key in ordered[1]:
                items.append(item(key, flags[key].evaluate(context)))
            self._evaluator.usage.saw_all(ordered[1])
        else:
            one = self._evaluator.one
            for key in ordered[1]:
                evaluation = one(state, tenant_id, key, context)
                if evaluation is not None:
                    items.append(item(key, evaluation))
        # Flags sorted by key, items with sorted keys: the tag must not depend on the order a
        # worker happened to learn keys in ("flags" < "metadata" keeps the whole sorted).
        data = orjson.dumps({"flags": items, "metadata": {"revision": state.revision}})
        tag = blake2b(data, digest_size=16).hexdigest()
        resp.set_header("ETag", f'"{tag}"')
        resp.set_header("Cache-Control", CACHE_CONTROL)
        known = req.if_none_match
        if known and ("*" in known or tag in known):  # weak comparison, as RFC 9110 has it for If-None-Match
            resp.status = falcon.HTTP_304
            return
        resp.content_type = JSON_UTF8
        resp.data = data
