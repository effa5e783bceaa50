"""The WSGI entry point uWSGI loads (``module = tenants.wsgi:application``)."""

from tenants.app import get_app

application = get_app()
