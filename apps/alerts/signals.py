"""Any change to the rules tells every pipeline worker to reload its rule index."""

from __future__ import annotations

from django.db import transaction
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from apps.alerts.models import AlertRule
from apps.market import keys
from apps.ops.redis_client import redis_client


def _bump_version() -> None:
    from apps.alerts.evaluation import new_rules_version

    redis_client().set(keys.ALERT_RULES_VERSION, new_rules_version())


@receiver(post_save, sender=AlertRule)
@receiver(post_delete, sender=AlertRule)
def rules_changed(**kwargs) -> None:
    # Also for changes made outside `services` (a shell, a bulk script): the index is a
    # cache of the table, and the table is what counts.
    transaction.on_commit(_bump_version)
