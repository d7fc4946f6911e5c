from django.contrib import admin
from django.urls import include, path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView

from apps.api.router import router as api_router
from apps.dashboard import views as dashboard_views
from apps.ops import views as ops_views

urlpatterns = [
    path("", dashboard_views.home, name="home"),
    re_path(r"^sparklines/?$", dashboard_views.sparklines, name="sparklines"),
    # Symbol pages answer with and without the trailing slash (no redirect), like the API.
    re_path(r"^stocks/?$", dashboard_views.search, name="stock-search"),
    re_path(r"^stocks/(?P<symbol>[^/]+)/$", dashboard_views.symbol, name="stock"),
    re_path(r"^stocks/(?P<symbol>[^/]+)$", dashboard_views.symbol),
    path("accounts/", include("django.contrib.auth.urls")),
    path("alerts/", include("apps.alerts.urls")),
    path("account/", include("apps.accounts.urls")),
    re_path(r"^health/?$", ops_views.health, name="health"),
    re_path(r"^ready/?$", ops_views.ready, name="ready"),
    re_path(r"^metrics/?$", ops_views.metrics, name="metrics"),
    path("ops/", dashboard_views.ops, name="ops"),
    path("ops/status.json", dashboard_views.ops_status, name="ops-status"),
    path("api/v1/", include("apps.api.urls")),
    # The API root without its trailing slash, answered (not redirected) like every API path;
    # the include's prefix ends in a slash, so this one route sits here. It is documented
    # once, at /api/v1/.
    re_path(r"^api/v1$", api_router.get_api_root_view(schema=None)),
    re_path(r"^api/schema/?$", SpectacularAPIView.as_view(), name="schema"),
    re_path(r"^docs/?$", SpectacularSwaggerView.as_view(url_name="schema"), name="docs"),
    re_path(
        r"^redoc/?$",
        SpectacularRedocView.as_view(url_name="schema", template_name="api/redoc.html"),
        name="redoc",
    ),
    path("api-auth/", include("rest_framework.urls")),
    path("admin/", admin.site.urls),
    # The Polygon/Massive-compatible gateway, at the root (docs/polygon.md).
    path("", include("apps.polygon.urls")),
    # Pages without our <link rel="icon"> (the admin, ReDoc) make browsers ask for this.
    path("favicon.ico", dashboard_views.favicon),
]
