"""The WSGI entry point uWSGI loads (``module = audit.wsgi:application``).

On a configuration error ``get_app()`` has printed one line and returned None; leaving
``application`` undefined makes uWSGI's ``need-app`` stop the instance.
"""

from audit.app import get_app

_app = get_app()
if _app is not None:
    application = _app
