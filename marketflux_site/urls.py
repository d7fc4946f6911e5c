from django.contrib import admin
from django.urls import path, re_path

from apps.dashboard import views as dashboard_views
from apps.ops import views as ops_views

urlpatterns = [
    path("", dashboard_views.home, name="home"),
    re_path(r"^health/?$", ops_views.health, name="health"),
    path("admin/", admin.site.urls),
]
