"""The check test_fuzz.py adds to Schemathesis' own (loaded as ``SCHEMATHESIS_HOOKS``)."""

from __future__ import annotations

from typing import Any

import schemathesis

#: Answers RFC 6749's error JSON (section 5.2), not problem documents.
TOKEN_ENDPOINT = "/v1/oauth/token"
#: OpenFeature's remote evaluation protocol answers its own JSON errors (400, 404), by its spec.
OFREP = "/ofrep/"
PROBLEM = "application/problem+json"


@schemathesis.check
def errors_are_problem_documents(ctx: Any, response: Any, case: Any) -> bool | None:
    """Every 4xx of an Aerie service is application/problem+json (docs/api.md)."""
    path = case.operation.path
    if not 400 <= response.status_code < 500 or path == TOKEN_ENDPOINT:
        return None
    if path.startswith(OFREP) and response.status_code in (400, 404):
        return None
    value = response.headers.get("content-type") or [""]
    media = (value[0] if isinstance(value, list) else value).split(";")[0].strip()
    if media != PROBLEM:
        raise AssertionError(f"{response.status_code} answered as {media or 'no media type'}, not {PROBLEM}")
    return True
