"""Each request's changes are audited as made through its door, by its user, from its
client's address (docs/security.md#audit-log)."""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse

from apps.accounts import audit


class AuditDoorMiddleware:
    """After AuthenticationMiddleware. The user is read when an entry is written, not here:
    DRF authenticates a token only inside the view."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        with audit.door(
            audit.door_for_path(request.path_info),
            actor=lambda: getattr(request, "user", None),
            remote_addr=audit.client_ip(request),
        ):
            return self.get_response(request)
