"""Translatable messages: English text that can be said in another language when it is sent.

A :class:`Message` *is* its English text (a ``str``), so code, logs and tests that treat an
error's detail as a string see exactly what they saw before; the msgid and the named
placeholders travel with it, and :meth:`Message.translate` renders it in a negotiated
language only when a response is written. ``msg`` is the keyword Babel's extractor looks
for (:data:`KEYWORDS`), so every call site is in the catalog template.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ["KEYWORDS", "Message", "msg", "translate"]

#: What Babel's extractor treats as a translatable call (the first argument is the msgid).
KEYWORDS: dict[str, Any] = {"msg": None}


class Message(str):
    """English ``msgid % params``, translatable later with the same params.

    Placeholders are gettext's python-format (``%(slug)s``), so translators and Babel's
    checkers see which values a sentence carries. A ``str`` subclass cannot have slots.
    """

    msgid: str
    params: dict[str, Any]

    def __new__(cls, msgid: str, /, **params: Any) -> Message:
        self = super().__new__(cls, msgid % params if params else msgid)
        self.msgid = msgid
        self.params = params
        return self

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (type(self), self.msgid, self.params))

    def translate(self, gettext: Callable[[str], str]) -> str:
        """This message through ``gettext`` (msgid to translated template), its English on any mismatch.

        A translation whose placeholders do not fit the params is a catalog bug; the caller
        still gets a readable sentence, in English, instead of a 500.
        """
        template = gettext(self.msgid)
        if template is self.msgid or template == self.msgid:
            return str(self)
        if not self.params:
            return template
        try:
            return template % self.params
        except (KeyError, ValueError, TypeError):
            return str(self)


def _rebuild(cls: type[Message], msgid: str, params: dict[str, Any]) -> Message:
    return cls(msgid, **params)


def msg(msgid: str, /, **params: Any) -> Message:
    """Mark ``msgid`` for translation: ``msg("The slug %(slug)s is taken.", slug=slug)``."""
    return Message(msgid, **params)


def translate(text: str | None, gettext: Callable[[str], str] | None) -> str | None:
    """``text`` in the language ``gettext`` speaks; a plain ``str`` (or no ``gettext``) as is."""
    if text is None:
        return None
    if gettext is None or not isinstance(text, Message):
        return str(text)
    return text.translate(gettext)
