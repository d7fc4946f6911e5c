from django.apps import AppConfig


class AlertsConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "apps.alerts"
    verbose_name = "Alerts"

    def ready(self) -> None:
        from apps.alerts import signals  # noqa: F401  (rule changes refresh the pipeline's index)
