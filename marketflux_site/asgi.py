"""ASGI entry point: HTTP through Django, WebSockets through Channels consumers."""

import gc
import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "marketflux_site.settings")

# Django must be set up before anything imports models (consumers, routing).
django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.db import connection  # noqa: E402

from apps.market import timescale  # noqa: E402
from apps.polygon.routing import websocket_urlpatterns as polygon_urlpatterns  # noqa: E402
from apps.streaming.auth import TokenAuthMiddleware, allowed_hosts_origin_validator  # noqa: E402
from apps.streaming.limits import ConnectionLimitMiddleware  # noqa: E402
from apps.streaming.routing import websocket_urlpatterns  # noqa: E402

timescale.require_if_configured(connection)  # a Timescale deployment never starts without it
connection.close()

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        # At most MARKETFLUX_WS_MAX_PER_IP sockets per client address in this process,
        # checked first, before anything costs a query (apps/streaming/limits.py).
        # A browser's Origin must be one of ALLOWED_HOSTS; programs that send none pass.
        # Session cookies identify browsers, ?token= programs. The gateway's /stocks goes
        # first: the streaming routes end with a catch-all.
        "websocket": ConnectionLimitMiddleware(
            allowed_hosts_origin_validator(
                AuthMiddlewareStack(
                    TokenAuthMiddleware(URLRouter([*polygon_urlpatterns, *websocket_urlpatterns]))
                )
            )
        ),
    }
)

# Leave what start-up created out of garbage collection, as the Celery workers do
# (marketflux_site/celery.py). With 5,000 sockets open a full collection walked about 800,000
# objects and held the event loop 0.6-0.7 s (gc.callbacks, bench/ws_fanout.py at 5,000
# clients): every batch in that time waits. About 160,000 of them, those left once every socket
# has closed, are start-up's modules, classes and settings, which are never garbage.
gc.freeze()
