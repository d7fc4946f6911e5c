"""Bad client messages generated from a feed's declared messages
(`apps.streaming.messages.MARKET_MESSAGES`, `apps.polygon.messages.STOCKS_MESSAGES`), and a
client that sends them to a real Daphne (docs/contracts.md#bad-messages).

Each `Case` is one frame (or, for the protocol, raw bytes) and what a user must see: an
`error` naming `names` and the socket still open, or the socket closed with `closes`.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from apps.streaming.messages import KEY, SECONDS, TEXT, TICKERS, Field

LONG = 60_000  # characters: a very long value whose message stays under 64 KiB
OVER_LIMIT = 100_000  # characters: its message is over 64 KiB, refused unread
DAPHNE_LIMIT = 1024 * 1024  # Daphne's websocket_max_message_size (its default, not changed)
# Daphne (autobahn, failByDrop) ends the TCP connection on a protocol violation, with no
# close frame: the client sees code 1006 (closed abnormally).
DROPPED = 1006

# A valid value of each kind, and values of the wrong JSON type.
VALID = {TICKERS: ["AAPL"], SECONDS: 0, TEXT: "T.AAPL", KEY: "any-key"}
WRONG_TYPES: dict[str, dict[str, object]] = {
    TICKERS: {"a number": 42, "an object": {"AAPL": True}, "null": None, "a bool": True,
              "a single ticker string": "AAPL", "a list of numbers": [1, 2],
              "a list with null": ["AAPL", None], "a list with an object": [{}],
              "a list with an empty ticker": [""], "a list with a blank ticker": ["   "],
              "a list with a malformed ticker": ["AA PL"], "a list with a long ticker": ["A" * 17],
              "a list with a non-ASCII ticker": ["ß"], "a ticker with a newline": ["AAPL\n"]},
    SECONDS: {"a string": "1", "a list": [1], "an object": {"s": 1}, "null": None,
              "a bool": True, "negative": -1, "too large": 1e308},
    TEXT: {"a number": 42, "a list": ["T.AAPL"], "an object": {"T": "AAPL"}, "null": None,
           "a bool": True},
    KEY: {"a number": 42, "a list": ["key"], "an object": {"key": 1}, "null": None,
          "a bool": False},
}  # fmt: skip


@dataclass(frozen=True)
class Case:
    """One bad input and what a user must get back."""

    id: str
    text: str | None = None  # a text frame
    data: bytes | None = None  # a binary frame
    invalid_text: bytes | None = None  # a text frame whose bytes are not UTF-8
    action: str | None = None  # the action it is about (the gateway authenticates first)
    names: tuple[str, ...] = ()  # what the error must name (any case)
    closes: int | None = None  # the close code, for protocol violations
    field: str | None = None  # the field an error's `field` names (on /ws/market)


def valid_message(action: str, fields: Mapping[str, Field]) -> dict:
    return {"action": action, **{n: VALID[f.kind] for n, f in fields.items() if f.required}}


def cases(declared: Mapping[str, Mapping[str, Field]]) -> list[Case]:
    """Every bad input for a feed: the protocol's, each action's, and each field's."""
    some_action = next(iter(declared), "subscribe")
    takes_messages = bool(declared)  # a feed that takes no messages answers every one the same
    name = ("action",) if takes_messages else ()
    out = [
        Case("not JSON", text="subscribe AAPL", names=("JSON",)),
        Case("broken JSON", text='{"action": "subscribe"', names=("JSON",)),
        Case("empty frame", text="", names=("JSON",)),
        Case("blank frame", text="   ", names=("JSON",)),
        Case("a lone surrogate escape", text='{"action": "\\ud800"}', names=("JSON",)),
        Case("NaN", text='{"action": NaN}', names=("JSON",)),
        Case("nested too deep", text="[" * 30_000 + "]" * 30_000, names=("JSON",)),
        Case("a JSON array", text='["subscribe"]', names=name),
        Case("a JSON string", text='"subscribe"', names=name),
        Case("a JSON number", text="42", names=name),
        Case("JSON null", text="null", names=name),
        Case("an empty object", text="{}", names=name),
        Case("an unknown action", text=json.dumps({"action": "buy"}), names=name),
        Case("an empty action", text=json.dumps({"action": ""}), names=name),
        Case("a blank action", text=json.dumps({"action": "   "}), names=name),
        Case("a long action", text=json.dumps({"action": "x" * LONG}), names=name),
        Case("a repeated action",
             text=f'{{"action": "{some_action}", "action": "{some_action}"}}', names=name),
        Case(f"a message over 64 KiB ({OVER_LIMIT:,} characters)",
             text=json.dumps({"action": "x" * OVER_LIMIT}), names=("too large", "65536")),
        Case("a binary frame of JSON", data=b'{"action": "subscribe"}', names=("binary",)),
        Case("a binary frame not UTF-8", data=b"\xff\xfe\x00 \xc3\x28", names=("binary",)),
        Case("a text frame not UTF-8", invalid_text=b'{"action": "\xff\xfe"}',
             closes=DROPPED),
        Case("a message over Daphne's 1 MiB", text=" " * (DAPHNE_LIMIT + 1), closes=DROPPED),
    ]  # fmt: skip
    for type_name, value in WRONG_TYPES[TEXT].items():
        out.append(Case(f"action: {type_name}", text=json.dumps({"action": value}), names=name))
    for action, fields in declared.items():
        valid = valid_message(action, fields)
        unknown = json.dumps({**valid, "bogus": 1})
        out.append(Case(f"{action}: an unknown field", text=unknown, action=action,
                        names=("bogus",)))  # fmt: skip
        for field_name, field in fields.items():
            out += field_cases(action, valid, field_name, field)
    return out


