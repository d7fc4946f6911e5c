"""The alerts page (/alerts/) and its POST-only buttons."""

from __future__ import annotations

from django.urls import path

from apps.alerts import views

app_name = "alerts"
urlpatterns = [
    path("", views.index, name="index"),
    path("rules/<int:pk>/active", views.rule_active, name="rule-active"),
    path("rules/<int:pk>/delete", views.rule_delete, name="rule-delete"),
    path("events/<int:pk>/acknowledge", views.event_acknowledge, name="event-acknowledge"),
]
