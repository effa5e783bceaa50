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
from functools import lru_cache
from typing import Any

import falcon
from babel import Locale
from jinja2 import Environment, pass_context
from jinja2.runtime import Context
from markupsafe import Markup, escape

from aerie.i18n import Catalogs, Languages, Message, translate
from aerie.i18n.catalogs import Translations
from console.session import Session

__all__ = ["I18N_VARIABLE", "PageLanguage", "install", "percentage", "timestamp"]

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


# Rendering ------------------------------------------------------------------------------
#
# Jinja2's own new-style callables (install_gettext_callables(newstyle=True)) wrap the
# functions they are given: two context dispatches and a Markup %-format for every call,
# about 5 µs each, and a page makes 50 to 100 of them. These do the same, directly: a
# message without placeholders is translated once per language, and placeholder values
# are escaped before they are put in (the translation itself is the template's own text).

#: ``(language, msgid, autoescape)`` to the shown text of a message without placeholders.
_CONSTANTS: dict[tuple[str, str, bool], str] = {}
#: A template passing a variable to ``_()`` could grow the cache without bound; it stops here.
_MAX_CONSTANTS = 4096


def _fill(template: str, variables: dict[str, Any], autoescape: bool) -> str:
    if not autoescape:
        return template % variables
    # Numbers stay numbers (%(n)d); everything else is escaped, as Markup's own % would.
    safe = {name: value if isinstance(value, int | float) else escape(value) for name, value in variables.items()}
    return Markup(template % safe)  # noqa: S704 (the catalog is the template's own text; values escaped)


@pass_context
def _gettext(context: Context, message: str, /, **variables: Any) -> str:
    translations: Translations = context[I18N_VARIABLE]
    autoescape = context.eval_ctx.autoescape
    if variables:
        return _fill(translations.gettext(message), variables, autoescape)
    key = (translations.language, message, autoescape)
    shown = _CONSTANTS.get(key)
    if shown is None:
        # New-style: a literal % is written %%, with or without placeholders.
        text = translations.gettext(message).replace("%%", "%")
        shown = Markup(text) if autoescape else text  # noqa: S704 (the catalog: the template's own text)
        if len(_CONSTANTS) < _MAX_CONSTANTS:
            _CONSTANTS[key] = shown
    return shown


@pass_context
def _ngettext(context: Context, singular: str, plural: str, n: int, /, **variables: Any) -> str:
    translations: Translations = context[I18N_VARIABLE]
    variables.setdefault("num", n)
    return _fill(translations.ngettext(singular, plural, n), variables, context.eval_ctx.autoescape)


class _Formats:
    """One language's CLDR patterns, parsed once (Babel's format_* parse them on every call)."""

    def __init__(self, language: str) -> None:
        self.locale = Locale.parse(language, sep="-")
        self.date = self.locale.date_formats["medium"]
        self.time = self.locale.time_formats["medium"]
        # "{1}, {0}": the date, then the time (quotes dropped, as Babel's format_datetime does).
        self.glue = str(self.locale.datetime_formats["medium"]).replace("'", "")
        self.decimal = self.locale.decimal_formats[None]
        self.percent = self.locale.percent_formats[None]


@lru_cache(maxsize=8)
def _formats(language: str) -> _Formats:
    return _Formats(language)


@lru_cache(maxsize=4096)
def timestamp(language: str, value: str) -> str:
    """A service's ISO 8601 timestamp as ``language`` writes it, in UTC (a page shows the same ones again)."""
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return value
    moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    formats = _formats(language)
    date, time = formats.date.apply(moment, formats.locale), formats.time.apply(moment, formats.locale)
    return formats.glue.replace("{1}", date).replace("{0}", time) + " UTC"


@pass_context
def _datetime(context: Context, value: Any) -> str:
    """An ISO 8601 timestamp of a service as the person's language writes it, in UTC; else as it is."""
    if isinstance(value, datetime):
        value = value.isoformat()
    if not isinstance(value, str):
        return "" if value is None else str(value)
    return timestamp(context[I18N_VARIABLE].language, value)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


@pass_context
def _number(context: Context, value: Any) -> str:
    if not _is_number(value):
        return str(value)
    formats = _formats(context[I18N_VARIABLE].language)
    return str(formats.decimal.apply(value, formats.locale))


@lru_cache(maxsize=1024)
def percentage(language: str, value: float) -> str:
    formats = _formats(language)
    # Through the decimal text, so 33.3 is 33.3% and not 33.299999999999997%.
    ratio = Decimal(str(value)) / 100
    return str(formats.percent.apply(ratio, formats.locale, decimal_quantization=False))


@pass_context
def _percent(context: Context, value: Any) -> str:
    """A percentage from 0 to 100 (a rollout's): ``12.5`` is "12.5%" in English, "12,5 %" in German."""
    if not _is_number(value):
        return str(value)
    # Cached: a console shows a handful of distinct rollout percentages, on row after row.
    return percentage(context[I18N_VARIABLE].language, value)


def install(environment: Environment) -> None:
    """Jinja2's i18n extension on ``environment``, translating with each render's ``i18n`` variable.

    New-style gettext: ``_()`` and ``{% trans %}`` fill their placeholders after translating
    and escape the values, so a translation cannot break the page's HTML. ``trimmed``: a
    ``{% trans %}`` block's msgid is its text with the template's line breaks folded, as
    :mod:`aerie.i18n.extract` reads it.
    """
    environment.add_extension("jinja2.ext.i18n")
    environment.policies["ext.i18n.trimmed"] = True
    # Installed as they are (they are new-style themselves, see above), then the trans tag
    # told to compile new-style calls: placeholders as keyword arguments.
    environment.install_gettext_callables(_gettext, _ngettext, newstyle=False)  # type: ignore[attr-defined]
    environment.newstyle_gettext = True  # type: ignore[attr-defined]
    # ``_`` straight to ours, not through the extension's alias (one more context dispatch).
    environment.globals["_"] = _gettext
    environment.filters["datetime"] = _datetime
    environment.filters["number"] = _number
    environment.filters["percent"] = _percent
