"""Which language a response is in: the person's, else ``Accept-Language``, else the tenant's.

The contract (docs/api.md, "people"): a member's own ``language`` first, then the best match
of ``Accept-Language`` among the languages Aerie ships, then the tenant's ``language``,
then English. Each step only counts when Aerie ships that language (``de-CH`` is ``de``).
Matching is Babel's :func:`babel.core.negotiate_locale`; ordering the header's entries by
their q-values is done here, as Babel takes a list already in order of preference.

Nothing here runs for a request that succeeds without asking for its language: the
middleware notes the header, and the negotiation (with the tenant lookup it may need) runs
when a problem document is written or ``/v1/me`` asks.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable, Sequence
from typing import Any

from cachetools import LRUCache

from aerie.i18n.catalogs import SOURCE_LANGUAGE, Catalogs

__all__ = ["Languages", "TenantLanguage", "preferred_languages", "tenant_language_of"]

log = logging.getLogger("aerie.i18n")

#: The language a tenant's documents name, or None (no tenant, or it cannot be asked now).
TenantLanguage = Callable[[str], str | None]

#: A language range of RFC 9110 section 12.5.4 (RFC 4647): ``de``, ``de-CH``, ``*``.
_RANGE = re.compile(r"^(?:\*|[A-Za-z]{1,8}(?:-[A-Za-z0-9]{1,8})*)$")
#: Headers longer than this are not cached (clients send a handful of distinct ones).
_MAX_CACHED_HEADER = 256
#: Ranges read from one header; a browser sends a few, more are noise or an attack.
_MAX_RANGES = 32


def preferred_languages(header: str) -> list[str]:
    """The ranges of an ``Accept-Language`` value, most preferred first, without ``q=0`` ones.

    Entries that do not parse are skipped rather than refused: the header only picks a
    language, and a garbled one must not turn into an error.
    """
    weighted: list[tuple[float, int, str]] = []
    for position, entry in enumerate(header.split(",")[:_MAX_RANGES]):
        tag, _, params = entry.partition(";")
        tag = tag.strip()
        if not _RANGE.match(tag):
            continue
        q = 1.0
        for param in params.split(";") if params else ():
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    q = float(value.strip())
                except ValueError:
                    q = -1.0
        if 0.0 < q <= 1.0:
            weighted.append((-q, position, tag))
    weighted.sort()
    return [tag for _, _, tag in weighted]


def tenant_language_of(tenants: Any) -> TenantLanguage:
    """The tenant language lookup over a :class:`~aerie.tenant_directory.TenantSource`.

    The tenant document carries ``language``; a tenant that cannot be looked up right now
    (tenants away, unknown tenant) has none, so the answer falls back to English rather
    than failing a response that is already an error.
    """

    def language(tenant_id: str) -> str | None:
        try:
            tenant = tenants.get(tenant_id)
        except Exception:
            return None
        value = tenant.get("language") if tenant else None
        return value if isinstance(value, str) else None

    return language


class Languages:
    """Negotiates a request's language among the shipped catalogs."""

    def __init__(self, catalogs: Catalogs, tenant_language: TenantLanguage | None = None) -> None:
        self.catalogs = catalogs
        self._tenant_language = tenant_language
        self._by_lower = {language.lower(): language for language in catalogs.languages}
        self._headers: LRUCache[str, str | None] = LRUCache(maxsize=256)
        self._lock = threading.Lock()

    @property
    def available(self) -> Sequence[str]:
        return self.catalogs.languages

    def match(self, preferred: Sequence[str]) -> str | None:
        """The shipped language that best serves ``preferred`` (in order), or None."""
        from babel.core import negotiate_locale  # not needed by a request that never asks

        found = negotiate_locale(list(preferred), list(self.catalogs.languages), sep="-", aliases=None)
        return self._by_lower.get(found.lower()) if found else None

    def from_header(self, header: str) -> str | None:
        """The best shipped match of an ``Accept-Language`` value; ``*`` leaves it to the tenant."""
        cacheable = len(header) <= _MAX_CACHED_HEADER
        if cacheable:
            with self._lock:
                if header in self._headers:
                    return self._headers[header]
        ranges = preferred_languages(header)
        if "*" in ranges:
            ranges = ranges[: ranges.index("*")]
        found = self.match(ranges) if ranges else None
        if cacheable:
            with self._lock:
                self._headers[header] = found
        return found

    def negotiate(self, principal: Any, accept_language: str | None, *, ask_tenant: bool = True) -> tuple[str, bool]:
        """``(language, used_header)``: the request's language and whether ``Accept-Language`` decided it.

        ``used_header`` is also true when the header was read and matched nothing (its
        absence or content could have changed the answer): the response then varies by it.
        ``ask_tenant=False`` skips the tenant lookup (for answers that must not wait on
        the tenants service, such as the 503 that says it is away).
        """
        own = getattr(principal, "language", None) if principal is not None else None
        if own:
            found = self.match([own])
            if found:
                return found, False
        if accept_language:
            found = self.from_header(accept_language)
            if found:
                return found, True
        tenant_id = getattr(principal, "tenant_id", None) if principal is not None else None
        if ask_tenant and tenant_id and self._tenant_language is not None:
            try:
                tenant_language = self._tenant_language(tenant_id)
            except Exception:
                # The tenant's language only words an answer; its store being away must not fail it.
                log.warning("tenant language unavailable", exc_info=True)
                tenant_language = None
            if tenant_language:
                found = self.match([tenant_language])
                if found:
                    return found, True
        return SOURCE_LANGUAGE, True
