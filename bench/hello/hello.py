"""The baseline: a bare Falcon app that answers ``GET /`` and ``GET /ready`` with a small body.

It runs under the very uWSGI settings every Aerie service uses (``uwsgi.ini`` beside this
file includes ``shared/uwsgi/base.ini``), so the ratio of a service's rate to this one's is
the cost of the service's own code: middleware, auth, Redis and serialisation.
"""

from __future__ import annotations

import falcon

__all__ = ["application"]


class Hello:
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = {"hello": "world"}


class Ready:
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = {"status": "ready"}


def create_app() -> falcon.App:
    app = falcon.App()
    app.add_route("/", Hello())
    app.add_route("/hello", Hello())
    app.add_route("/ready", Ready())
    return app


application = create_app()
