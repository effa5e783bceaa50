"""``req.context.language``, negotiated when first read, and the middleware that makes it possible.

A request that never reads its language pays one header read and two attribute writes
(:class:`LanguageMiddleware`); the negotiation and any tenant lookup run only when a
problem document is written or ``/v1/me`` answers.
"""

from __future__ import annotations

from typing import Any

import falcon

from aerie.i18n.negotiation import Languages

__all__ = ["LanguageMiddleware", "Request", "RequestContext"]


class RequestContext(falcon.Context):
    """Falcon's request context with ``language``: the language this request is answered in.

    None where the app has no :class:`LanguageMiddleware` (its caller then picks English).
    """

    @property
    def language(self) -> str | None:
        return self.negotiated_language()[0]

    @language.setter
    def language(self, value: str) -> None:
        self.__dict__["_language"] = (value, False)

    def negotiated_language(self, *, ask_tenant: bool = True) -> tuple[str | None, bool]:
        """``(language, used_header)`` as :meth:`Languages.negotiate` gives it, once per request.

        An answer reached without asking the tenant is not kept: a later reader that may
        ask gets the full negotiation.
        """
        state = self.__dict__
        known = state.get("_language")
        if known is not None:
            return known
        languages: Languages | None = state.get("languages")
        if languages is None:
            return None, False
        result = languages.negotiate(state.get("principal"), state.get("accept_language"), ask_tenant=ask_tenant)
        if ask_tenant:
            state["_language"] = result
        return result


class Request(falcon.Request):
    """Falcon's request with :class:`RequestContext` as its context."""

    context_type = RequestContext


class LanguageMiddleware:
    """Notes what the request's language depends on; negotiation waits until it is asked for."""

    def __init__(self, languages: Languages) -> None:
        self._languages = languages

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        context: Any = req.context
        context.languages = self._languages
        context.accept_language = req.env.get("HTTP_ACCEPT_LANGUAGE")
