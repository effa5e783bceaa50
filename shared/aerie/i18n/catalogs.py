"""The languages Aerie ships: one gettext catalog each under ``locale/<lang>/LC_MESSAGES/aerie.po``.

Adding a language is adding a catalog: the shipped languages are whatever folders hold one,
plus English, the source language, which needs none. The ``.po`` sources are read with
Babel at a language's first use in a process (no compiled ``.mo`` to build or stage): a
worker that only ever answers in English never imports ``babel.messages`` (about 0.5 MiB
and 5 ms), and one that answers in German keeps one dict of its messages.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from pathlib import Path

__all__ = ["DOMAIN", "LOCALE_DIR", "SOURCE_LANGUAGE", "Catalogs"]

log = logging.getLogger("aerie.i18n")

LOCALE_DIR = Path(__file__).parent / "locale"
DOMAIN = "aerie"
#: The language of every msgid.
SOURCE_LANGUAGE = "en"


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
        self._loaded: dict[str, Mapping[str, str]] = {}
        self._lock = threading.Lock()

    def path(self, language: str) -> Path | None:
        """The catalog source of ``language``; None for English or a language not shipped."""
        return self._paths.get(language)

    def messages(self, language: str) -> Mapping[str, str]:
        """msgid to translation for ``language`` (empty for English and unknown languages)."""
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

    def _read(self, language: str) -> Mapping[str, str]:
        path = self._paths.get(language)
        if path is None:
            return {}
        from babel.messages.pofile import read_po  # only a process that answers in this language pays

        try:
            with path.open("rb") as handle:
                # No locale: Babel would load its CLDR data for it, which plain lookups never need.
                catalog = read_po(handle, domain=DOMAIN)
        except Exception:
            # A broken catalog must not turn every error into a 500: it answers in English.
            log.exception("catalog unreadable", extra={"language": language})
            return {}
        return {
            str(message.id): str(message.string)
            for message in catalog
            if message.id and isinstance(message.id, str) and message.string and not message.fuzzy
        }


class _GetText:
    """``gettext(msgid)`` over one language's messages: the msgid itself where none is translated."""

    __slots__ = ("_messages",)

    def __init__(self, messages: Mapping[str, str]) -> None:
        self._messages = messages

    def __call__(self, msgid: str) -> str:
        return self._messages.get(msgid, msgid)
