"""WebSocket close codes MarketFlux uses (4000-4999 are the application's own)."""

UNAUTHORIZED = 4401  # no login while MARKETFLUX_PUBLIC_READ=0, or a bad ?token=
FORBIDDEN = 4403  # signed in, but the user's role does not read market data (docs/security.md)
UNKNOWN_SYMBOL = 4404
UNKNOWN_PATH = 4404  # no feed at that path: the same "not found" as an unknown symbol
FLOODING = 4429  # more than 20 messages in a second, or 40 answers left unread
# MARKETFLUX_WS_MAX_PER_IP sockets already open from the client's address (in this process):
# the handshake is accepted and closed at once (apps/streaming/limits.py). The same number
# as flooding, HTTP's 429: too many, back off and retry.
TOO_MANY_CONNECTIONS = 4429
