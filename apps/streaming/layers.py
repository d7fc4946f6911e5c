"""The channel layer MarketFlux runs on (see CHANNEL_LAYERS in settings for why pub/sub)."""

from __future__ import annotations

from channels_redis.pubsub import RedisPubSubChannelLayer


class Prepared(dict):
    """A group message serialized ahead of its send (`FanOutChannelLayer.prepare`)."""

    __slots__ = ("payload",)


class FanOutChannelLayer(RedisPubSubChannelLayer):
    """Channels' Redis pub/sub layer, decoding each group message once per process.

    A group message reaches every consumer of this process as the same bytes object (the
    layer hands one received payload to each member's queue), and each consumer decoded it
    again: at 1,000 sockets, 1,000 msgpack decodes of every batch. Consumers treat the
    decoded message as read-only, so they can share it.
    """

    _last: tuple[bytes | None, object] = (None, None)

    def prepare(self, message: dict) -> Prepared:
        """Serialize a message now (on any thread), so that sending it later does not: the
        pipeline prepares a 5,000-tick batch while PostgreSQL stores it."""
        prepared = Prepared(message)
        prepared.payload = super().serialize(message)
        return prepared

    def serialize(self, message) -> bytes:
        if type(message) is Prepared:
            return message.payload
        return super().serialize(message)

    def deserialize(self, message: bytes):
        raw, decoded = self._last
        if message is not raw:
            decoded = super().deserialize(message)
            self._last = (message, decoded)
        return decoded
