"""``/docs``: Swagger UI over the service's own OpenAPI document, served from the service.

The UI's files come from the ``swagger-ui-bundle`` package rather than a CDN, so the page
works offline and its Content-Security-Policy can be ``script-src 'self'``: the initializer
is a static asset too (``init.js``), reading the document's URL from a ``data-`` attribute
instead of an inline script. Swagger UI injects ``<style>`` elements and data-URI icons, so
styles and images need ``'unsafe-inline'``/``data:``; nothing else is allowed.
"""

from __future__ import annotations

import html
import threading
from pathlib import Path
from typing import Final

import falcon

from aerie import errors
from aerie.endpoints import PUBLIC, endpoint
from aerie.i18n import msg

__all__ = ["ASSETS_PREFIX", "CSP", "INIT_JS", "DocsAssetResource", "DocsResource"]

ASSETS_PREFIX: Final = "/docs/assets"

CSP: Final = "; ".join(
    [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self' 'unsafe-inline'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)

#: The initializer, served as ``/docs/assets/init.js`` so no inline script is needed.
INIT_JS: Final = """\
"use strict";
window.addEventListener("load", function () {
  var root = document.getElementById("swagger-ui");
  window.ui = SwaggerUIBundle({
    url: root.getAttribute("data-openapi-url"),
    dom_id: "#swagger-ui",
    deepLinking: true,
    validatorUrl: null,
    presets: [SwaggerUIBundle.presets.apis, SwaggerUIStandalonePreset],
    plugins: [SwaggerUIBundle.plugins.DownloadUrl],
    layout: "StandaloneLayout"
  });
});
"""

_CSS = "text/css; charset=utf-8"
_JS = "text/javascript; charset=utf-8"
#: The only names served, with their content types: a fixed list, so no request can name
#: another file of the package (or, through ``..``, of the disk).
_ASSETS: Final[dict[str, str]] = {
    "index.css": _CSS,
    "swagger-ui.css": _CSS,
    "swagger-ui-bundle.js": _JS,
    "swagger-ui-standalone-preset.js": _JS,
    "favicon-16x16.png": "image/png",
    "favicon-32x32.png": "image/png",
    "init.js": _JS,
}
_GENERATED: Final[dict[str, bytes]] = {"init.js": INIT_JS.encode()}

_PAGE = """\
<!DOCTYPE html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <title>{title}</title>
  <link rel="stylesheet" href="{assets}/swagger-ui.css">
  <link rel="stylesheet" href="{assets}/index.css">
  <link rel="icon" type="image/png" href="{assets}/favicon-32x32.png" sizes="32x32">
  <link rel="icon" type="image/png" href="{assets}/favicon-16x16.png" sizes="16x16">
</head>
<body>
  <div id="swagger-ui" data-openapi-url="{openapi_url}"></div>
  <script src="{assets}/swagger-ui-bundle.js"></script>
  <script src="{assets}/swagger-ui-standalone-preset.js"></script>
  <script src="{assets}/init.js"></script>
</body>
</html>
"""


class DocsResource:
    """The Swagger UI page; rendered once, since title and document URL are fixed."""

    def __init__(self, title: str, openapi_url: str) -> None:
        page = _PAGE.format(
            title=html.escape(title),
            openapi_url=html.escape(openapi_url, quote=True),
            assets=ASSETS_PREFIX,
        )
        self._data = page.encode()

    @endpoint("Interactive API documentation (Swagger UI)", scopes=PUBLIC)
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.content_type = "text/html; charset=utf-8"
        resp.set_header("Content-Security-Policy", CSP)
        resp.set_header("X-Content-Type-Options", "nosniff")
        resp.set_header("Cache-Control", "no-cache")
        resp.data = self._data


def _bundle_dir() -> Path:
    # Imported on first use: a service that never serves /docs need not load the package.
    from swagger_ui_bundle import swagger_ui_path

    return Path(swagger_ui_path)


class DocsAssetResource:
    """Swagger UI's files, each read from the package once, on first request, then kept."""

    def __init__(self) -> None:
        self._cache: dict[str, bytes] = {}
        self._lock = threading.Lock()

    def _load(self, name: str) -> bytes:
        with self._lock:
            data = self._cache.get(name)
            if data is None:
                data = _GENERATED.get(name)
                if data is None:
                    data = (_bundle_dir() / name).read_bytes()
                self._cache[name] = data
            return data

    @endpoint("Swagger UI static asset", scopes=PUBLIC, responses={404: "Not one of the UI's assets"})
    def on_get(self, req: falcon.Request, resp: falcon.Response, name: str) -> None:
        content_type = _ASSETS.get(name)
        if content_type is None:
            raise errors.not_found(msg("No such documentation asset."))
        resp.data = self._cache.get(name) or self._load(name)
        resp.content_type = content_type
        resp.set_header("Cache-Control", "public, max-age=86400")
        resp.set_header("X-Content-Type-Options", "nosniff")
