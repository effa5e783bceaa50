"""Route declarations: what each responder needs, declared next to it.

``@endpoint(...)`` records who may call a responder (scopes, tenant binding), the Cerberus
schemas its body and query must satisfy, and what it answers. The middleware enforces the
declaration, and the OpenAPI document is generated from it, so docs and behaviour share one
source. A responder without a declaration makes the app refuse to start: nothing is public
by accident.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

__all__ = ["ANY_TOKEN", "HTTP_METHODS", "PUBLIC", "Endpoint", "endpoint", "endpoint_of", "responders_of"]

HTTP_METHODS = ("get", "post", "put", "patch", "delete")
Schema = Mapping[str, Any]
F = TypeVar("F", bound=Callable[..., Any])


class _Public:
    def __repr__(self) -> str:
        return "PUBLIC"


#: Marks a responder that needs no token (health, discovery, the token endpoint itself).
PUBLIC = _Public()


class _AnyToken:
    def __repr__(self) -> str:
        return "ANY_TOKEN"


#: Marks a responder any valid token may call, whatever its scopes (``GET /v1/me``).
ANY_TOKEN = _AnyToken()


@dataclass(frozen=True)
class Endpoint:
    summary: str
    #: Any one of these scopes admits the caller; ``platform:admin`` admits to everything.
    #: None: no token needed; empty: any valid token.
    scopes: tuple[str, ...] | None
    #: The route acts on the caller's tenant, so a platform token gets 403 tenant_required.
    tenant: bool = False
    #: Cerberus schema of the JSON body; unknown fields are rejected.
    body: Schema | None = None
    #: ``json`` bodies are parsed and validated by the middleware. Any other value leaves the
    #: body to the resource and names its media type in the document (``raw``: any type).
    media: str = "json"
    #: Cerberus schema of the query string.
    query: Schema | None = None
    #: Cerberus rules for path parameters the route cannot take just any string for (a
    #: user id it stores); the others stay plain strings, and a bad one is a 404.
    path: Schema | None = None
    status: int = 200
    #: Cerberus-style description of the response body, for the OpenAPI document.
    response: Schema | None = None
    #: The media type of that body, when it is not plain JSON (a JWK Set).
    response_media: str = "application/json"
    #: ``Idempotency-Key`` replays this create's first response.
    idempotent: bool = False
    description: str | None = None
    responses: Mapping[int, str] = field(default_factory=dict)
    #: For the hottest routes only: a hand-written check equivalent to ``body`` (which still
    #: documents the route), run instead of Cerberus (~100 us a request). It takes the parsed
    #: JSON object and returns the normalized body, or raises the same 422 Cerberus would.
    check: Callable[[dict[str, Any]], dict[str, Any]] | None = None

    @property
    def public(self) -> bool:
        return self.scopes is None


def endpoint(
    summary: str,
    *,
    scopes: Sequence[str] | _Public | _AnyToken,
    tenant: bool = False,
    body: Schema | None = None,
    media: str = "json",
    query: Schema | None = None,
    path: Schema | None = None,
    status: int = 200,
    response: Schema | None = None,
    response_media: str = "application/json",
    idempotent: bool = False,
    description: str | None = None,
    responses: Mapping[int, str] | None = None,
    check: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
) -> Callable[[F], F]:
    """Declare a responder's contract.

    ``scopes`` is required: the scopes that admit a caller, ``ANY_TOKEN`` for any valid token,
    or ``PUBLIC`` to open the route to anyone.
    """
    if isinstance(scopes, _Public):
        declared: tuple[str, ...] | None = None
    elif isinstance(scopes, _AnyToken):
        declared = ()
    elif not scopes:
        raise ValueError("scopes must name at least one scope, or be ANY_TOKEN or PUBLIC")
    else:
        declared = tuple(scopes)
    spec = Endpoint(
        summary=summary,
        scopes=declared,
        tenant=tenant,
        body=body,
        media=media,
        query=query,
        path=path,
        status=status,
        response=response,
        response_media=response_media,
        idempotent=idempotent,
        description=description,
        responses=dict(responses or {}),
        check=check,
    )

    def mark(fn: F) -> F:
        fn.__aerie_endpoint__ = spec  # type: ignore[attr-defined]
        return fn

    return mark


def endpoint_of(responder: Any) -> Endpoint | None:
    return getattr(responder, "__aerie_endpoint__", None)


def responders_of(resource: object) -> dict[str, Endpoint | None]:
    """Every ``on_<method>`` responder of a resource with its declaration (None if missing)."""
    found: dict[str, Endpoint | None] = {}
    for method in HTTP_METHODS:
        responder = getattr(resource, f"on_{method}", None)
        if responder is not None:
            found[method] = endpoint_of(responder)
    return found
