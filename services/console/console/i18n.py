"""The console in the person's language, from the same catalogs and negotiation as the API.

A page's language is the signed-in person's own (the ``language`` claim the token exchange
puts in their token, the member's or else their provider's locale), else the best match of
the browser's ``Accept-Language`` among the shipped languages, else English: the API's
:meth:`aerie.i18n.Languages.negotiate`, without the tenant's language (that would be a call
to the tenants service for every page). Templates translate with Jinja2's i18n extension
over :meth:`aerie.i18n.Catalogs.translations`, so each catalog is read once per process for
the API's messages and the console's alike; dates and numbers are formatted by Babel in the
same language.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import falcon
from babel.dates import format_datetime
from babel.numbers import format_decimal, format_percent
from jinja2 import Environment, pass_context
from jinja2.runtime import Context

from aerie.i18n import Catalogs, Languages, Message, translate
from aerie.i18n.catalogs import Translations
from console.session import Session

__all__ = ["I18N_VARIABLE", "PageLanguage", "install"]

#: The render variable that holds the page's :class:`~aerie.i18n.catalogs.Translations`.
I18N_VARIABLE = "i18n"


class _Person:
    """What :meth:`Languages.negotiate` reads of a caller: their own language, no tenant lookup."""

    __slots__ = ("language", "tenant_id")

    def __init__(self, language: str | None) -> None:
        self.language = language
        self.tenant_id = None


class PageLanguage:
    """A request's language and its translations."""

    def __init__(self, catalogs: Catalogs | None = None) -> None:
        self.languages = Languages(catalogs or Catalogs())

    def of(self, req: falcon.Request, session: Session | None) -> Translations:
        own = session.claims.get("language") if session is not None else None
        person = _Person(own) if isinstance(own, str) and own else None
        language, _ = self.languages.negotiate(person, req.get_header("Accept-Language"), ask_tenant=False)
        return self.languages.catalogs.translations(language)

    @staticmethod
    def text(value: Any, translations: Translations) -> Any:
        """``value`` in the page's language when it is a :class:`Message`; anything else as it is."""
        return translate(value, translations.gettext) if isinstance(value, Message) else value


def _translations(context: Context) -> Translations:
    return context[I18N_VARIABLE]


@pass_context
def _gettext(context: Context, message: str) -> str:
    return _translations(context).gettext(message)


@pass_context
def _ngettext(context: Context, singular: str, plural: str, n: int) -> str:
    return _translations(context).ngettext(singular, plural, n)


@pass_context
def _datetime(context: Context, value: Any) -> str:
    """An ISO 8601 timestamp of a service as the person's language writes it, in UTC; else as it is."""
    if not isinstance(value, str | datetime):
        return "" if value is None else str(value)
    try:
        moment = value if isinstance(value, datetime) else datetime.fromisoformat(value)
    except ValueError:
        return value
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return format_datetime(moment, "medium", tzinfo=UTC, locale=_translations(context).language) + " UTC"


@pass_context
def _number(context: Context, value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    return format_decimal(value, locale=_translations(context).language)


@pass_context
def _percent(context: Context, value: Any) -> str:
    """A percentage from 0 to 100 (a rollout's): ``12.5`` is "12.5%" in English, "12,5 %" in German."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    # Through the decimal text, so 33.3 is 33.3% and not 33.299999999999997%.
    return format_percent(Decimal(str(value)) / 100, locale=_translations(context).language, decimal_quantization=False)


def install(environment: Environment) -> None:
    """Jinja2's i18n extension on ``environment``, translating with each render's ``i18n`` variable.

    New-style gettext: ``_()`` and ``{% trans %}`` fill their placeholders after translating
    and escape the values, so a translation cannot break the page's HTML. ``trimmed``: a
    ``{% trans %}`` block's msgid is its text with the template's line breaks folded, as
    :mod:`aerie.i18n.extract` reads it.
    """
    environment.add_extension("jinja2.ext.i18n")
    environment.policies["ext.i18n.trimmed"] = True
    environment.install_gettext_callables(_gettext, _ngettext, newstyle=True)  # type: ignore[attr-defined]
    environment.filters["datetime"] = _datetime
    environment.filters["number"] = _number
    environment.filters["percent"] = _percent
