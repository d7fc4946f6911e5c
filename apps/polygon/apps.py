from django.apps import AppConfig


class PolygonConfig(AppConfig):
    name = "apps.polygon"
    label = "polygon"
    verbose_name = "Polygon-compatible gateway"

    def ready(self) -> None:
        from apps.polygon import schema  # noqa: F401  (registers the key's OpenAPI scheme)
