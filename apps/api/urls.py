"""/api/v1/ routes: the router's (apps/api/router.py), and the token endpoint, which is not
a viewset. Every path answers with and without its trailing slash (no redirect)."""

from __future__ import annotations

from django.urls import re_path

from apps.api import views
from apps.api.router import router

urlpatterns = [
    *router.urls,
    re_path(r"^auth/token/?$", views.OwnToken.as_view(), name="auth-token"),
]
