"""Optimistic concurrency: ``version`` in the body, the same as a strong ``ETag``.

Clients send the ETag back in ``If-Match``; a stale one is 412. ``*`` or no header means
"whatever the current version is".
"""

from __future__ import annotations

import falcon

from aerie import errors

__all__ = ["etag", "expected_version", "set_etag"]


def etag(version: int) -> str:
    return f'"{version}"'


def set_etag(resp: falcon.Response, version: int) -> None:
    resp.set_header("ETag", etag(version))


def expected_version(req: falcon.Request) -> int | None:
    """The version ``If-Match`` demands, or None when the client does not care."""
    header = req.get_header("If-Match")
    if header is None or header.strip() == "*":
        return None
    tag = header.strip()
    if tag.startswith("W/"):
        tag = tag[2:]
    tag = tag.strip('"')
    if not tag.isdigit():
        raise errors.precondition_failed("If-Match must be an ETag this service issued.")
    return int(tag)
