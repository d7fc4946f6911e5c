"""OpenAPI generation details drf-spectacular cannot infer from our permission class."""

from __future__ import annotations

from django.conf import settings
from drf_spectacular.openapi import AutoSchema

from apps.api.permissions import MarketDataPermission


class MarketFluxAutoSchema(AutoSchema):
    def get_auth(self) -> list[dict]:
        """Market data needs no credentials while MARKETFLUX_PUBLIC_READ is on: say so."""
        auths = super().get_auth()
        public = settings.MARKETFLUX_PUBLIC_READ and any(
            isinstance(p, MarketDataPermission) for p in self.view.get_permissions()
        )
        if public and {} not in auths:
            auths.append({})
        return auths
