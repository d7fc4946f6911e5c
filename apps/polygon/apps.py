from django.apps import AppConfig


class PolygonConfig(AppConfig):
    name = "apps.polygon"
    label = "polygon"
    verbose_name = "Polygon-compatible gateway"
