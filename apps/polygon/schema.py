"""How the gateway's key appears in the OpenAPI schema: a bearer token (`?apiKey=` works too)."""

from __future__ import annotations

from drf_spectacular.extensions import OpenApiAuthenticationExtension


class ApiKeyScheme(OpenApiAuthenticationExtension):
    target_class = "apps.polygon.auth.ApiKeyAuthentication"
    name = "polygonKey"

    def get_security_definition(self, auto_schema):
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "A user's API token: `Authorization: Bearer <key>` or `?apiKey=<key>`.",
        }
