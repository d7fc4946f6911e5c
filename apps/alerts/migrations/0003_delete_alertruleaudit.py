"""The alert audit's table goes: its rows are in the audit log (0002)."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("alerts", "0002_alert_audit_to_auditlog"),
    ]

    operations = [
        migrations.DeleteModel(
            name="AlertRuleAudit",
        ),
    ]