WAIT = 30.0


def ws_url(base: str, path: str) -> str:
    return base.replace("http://", "ws://", 1) + path


class Ticks:
    """AAPL ticks through the real pipeline (`pipeline.ingest`), as the worker sends them:
    what proves a socket still works is that it gets them."""

    def __init__(self) -> None:
        from datetime import UTC, datetime, timedelta

        self.start = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
        self.slot = 0

    def push(self) -> float:
        """One AAPL tick; its price, as a message carries it."""
        from datetime import timedelta

        from apps.ingest.pipeline import TickBatch, ingest

        ts = self.start + timedelta(seconds=0.5 * self.slot)
        self.slot += 1
        price = 100.0 + self.slot / 100
        ingest(TickBatch.from_rows([("AAPL", ts, price, 100)]))
        return price


def send(ws, case: Case) -> None:
    """The case's frame, as it is: text, binary, or text bytes that are not UTF-8."""
    if case.invalid_text is not None:
        ws.send(case.invalid_text, text=True)  # websockets does not check what it sends
    elif case.data is not None:
        ws.send(case.data)
    else:
        ws.send(case.text)


def messages_of(frame: str) -> list[dict]:
    """A frame's messages, for feeds that frame them in arrays and one per frame alike."""
    value = json.loads(frame)
    return value if isinstance(value, list) else [value]


def read_until(ws, done) -> list[dict]:
    """Messages up to and including the frame where `done(messages)` holds."""
    received: list[dict] = []
    while not done(received):
        received += messages_of(ws.recv(timeout=WAIT))
    return received


def named(message: str, names: tuple[str, ...]) -> list[str]:
    """What of `names` an error's text leaves out."""
    return [n for n in names if n.lower() not in message.lower()]


def open_socket(base: str, path: str) -> ClientConnection:
    return connect(ws_url(base, path), proxy=None, max_size=None, open_timeout=WAIT)


def problems_after(
    case: Case, ws, errors: Callable[[list[dict]], list[dict]], *, field_key: bool = True
) -> list[str]:
    """What is wrong with the answer to `case` on `ws` (an empty list: nothing)."""
    send(ws, case)
    if case.closes is not None:
        try:
            read_until(ws, lambda r: False)
        except ConnectionClosed as closed:
            code = closed.rcvd.code if closed.rcvd else 1006  # no close frame came
            return [] if code == case.closes else [f"closed with {code}, not {case.closes}"]
        return ["not closed"]
    received = read_until(ws, lambda r: errors(r))
    (error,) = errors(received)
    missing = named(error["message"], case.names)
    if field_key and case.field is not None and error.get("field") != case.field:
        missing.append(f"field={case.field}")
    return [f"the error {error!r} does not name {missing}"] if missing else []


@contextlib.contextmanager
def reopened(base: str, path: str, ws, case: Case):
    """`ws`, or where the case broke the protocol (that socket is gone), a new socket past
    its first message: the server serves on."""
    if case.closes is None:
        yield ws
        return
    with open_socket(base, path) as still:
        read_until(still, lambda r: r)
        yield still


def check_log(procs) -> None:
    """Daphne wrote no traceback, whatever the clients sent."""
    log = procs.log("web")
    assert "Traceback" not in log, log[-4000:]


def field_cases(action: str, valid: dict, name: str, field: Field) -> list[Case]:
    """Bad values of one field of a valid message: empty, blank, missing (when required),
    each wrong type, very long, over the limit, given twice."""

    def case(what: str, text: str, names: tuple[str, ...] = (name,)) -> Case:
        field_named = name if names == (name,) else None
        return Case(f"{action}.{name}: {what}", text=text, action=action, names=names,
                    field=field_named)  # fmt: skip

    def with_value(value: object) -> str:
        return json.dumps({**valid, name: value})

    out = [case("empty", with_value("")), case("blank", with_value("   "))]
    if field.required:
        out.append(case("missing", json.dumps({k: v for k, v in valid.items() if k != name})))
    out += [case(what, with_value(value)) for what, value in WRONG_TYPES[field.kind].items()]
    out.append(case(f"{LONG:,} characters", with_value("x" * LONG)))
    out.append(case(f"{OVER_LIMIT:,} characters", with_value("x" * OVER_LIMIT),
                    names=("too large", "65536")))  # fmt: skip
    once = json.dumps({**valid, name: VALID[field.kind]})
    out.append(
        case("repeated", once[:-1] + f", {json.dumps(name)}: {json.dumps(VALID[field.kind])}}}")
    )
    return out
