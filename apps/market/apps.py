from django.apps import AppConfig
from django.db.models.signals import post_migrate


def _apply_timescale_policies(sender, using, **kwargs) -> None:
    from django.db import connections

    from apps.market import timescale

    timescale.apply_policies(connections[using])


class MarketConfig(AppConfig):
    name = "apps.market"
    label = "market"
    verbose_name = "Market data"

    def ready(self) -> None:
        from apps.market import checks  # noqa: F401  (registers the Timescale check)

        post_migrate.connect(_apply_timescale_policies, sender=self)
