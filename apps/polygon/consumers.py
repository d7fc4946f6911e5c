"""The vendor's WebSocket `/stocks` (docs/polygon.md#websocket): `T` trades, `Q` quotes and
`A`/`AM` aggregates over the same fan-out as `/ws/market`.

The consumer owns the connection: the vendor's handshake, authentication, subscriptions by
topic and the flood limits (`FeedConsumer`). Once authenticated, the socket joins the
process's broadcaster under its topics; the broadcaster's gateway feed (`feed.py`) turns
each batch into events once per set of topics. The write backpressure is `/ws/market`'s:
pending events coalesce per kind and symbol while the client does not read.
"""

from __future__ import annotations

import orjson
from channels.db import database_sync_to_async
from django.conf import settings

from apps.accounts import roles
from apps.polygon import messages, selectors
from apps.polygon.auth import stream_key_user
from apps.polygon.feed import FRAMING, GATEWAY, SERVED, Topics
from apps.streaming import close_codes
from apps.streaming.broadcast import next_batch
from apps.streaming.consumers import FeedConsumer, may
from apps.streaming.messages import BadMessage, is_ticker, read_message, shown


def _dumps(payload: object) -> str:
    return orjson.dumps(payload).decode()


# (user, refused) for a key, as `apps.polygon.auth` reads REST keys.
_key_user = database_sync_to_async(stream_key_user)


class StocksConsumer(FeedConsumer):
    """`/stocks`: the vendor's handshake (connected, auth), subscriptions by topic
    (`T.AAPL`, `AM.*`), then `T`, `Q`, `A` and `AM` messages. Every frame is a JSON array."""

    framing = FRAMING

    async def connect(self) -> None:
        # `FeedConsumer.connect` checks the caller at the handshake; here the key comes
        # later, in the auth action, so the socket opens for everyone.
        self.open_flow()
        self.authenticated = False
        self.topics = self.socket.state = Topics()
        await self.accept()
        self.socket.start([messages.status("connected", "Connected Successfully")])

    async def answer(self, text: str | None, data: bytes | None) -> list[dict]:
        """Statuses answering a client message; a bad one gets an `error` status naming
        what is wrong and the socket stays open (docs/contracts.md#bad-messages)."""
        try:
            action, request = read_message(text, data, messages.STOCKS_MESSAGES)
        except BadMessage as bad:
            return [messages.status("error", str(bad))]
        params = request["params"]
        if action == "auth":
            return await self._auth(params)
        if not self.authenticated:
            return [messages.status("error", 'not authorized: send {"action":"auth",'
                                  '"params":KEY} first')]  # fmt: skip
        topics = [t.strip() for t in params.split(",") if t.strip()]
        if not topics:  # "," or " , ": nothing to answer one status each for
            return [messages.status("error", f'"params" must be {messages.TOPICS.rule}')]
        return await self._change(action, topics)

    async def _auth(self, params: object) -> list[dict]:
        if self.authenticated:
            return [messages.status("success", "already authenticated")]
        key = (
            params
            if isinstance(params, str) and params.strip() and len(params) <= messages.MAX_KEY_CHARS
            else None
        )
        user, refused = await _key_user(key) if key is not None else (None, False)
        if refused or (user is None and not settings.MARKETFLUX_PUBLIC_READ):
            return await self._refuse("authentication failed", close_codes.UNAUTHORIZED)
        if user is not None and not (await may(user, roles.READ_MARKET))[roles.READ_MARKET]:
            # Public read off, and the key's owner has no role that reads the market.
            return await self._refuse("not authorized", close_codes.FORBIDDEN)
        if key is None:  # public read: any key, but a key
            return [messages.status("error", '"params" must be your API key, a string of at '
                                  f"most {messages.MAX_KEY_CHARS} characters")]  # fmt: skip
        self.authenticated = True
        await self.broadcaster.join(self.socket, GATEWAY, self.topics.key())
        return [messages.status("auth_success", "authenticated")]

    async def _refuse(self, text: str, code: int) -> list[dict]:
        """`auth_failed`, then the close: the client raises AuthError on this frame and does
        not reconnect."""
        await self.socket.flush()  # what went before it (off Daphne, still in flight)
        await self.send(text_data=_dumps([messages.status("auth_failed", text)]))
        await self.close(code=code)
        return []

    async def _change(self, action: str, topics: list[str]) -> list[dict]:
        parsed = []
        for topic in topics:
            prefix, _, symbol = topic.partition(".")
            parsed.append((topic, prefix, symbol if symbol == "*" else symbol.upper()))
        named = {s for _, p, s in parsed if p in SERVED and is_ticker(s)}
        known = (
            await database_sync_to_async(selectors.known_tickers)(tickers=named) if named else set()
        )
        replies = []
        since = next_batch()
        for topic, prefix, symbol in parsed:
            if prefix not in SERVED or not (symbol == "*" or is_ticker(symbol)):
                replies.append(messages.status("error", f"{shown(topic)}: unknown topic in "
                                             '"params"; served: T, Q, A and AM, as T.<symbol> '
                                             "or T.*"))  # fmt: skip
            elif symbol != "*" and symbol not in known:
                replies.append(messages.status("error", f"{topic}: unknown symbol"))
            elif action == "subscribe":
                self.topics.add(prefix, symbol, since)
                replies.append(messages.status("success", f"subscribed to: {prefix}.{symbol}"))
            else:
                self.topics.discard(prefix, symbol)
                replies.append(messages.status("success", f"unsubscribed to: {prefix}.{symbol}"))
        # The new topics take effect with the next batch the broadcaster delivers; the
        # answers are written before it (nothing awaits between here and the write).
        self.broadcaster.move(self.socket, GATEWAY, self.topics.key())
        return replies
