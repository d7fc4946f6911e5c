"""WebSocket routes; each answers with and without a trailing slash. Any other path is
closed with 4404."""

from django.urls import re_path

from apps.streaming.consumers import MarketConsumer, NoSuchFeed, StockConsumer

websocket_urlpatterns = [
    re_path(r"^ws/stocks/(?P<symbol>[^/]+)/?$", StockConsumer.as_asgi()),
    re_path(r"^ws/market/?$", MarketConsumer.as_asgi()),
    re_path(r"", NoSuchFeed.as_asgi()),  # last: whatever the routes above do not match
]
