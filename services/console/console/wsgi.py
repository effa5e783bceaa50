"""The WSGI entry point uWSGI loads (``module = console.wsgi:application``).

On a configuration error ``get_app()`` has printed one line and returned None; leaving
``application`` undefined makes uWSGI's ``need-app`` stop the instance. The app runs
behind ``aerie.wsgi_guard``, which refuses heads uWSGI could not hold whole and hands it
chunked bodies de-chunked.
"""

from aerie.wsgi_guard import guarded
from console.app import get_app

_app = get_app()
if _app is not None:
    application = guarded(_app)
