from csp.decorators import csp_update
from django.conf import settings
from django.contrib import admin
from django.urls import include, path, re_path
from drf_spectacular.views import (
    SpectacularAPIView,
    SpectacularRedocView,
    SpectacularSwaggerSplitView,
)

from apps.api.router import router as api_router
from apps.dashboard import views as dashboard_views
from apps.ops import views as ops_views

# What ReDoc's page needs beyond the site's policy, on that page only:
# - its search runs in a worker it makes from a blob: URL;
# - as its bundle loads, before it can be handed the nonce, it adds one <style> element, empty
#   and then holding perfect-scrollbar's CSS. Those two exact contents are allowed by their
#   hashes (any other <style> still needs the nonce, which ReDoc puts on the ones it builds
#   later). They belong to drf-spectacular-sidecar's ReDoc build: an upgrade that changes the
#   CSS shows as a violation in apps/dashboard/tests/test_browser_csp.py, which names the new
#   hash.
REDOC_POLICY = {
    "worker-src": ["'self'", "blob:"],
    "style-src": [
        "'sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU='",  # the empty element
        "'sha256-QMIg+bpjm3JdElJ388KYke01izlUW0UoNOeKjpMxdgc='",  # perfect-scrollbar's CSS
    ],
}


def _redoc_policy(view):
    """REDOC_POLICY added to the enforced policy or the report-only one, whichever is on."""
    return csp_update(REDOC_POLICY, REPORT_ONLY=settings.MARKETFLUX_CSP_REPORT_ONLY)(view)


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
    # The API docs under the content security policy
    # (docs/security.md#headers-and-the-content-security-policy): Swagger UI's start-up
    # script from a URL of its own (/docs?script=), not inline; ReDoc started by a file and
    # given the request's nonce (and REDOC_POLICY, above).
    re_path(
        r"^docs/?$",
        SpectacularSwaggerSplitView.as_view(url_name="schema", template_name="api/swagger_ui.html"),
        name="docs",
    ),
    re_path(
        r"^redoc/?$",
        _redoc_policy(
            SpectacularRedocView.as_view(url_name="schema", template_name="api/redoc.html")
        ),
        name="redoc",
    ),
    path("api-auth/", include("rest_framework.urls")),
    path("admin/", admin.site.urls),
    # The Polygon/Massive-compatible gateway, at the root (docs/polygon.md).
    path("", include("apps.polygon.urls")),
    # Pages without our <link rel="icon"> (the admin, ReDoc) make browsers ask for this.
    path("favicon.ico", dashboard_views.favicon),
]
