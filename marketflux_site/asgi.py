"""ASGI entry point: HTTP through Django, WebSocket routes join as the apps add them."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "marketflux_site.settings")

# Django must be set up before anything imports models (consumers, routing).
django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter  # noqa: E402
from django.db import connection  # noqa: E402

from apps.market import timescale  # noqa: E402

timescale.require_if_configured(connection)  # a Timescale deployment never starts without it
connection.close()

application = ProtocolTypeRouter({"http": django_asgi_app})
