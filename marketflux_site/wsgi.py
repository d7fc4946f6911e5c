"""WSGI entry point: plain HTTP (pages, REST, admin, static files) on granian's processes
and threads (marketflux_site/serving.py); WebSockets are the ASGI tier's (asgi.py)."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "marketflux_site.settings")

application = get_wsgi_application()

from django.db import connection  # noqa: E402

from apps.market import timescale  # noqa: E402

timescale.require_if_configured(connection)  # as asgi.py: never serve without it when required
connection.close()
