from django.apps import AppConfig
from django.db import transaction
from django.db.models.signals import post_delete, post_migrate


def _apply_timescale_policies(sender, using, **kwargs) -> None:
    from django.db import connections

    from apps.market import timescale

    timescale.apply_policies(connections[using])


def _forget_deleted_symbol(sender, instance, **kwargs) -> None:
    """A deleted symbol leaves no hot state behind: the API takes a hot state as proof that
    a symbol exists, and a later symbol of the same ticker starts afresh."""
    from apps.market import keys
    from apps.ops.redis_client import redis_client

    ticker = instance.ticker  # read now: Django clears the primary key once deleted

    def forget() -> None:
        pipe = redis_client().pipeline(transaction=False)
        pipe.delete(keys.hot(ticker))
        pipe.hdel(keys.PIPELINE_STATE, ticker)
        pipe.execute()

    transaction.on_commit(forget)


class MarketConfig(AppConfig):
    name = "apps.market"
    label = "market"
    verbose_name = "Market data"

    def ready(self) -> None:
        from apps.market import checks  # noqa: F401  (registers the Timescale check)

        post_migrate.connect(_apply_timescale_policies, sender=self)
        post_delete.connect(_forget_deleted_symbol, sender=self.get_model("Symbol"))
