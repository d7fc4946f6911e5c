"""Request and batch ids on every log line (docs/operations.md#logs).

A request's id comes from the proxy (nginx sets `X-Request-ID`) or is made here, and a tick
batch's is its Celery task's id, given when beat sends it: one id follows a request through
the view, and a batch through every stage of the pipeline. They live in context variables,
so threads and asyncio tasks each see their own, and a log record factory copies them onto
every record, whichever handler (the console's, pytest's) formats it.
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from django.core.signals import request_finished
from django.http import HttpRequest, HttpResponse

request_id: ContextVar[str] = ContextVar("request_id", default="")
batch_id: ContextVar[str] = ContextVar("batch_id", default="")

HEADER = "X-Request-ID"
_VALID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")  # a proxy's id; anything else is replaced


def install() -> None:
    """Give every log record `request_id` and `batch_id` ("" outside one)."""
    make = logging.getLogRecordFactory()
    if getattr(make, "marketflux", False):
        return

    def record(*args, **kwargs) -> logging.LogRecord:
        made = make(*args, **kwargs)
        made.request_id = request_id.get()
        made.batch_id = batch_id.get()
        return made

    record.marketflux = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(record)
    request_finished.connect(_forget_request, dispatch_uid="marketflux-request-id")


@contextmanager
def batch(identifier: str) -> Iterator[None]:
    """Log lines inside carry `batch_id`."""
    token = batch_id.set(identifier)
    try:
        yield
    finally:
        batch_id.reset(token)


class RequestIdMiddleware:
    """The request's id: the proxy's `X-Request-ID` when it is a plain token, else a new
    one; on every log line of the request and on the response."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        given = request.headers.get(HEADER, "")
        identifier = given if _VALID.match(given) else uuid.uuid4().hex
        # Not reset on the way out: Django logs the response (a 404's "Not Found") after
        # the middleware returns; `request_finished` clears it once the response is done.
        request_id.set(identifier)
        response = self.get_response(request)
        response[HEADER] = identifier
        return response


def _forget_request(**kwargs: object) -> None:
    request_id.set("")
