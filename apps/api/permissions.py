"""Who may read what through the API."""

from __future__ import annotations

from django.conf import settings
from rest_framework.permissions import BasePermission


class MarketDataPermission(BasePermission):
    """Market data is public by default; MARKETFLUX_PUBLIC_READ=0 makes it login-only."""

    message = "Authentication credentials were not provided (MARKETFLUX_PUBLIC_READ is off)."

    def has_permission(self, request, view) -> bool:
        return settings.MARKETFLUX_PUBLIC_READ or bool(
            request.user and request.user.is_authenticated
        )
