"""The four roles as groups with their permissions, and every existing user put in one
(docs/security.md#roles).

The table is frozen here as it stood when this migration was written, as a migration must
keep doing what it did: `apps/accounts/roles.py` is the living table, and
`apps/accounts/tests/test_roles_migration.py` fails when the two part ways (a change to
the roles then needs a migration of its own).

Existing users keep everything they could do before roles: superusers become `admin`,
other staff `operator`, every other active user `analyst` (any signed-in user could keep
alert rules and a token before).
"""

from django.conf import settings
from django.contrib.auth.management import create_permissions
from django.db import migrations

_ALL = ("add", "change", "delete", "view")


def _model(app_label, model, *actions):
    return [f"{app_label}.{action}_{model}" for action in actions]


CUSTOM = {
    "read_market": "Can read market data (pages, REST, WebSockets, the gateway)",
    "own_alerts": "Can keep their own alert rules and receive their alerts",
    "own_tokens": "Can keep their own API tokens",
    "view_status": "Can view the operators' status page",
}
VIEWER = ["accounts.read_market"]
ANALYST = [*VIEWER, "accounts.own_alerts", "accounts.own_tokens"]
OPERATOR = [
    *ANALYST,
    *_model("market", "symbol", *_ALL),
    *_model("market", "source", *_ALL),
    *_model("sources", "replay", "view", "change"),
    "accounts.view_status",
]
ADMIN = [
    *OPERATOR,
    *_model("auth", "user", *_ALL),
    *_model("auth", "group", *_ALL),
    *_model("accounts", "apitoken", *_ALL),
    *_model("alerts", "alertrule", *_ALL),
    *_model("alerts", "alertevent", "view"),
    *_model("auditlog", "logentry", "view"),
    *_model("admin", "logentry", "view"),
]
ROLES = {"viewer": VIEWER, "analyst": ANALYST, "operator": OPERATOR, "admin": ADMIN}
APPS = ("auth", "accounts", "market", "sources", "alerts", "admin", "auditlog")


def _make_permissions(apps):
    """Model permissions are made by a post_migrate signal, after every migration: on a
    fresh database none exists yet here. Make those of the apps the roles use now."""
    for label in APPS:
        app_config = apps.get_app_config(label)
        app_config.models_module = True  # what create_permissions checks; stubs have none
        create_permissions(app_config, apps=apps, verbosity=0)
        app_config.models_module = None
    ContentType = apps.get_model("contenttypes", "ContentType")
    Permission = apps.get_model("auth", "Permission")
    token_type, _ = ContentType.objects.get_or_create(app_label="accounts", model="apitoken")
    for codename, name in CUSTOM.items():
        Permission.objects.get_or_create(
            content_type=token_type, codename=codename, defaults={"name": name}
        )


def roles_create(apps, schema_editor):
    _make_permissions(apps)
    Permission = apps.get_model("auth", "Permission")
    Group = apps.get_model("auth", "Group")
    groups = {}
    for role, names in ROLES.items():
        wanted = {tuple(name.split(".", 1)) for name in names}
        perms = [
            p
            for p in Permission.objects.select_related("content_type")
            if (p.content_type.app_label, p.codename) in wanted
        ]
        assert len(perms) == len(wanted), f"{role}: missing permissions"  # noqa: S101
        groups[role], _ = Group.objects.get_or_create(name=role)
        groups[role].permissions.add(*perms)

    # Existing users keep what they could do: each into one role, by what they are.
    User = apps.get_model(*settings.AUTH_USER_MODEL.split("."))
    Membership = User.groups.through
    placed = set(Membership.objects.filter(group__in=groups.values()).values_list("user_id"))
    rows = []
    for user_id, superuser, staff, active in User.objects.values_list(
        "id", "is_superuser", "is_staff", "is_active"
    ):
        if (user_id,) in placed:
            continue
        role = "admin" if superuser else "operator" if staff else "analyst" if active else None
        if role is not None:
            rows.append(Membership(user_id=user_id, group_id=groups[role].id))
    Membership.objects.bulk_create(rows)


def roles_delete(apps, schema_editor):
    """Back to before roles: the groups go (and users' places in them); the custom
    permissions too. The model permissions stay: Django made them, not this migration."""
    apps.get_model("auth", "Group").objects.filter(name__in=ROLES).delete()
    apps.get_model("auth", "Permission").objects.filter(
        content_type__app_label="accounts", codename__in=CUSTOM
    ).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0001_initial"),
        ("admin", "0003_logentry_add_action_flag_choices"),
        ("alerts", "0003_delete_alertruleaudit"),
        ("auditlog", "0017_add_actor_email"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
        ("market", "0009_symbol_sessions"),
        ("sources", "0001_replay"),
    ]

    operations = [migrations.RunPython(roles_create, roles_delete)]
