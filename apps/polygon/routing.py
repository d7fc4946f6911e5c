"""The gateway's WebSocket route: `/stocks`, where the vendor's clients connect
(`WebSocketClient(feed="host:port", market="stocks")`; docs/polygon.md#websocket)."""

from django.urls import re_path

from apps.polygon.consumers import StocksConsumer

websocket_urlpatterns = [
    re_path(r"^stocks/?$", StocksConsumer.as_asgi()),
]
