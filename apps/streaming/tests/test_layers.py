"""The channel layer decodes a group message once per process, and never mixes two up."""

from __future__ import annotations

from channels.layers import get_channel_layer


def test_each_payload_decodes_to_its_own_message_and_a_repeat_is_decoded_once():
    layer = get_channel_layer()
    first = layer.serialize({"type": "market.batch", "messages": [{"symbol": "AAPL"}]})
    second = layer.serialize({"type": "market.batch", "messages": [{"symbol": "MSFT"}]})
    a = layer.deserialize(first)
    assert layer.deserialize(first) is a  # every consumer of this process gets one decode
    b = layer.deserialize(second)
    assert b["messages"] == [{"symbol": "MSFT"}]
    again = layer.deserialize(first)  # an older payload is decoded afresh, not confused
    assert again["messages"] == [{"symbol": "AAPL"}]
    equal_but_not_same = bytes(bytearray(first))
    assert layer.deserialize(equal_but_not_same) == again
