"""The one router of the REST API: every viewset under `/api/v1/` registers here.

Its root, `GET /api/v1/`, lists every endpoint group (the browsable API's front page in a
browser, JSON otherwise). Every path answers with and without its trailing slash, with no
redirect (docs/contracts.md#rest-api).
"""

from __future__ import annotations

from drf_spectacular.utils import OpenApiExample, OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.routers import APIRootView, DefaultRouter
from rest_framework.schemas.inspectors import DefaultSchema

from apps.accounts.tokens import TokenScopes
from apps.api import alerts, tokens, views
from apps.api.permissions import MarketDataPermission
from apps.api.query import CheckedQuery
from apps.api.serializers import DetailSerializer


class Router(DefaultRouter):
    """A `DefaultRouter` whose routes end in `/?` (with or without the slash, no redirect)
    and that adds no `.json`-style suffix routes: the paths are exactly the contract's.

    Its root also lists the endpoints that are not viewsets (`list_also`).
    """

    include_format_suffixes = False

    def __init__(self) -> None:
        super().__init__()
        self.trailing_slash = "/?"
        self._also_listed: dict[str, str] = {}

    def list_also(self, prefix: str, url_name: str) -> None:
        """List the route named `url_name` (routed in urls.py) in the root as `prefix`."""
        self._also_listed[prefix] = url_name

    def root_entries(self) -> dict[str, str]:
        """What the root lists: each group's name and the URL name it links to."""
        list_name = self.routes[0].name
        registered = {
            prefix: list_name.format(basename=basename) for prefix, _, basename in self.registry
        }
        return {**registered, **self._also_listed}

    def get_api_root_view(self, api_urls=None, **initkwargs):
        return self.APIRootView.as_view(api_root_dict=self.root_entries(), **initkwargs)


router = Router()
router.register("stocks", views.StockViewSet, basename="stock")
router.register("market/overview", views.MarketOverviewViewSet, basename="market-overview")
router.register("alerts/rules", alerts.RuleViewSet, basename="alert-rule")
router.register("alerts/events", alerts.EventViewSet, basename="alert-event")
router.register("tokens", tokens.TokenViewSet, basename="api-token")
# One operation on the caller's own token (show, create, revoke), not a collection: an
# APIView that urls.py routes, listed in the root all the same.
router.list_also("auth/token", "auth-token")


# The root's answer, one absolute URL per group, described from the router itself.
RootSerializer = type(
    "ApiRoot",
    (serializers.Serializer,),
    {prefix: serializers.URLField() for prefix in router.root_entries()},
)
_EXAMPLE_HOST = "https://marketflux.example"


class ApiRoot(CheckedQuery, APIRootView):
    """The MarketFlux REST API (docs/contracts.md#rest-api): market data, your alerts and
    your API tokens. OpenAPI document at /api/schema/, Swagger UI at /docs, ReDoc at /redoc."""

    # As public as the market data it leads to. Roles here; a token's scopes are checked
    # by apps.accounts.tokens.TokenScopes.
    permission_classes = [MarketDataPermission, TokenScopes]
    schema = DefaultSchema()  # DRF leaves its root out of the schema; this one is documented

    @extend_schema(
        operation_id="api_root",
        responses={
            200: RootSerializer,
            401: OpenApiResponse(
                DetailSerializer, description="MARKETFLUX_PUBLIC_READ=0 and no login."
            ),
            403: OpenApiResponse(
                DetailSerializer,
                description="MARKETFLUX_PUBLIC_READ=0 and your role reads no market.",
            ),
            429: OpenApiResponse(DetailSerializer, description="Throttled: see Retry-After."),
        },
        examples=[
            OpenApiExample(
                "Every endpoint group",
                response_only=True,
                value={p: f"{_EXAMPLE_HOST}/api/v1/{p}" for p in router.root_entries()},
            )
        ],
    )
    def get(self, request: Request, *args, **kwargs) -> Response:
        """Every endpoint group of the API, each with its URL."""
        return super().get(request, *args, **kwargs)


router.APIRootView = ApiRoot
