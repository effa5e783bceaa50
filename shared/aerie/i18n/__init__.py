"""Aerie in the caller's language: translatable messages, negotiation, and the shipped catalogs.

Problem documents (:mod:`aerie.errors`) are written in the language negotiated for the
request (:mod:`aerie.i18n.negotiation`); messages are English source text marked with
:func:`msg` and translated from the gettext catalogs under ``locale/`` when sent.
"""

from __future__ import annotations

from aerie.i18n.catalogs import SOURCE_LANGUAGE, Catalogs
from aerie.i18n.context import LanguageMiddleware, Request, RequestContext
from aerie.i18n.messages import KEYWORDS, Message, msg, translate
from aerie.i18n.negotiation import Languages, TenantLanguage, preferred_languages, tenant_language_of

__all__ = [
    "KEYWORDS",
    "SOURCE_LANGUAGE",
    "Catalogs",
    "LanguageMiddleware",
    "Languages",
    "Message",
    "Request",
    "RequestContext",
    "TenantLanguage",
    "msg",
    "preferred_languages",
    "tenant_language_of",
    "translate",
]
