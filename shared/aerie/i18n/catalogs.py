"""The languages Aerie ships: one gettext catalog each under ``locale/<lang>/LC_MESSAGES/aerie.po``.

Adding a language is adding a catalog: the shipped languages are whatever folders hold one,
plus English, the source language, which needs none. The ``.po`` sources are read with
Babel at a language's first use in a process (no compiled ``.mo`` to build or stage): a
worker that only ever answers in English never imports ``babel.messages`` (about 0.5 MiB
and 5 ms), and one that answers in German keeps one dict of its messages (and one of its
plural messages, for ``ngettext``: the console's templates have some).
"""

from __future__ import annotations

import gettext as _gettext_module
import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["DOMAIN", "LOCALE_DIR", "SOURCE_LANGUAGE", "Catalogs", "Translations"]

log = logging.getLogger("aerie.i18n")

LOCALE_DIR = Path(__file__).parent / "locale"
DOMAIN = "aerie"
#: The language of every msgid.
SOURCE_LANGUAGE = "en"


def _english_plural(n: int) -> int:
    return 0 if n == 1 else 1


@dataclass(frozen=True)
class _Loaded:
    """One language's catalog as read: singular messages, plural ones, and its plural rule."""

    messages: Mapping[str, str] = field(default_factory=dict)
    #: The singular msgid to every plural form's translation, in the catalog's order.
    plurals: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    #: ``n`` to the index of the form to use (the catalog's ``Plural-Forms``).
    plural: Callable[[int], int] = _english_plural


class Translations:
    """``gettext`` and ``ngettext`` over one language's catalog (the msgid itself where none is translated).

    The shape Jinja2's i18n extension installs; one object per language, made once.
    """

    __slots__ = ("_loaded", "language")

    def __init__(self, language: str, loaded: _Loaded) -> None:
        self.language = language
        self._loaded = loaded

    def gettext(self, msgid: str) -> str:
        return self._loaded.messages.get(msgid, msgid)

    def ngettext(self, singular: str, plural: str, n: int) -> str:
        forms = self._loaded.plurals.get(singular)
        if forms:
            try:
                return forms[self._loaded.plural(n)]
            except (IndexError, TypeError, ValueError):
                pass  # a Plural-Forms that does not fit the forms: English, not a 500
        return singular if n == 1 else plural


def _tag(folder: str) -> str:
    """The BCP 47 tag of a gettext locale folder (``pt_BR`` is ``pt-BR``)."""
    return folder.replace("_", "-")


class Catalogs:
    """The shipped languages and, once asked for, each one's translations."""

    def __init__(self, directory: Path = LOCALE_DIR) -> None:
        self._directory = directory
        found = {
            _tag(path.parent.parent.name): path
            for path in directory.glob(f"*/LC_MESSAGES/{DOMAIN}.po")
            if path.is_file()
        }
        self._paths = found
        #: Every language a response can be in, the source language first.
        self.languages: tuple[str, ...] = (SOURCE_LANGUAGE, *sorted(t for t in found if t != SOURCE_LANGUAGE))
        self._loaded: dict[str, _Loaded] = {}
        self._translations: dict[str, Translations] = {}
        self._lock = threading.Lock()

    def path(self, language: str) -> Path | None:
        """The catalog source of ``language``; None for English or a language not shipped."""
        return self._paths.get(language)

    def messages(self, language: str) -> Mapping[str, str]:
        """msgid to translation for ``language`` (empty for English and unknown languages)."""
        return self._load(language).messages

    def translations(self, language: str) -> Translations:
        """``gettext``/``ngettext`` in ``language``, made once; English (the msgids) where none is shipped."""
        found = self._translations.get(language)
        if found is None:
            found = self._translations.setdefault(language, Translations(language, self._load(language)))
        return found

    def _load(self, language: str) -> _Loaded:
        loaded = self._loaded.get(language)
        if loaded is None:
            with self._lock:
                loaded = self._loaded.get(language)
                if loaded is None:
                    loaded = self._read(language)
                    self._loaded[language] = loaded
        return loaded

    def gettext(self, language: str) -> _GetText | None:
        """A msgid-to-template function for ``language``; None where messages stay English."""
        if language == SOURCE_LANGUAGE or language not in self._paths:
            return None
        return _GetText(self.messages(language))

    def _read(self, language: str) -> _Loaded:
        path = self._paths.get(language)
        if path is None:
            return _Loaded()
        from babel.messages.pofile import read_po  # only a process that answers in this language pays

        try:
            with path.open("rb") as handle:
                # No locale: Babel would load its CLDR data for it, which plain lookups never need.
                catalog = read_po(handle, domain=DOMAIN)
        except Exception:
            # A broken catalog must not turn every error into a 500: it answers in English.
            log.exception("catalog unreadable", extra={"language": language})
            return _Loaded()
        messages: dict[str, str] = {}
        plurals: dict[str, tuple[str, ...]] = {}
        for message in catalog:
            if not message.id or message.fuzzy:
                continue
            if isinstance(message.id, str):
                if message.string and isinstance(message.string, str):
                    messages[message.id] = message.string
            elif isinstance(message.string, tuple | list) and all(message.string):
                # A plural with any form left empty is untranslated: all English rather than half.
                plurals[str(message.id[0])] = tuple(str(form) for form in message.string)
        return _Loaded(messages, plurals, _plural_rule(catalog.plural_expr))


def _plural_rule(expression: str) -> Callable[[int], int]:
    """A catalog's ``Plural-Forms`` expression as a function (the C subset gettext itself parses)."""
    try:
        return _gettext_module.c2py(expression)
    except (ValueError, SyntaxError, RecursionError):
        log.warning("unusable Plural-Forms", extra={"expression": expression})
        return _english_plural


class _GetText:
    """``gettext(msgid)`` over one language's messages: the msgid itself where none is translated."""

    __slots__ = ("_messages",)

    def __init__(self, messages: Mapping[str, str]) -> None:
        self._messages = messages

    def __call__(self, msgid: str) -> str:
        return self._messages.get(msgid, msgid)
