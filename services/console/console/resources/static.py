"""``/static/{name}``: the console's own assets, styles and scripts (no CDN: the CSP allows only these)."""

from __future__ import annotations

from pathlib import Path

import falcon

from aerie.i18n import msg

STATIC = Path(__file__).resolve().parents[1] / "static"
TYPES = {".css": "text/css; charset=utf-8", ".svg": "image/svg+xml", ".js": "text/javascript; charset=utf-8"}


class StaticAsset:
    def __init__(self) -> None:
        # Read once: the set is small, fixed, and a name from the URL never reaches the disk.
        self._files = {p.name: (p.read_bytes(), TYPES[p.suffix]) for p in STATIC.iterdir() if p.suffix in TYPES}

    def on_get(self, req: falcon.Request, resp: falcon.Response, name: str) -> None:
        found = self._files.get(name)
        if found is None:
            raise falcon.HTTPNotFound(title=msg("Not found"), description=msg("There is no such file."))
        resp.data, resp.content_type = found
        resp.set_header("Cache-Control", "public, max-age=3600")
