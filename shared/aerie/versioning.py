"""Optimistic concurrency: ``version`` in the body, the same as a strong ``ETag``.

Clients send the ETag back in ``If-Match``; a stale one is 412. ``*`` or no header means
"whatever the current version is".
"""

from __future__ import annotations

import re

import falcon

from aerie import errors
from aerie.i18n import msg

__all__ = ["etag", "expected_version", "set_etag"]


def etag(version: int) -> str:
    return f'"{version}"'


def set_etag(resp: falcon.Response, version: int) -> None:
    resp.set_header("ETag", etag(version))


#: One entity-tag as this service writes it (``etag()``), optionally marked weak: a proxy
#: that compresses may weaken an ETag, and the client should not pay for that. Digits are
#: ASCII only (``str.isdigit`` also takes "²", which ``int`` refuses) and few enough for
#: ``int`` to read at once.
_OUR_TAG = re.compile(r'(?:W/)?"([0-9]{1,18})"', re.ASCII)


def expected_version(req: falcon.Request) -> int | None:
    """The version ``If-Match`` demands, or None when the client does not care.

    Anything but ``*`` or one of our ETags (a list, a tag we never issued) is 412: it can
    match no version of ours.
    """
    header = req.get_header("If-Match")
    if header is None or header.strip() == "*":
        return None
    found = _OUR_TAG.fullmatch(header.strip())
    if found is None:
        raise errors.precondition_failed(msg("If-Match must be one ETag this service issued, or *."))
    return int(found.group(1))
