"""AlertEvent's foreign keys lose the index of their own: the unique (rule, symbol, ts) and
the (owner, -ts) index lead with them. Only the two indexes go; Django's AlterField would
also drop and re-add (and so re-validate) both foreign keys, a scan of the events table."""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models

_INDEXES = {
    "alerts_alertevent_owner_id_5cb6fe59": "owner_id",
    "alerts_alertevent_rule_id_74bf1083": "rule_id",
}


class Migration(migrations.Migration):
    dependencies = [
        ("alerts", "0003_delete_alertruleaudit"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name="alertevent",
                    name="owner",
                    field=models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="alert_events",
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
                migrations.AlterField(
                    model_name="alertevent",
                    name="rule",
                    field=models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="events",
                        to="alerts.alertrule",
                    ),
                ),
            ],
            database_operations=[
                migrations.RunSQL(
                    f'DROP INDEX IF EXISTS "{name}"',
                    f'CREATE INDEX IF NOT EXISTS "{name}" ON "alerts_alertevent" ("{column}")',
                )
                for name, column in _INDEXES.items()
            ],
        )
    ]
