"""WebSocket routes; each answers with and without a trailing slash."""

from django.urls import re_path

from apps.streaming.consumers import MarketConsumer, StockConsumer

websocket_urlpatterns = [
    re_path(r"^ws/stocks/(?P<symbol>[^/]+)/?$", StockConsumer.as_asgi()),
    re_path(r"^ws/market/?$", MarketConsumer.as_asgi()),
]
