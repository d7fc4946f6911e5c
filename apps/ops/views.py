from __future__ import annotations

import redis
from django.http import HttpRequest, JsonResponse
from django.views.decorators.http import require_GET

from apps.ops import status

SOURCES = "source"  # the status kind the live sources report under (apps/sources/live)


@require_GET
def health(request: HttpRequest) -> JsonResponse:
    """Liveness: the process serves requests (dependencies are readiness, not liveness).
    Where live sources run, it also shows what each last reported (docs/sources.md#state);
    a Redis it cannot reach leaves them out rather than failing the check."""
    answer: dict = {"status": "ok"}
    try:
        sources = status.read(SOURCES)
    except redis.RedisError:
        sources = None
        answer["sources_error"] = "Redis unreachable: source states unknown"
    if sources:
        answer["sources"] = sources
    return JsonResponse(answer)
