"""OpenAPI generation details drf-spectacular cannot infer from our views."""

from __future__ import annotations

from django.conf import settings
from drf_spectacular.openapi import AutoSchema

from apps.api.permissions import MarketDataPermission
from apps.api.query import QUERY_VALUE_MAX


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

    def get_operation(self, *args, **kwargs) -> dict | None:
        """Each query parameter's limits as `apps.api.query` enforces them, published so
        clients (and the schema fuzz) see them: a string is 1 to QUERY_VALUE_MAX characters
        unless it says otherwise, and one whose schema allows 0 says `allowEmptyValue`."""
        operation = super().get_operation(*args, **kwargs)
        for parameter in (operation or {}).get("parameters", ()):
            schema = parameter["schema"]
            if parameter["in"] != "query" or schema.get("type") != "string":
                continue
            if "enum" not in schema:
                schema.setdefault("maxLength", QUERY_VALUE_MAX)
            if schema.get("minLength") == 0:
                parameter["allowEmptyValue"] = True
            else:
                schema.setdefault("minLength", 1)
        return operation
