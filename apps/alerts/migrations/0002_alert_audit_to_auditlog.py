"""Copy the alert audit (AlertRuleAudit) into the audit log (django-auditlog's LogEntry).

Each row becomes one entry on its rule, as auditlog writes them for AlertRule today
(apps/accounts/audit.py): the same actor and time, the action, the changes keyed by field
name (`owner`, not `owner_id`) with times written as auditlog writes them, the door from the
row's `source`, and the rule's text as it was after the change (before it, for a delete).
The next migration drops the old table. Going back keeps the log as it is.
"""

from datetime import UTC, datetime

from django.db import migrations

ACTIONS = {"create": 0, "update": 1, "delete": 2}  # auditlog's LogEntry.Action
TIMES = {"expires_at"}  # stored as ISO 8601 by the old audit
BATCH = 1000


def _field(name: str) -> str:
    return name.removesuffix("_id")


def _value(name: str, value):
    """A time as auditlog keeps one: naive UTC, `str(datetime)`."""
    if name in TIMES and isinstance(value, str):
        return str(datetime.fromisoformat(value).astimezone(UTC).replace(tzinfo=None))
    return value


def _rule_text(rule_id: int, state: dict) -> str:
    """AlertRule.__str__ of the rule as it stood (apps/alerts/models.py)."""
    threshold = state.get("threshold")
    level = "" if threshold is None else f" {threshold:g}"
    return f"#{rule_id} {state.get('symbol_id') or '*'} {state.get('condition') or '?'}{level}"


def _texts(Audit, AlertRule) -> dict[int, str]:
    """Each old row's rule text, replaying every rule's changes in order."""
    current = {
        row["id"]: row
        for row in AlertRule.objects.values("id", "symbol_id", "condition", "threshold")
    }
    texts, rule_id, state = {}, None, {}
    for row in Audit.objects.order_by("rule_id", "at", "id").values(
        "id", "rule_id", "action", "changes"
    ):
        if row["rule_id"] != rule_id:
            rule_id, state = row["rule_id"], dict(current.get(row["rule_id"], {}))
        side = 0 if row["action"] == "delete" else 1
        state.update({name: pair[side] for name, pair in (row["changes"] or {}).items()})
        texts[row["id"]] = _rule_text(rule_id, state)
    return texts


def copy_to_auditlog(apps, schema_editor):
    Audit = apps.get_model("alerts", "AlertRuleAudit")
    if not Audit.objects.exists():
        return
    AlertRule = apps.get_model("alerts", "AlertRule")
    LogEntry = apps.get_model("auditlog", "LogEntry")
    ContentType = apps.get_model("contenttypes", "ContentType")
    rule_type, _ = ContentType.objects.get_or_create(app_label="alerts", model="alertrule")
    texts = _texts(Audit, AlertRule)
    batch = []
    for row in Audit.objects.select_related("actor").order_by("at", "id").iterator(BATCH):
        batch.append(
            LogEntry(
                content_type=rule_type,
                object_pk=str(row.rule_id),
                object_id=row.rule_id,
                object_repr=texts[row.id],
                action=ACTIONS[row.action],
                changes={
                    _field(name): [_value(name, before), _value(name, after)]
                    for name, (before, after) in (row.changes or {}).items()
                },
                actor_id=row.actor_id,
                actor_email=(row.actor.email or None) if row.actor else None,
                timestamp=row.at,
                additional_data={"door": row.source, "alert_rule_audit": row.id},
            )
        )
        if len(batch) == BATCH:
            LogEntry.objects.bulk_create(batch)
            batch = []
    LogEntry.objects.bulk_create(batch)


class Migration(migrations.Migration):
    dependencies = [
        ("alerts", "0001_initial"),
        ("auditlog", "0017_add_actor_email"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [
        migrations.RunPython(copy_to_auditlog, migrations.RunPython.noop, elidable=False),
    ]
