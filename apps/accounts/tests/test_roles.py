"""The roles themselves (docs/security.md#roles): the migration that makes them and places
existing users, the `role` command, and the rules around the table (no role, inactive)."""

from __future__ import annotations

from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from apps.accounts import roles


def group_permissions(name: str) -> set[str]:
    return {
        f"{app}.{codename}"
        for app, codename in Group.objects.get(name=name).permissions.values_list(
            "content_type__app_label", "codename"
        )
    }


def role_command(*args: str) -> str:
    out = StringIO()
    call_command("role", *args, stdout=out)
    return out.getvalue()


@pytest.mark.django_db(transaction=True)
def test_the_migration_makes_the_four_roles_and_keeps_what_existing_users_could_do():
    # Back to before roles, with the users a deployment had then.
    executor = MigrationExecutor(connection)
    executor.migrate([("accounts", "0001_initial")])
    assert not Group.objects.filter(name__in=roles.ROLES).exists()
    assert not Permission.objects.filter(codename__in=roles.CUSTOM_PERMISSIONS).exists()
    users = get_user_model().objects
    users.create_superuser("root", "root@example.com", None)
    users.create_user("ops", is_staff=True)
    users.create_user("reader")
    users.create_user("gone", is_active=False)

    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes("accounts"))

    # The groups hold exactly the table's permissions (a change to roles.py without a
    # migration fails here).
    assert set(Group.objects.filter(name__in=roles.ROLES).values_list("name", flat=True)) == set(
        roles.ROLES
    )
    for role in roles.ROLES:
        assert group_permissions(role) == roles.role_permissions(role), role
    placed = {user.username: role for user, role in roles.users_with_roles()}
    assert placed == {"root": "admin", "ops": "operator", "reader": "analyst", "gone": None}
    reader = users.get(username="reader")
    assert roles.may(reader, roles.OWN_ALERTS)
    assert roles.may(reader, roles.OWN_TOKENS)
    assert not roles.may(reader, roles.VIEW_STATUS)


@pytest.mark.django_db(transaction=True)
def test_the_migration_runs_on_a_fresh_database_where_no_permission_exists_yet():
    """As on a first `migrate`: the model permissions come from a signal after every
    migration, so the roles' migration has to make them itself."""
    executor = MigrationExecutor(connection)
    executor.migrate([("accounts", "0001_initial")])
    Permission.objects.all().delete()  # as before the post_migrate signal ever ran
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes("accounts"))
    for role in roles.ROLES:
        assert group_permissions(role) == roles.role_permissions(role), role


@pytest.mark.django_db
@pytest.mark.parametrize("role", roles.ROLES)
def test_the_role_command_gives_exactly_the_roles_rights(role, settings):
    settings.MARKETFLUX_PUBLIC_READ = False  # so reading too is the role's doing
    users = get_user_model().objects
    users.create_user("carol")
    out = role_command("carol", role)
    assert out.startswith("carol")
    assert role in out
    carol = users.get(username="carol")  # a fresh object: nothing cached
    assert carol.get_all_permissions() == roles.role_permissions(role)
    assert carol.is_staff == (role in roles.STAFF_ROLES)  # the admin lets in staff only
    assert {a for a in roles.ACTIONS if roles.may(carol, a)} == set(roles.ROLES[role])


@pytest.mark.django_db
def test_a_new_role_replaces_the_old_one_and_none_takes_it_away(settings):
    settings.MARKETFLUX_PUBLIC_READ = False
    users = get_user_model().objects
    users.create_user("dave")
    role_command("dave", "operator")
    role_command("dave", "viewer")
    dave = users.get(username="dave")
    assert roles.role_of(dave) == "viewer"
    assert not dave.is_staff
    assert dave.get_all_permissions() == roles.role_permissions("viewer")
    role_command("dave", "none")
    dave = users.get(username="dave")
    assert roles.role_of(dave) is None
    # In no group at all: reads like a viewer, nothing more.
    assert {a for a in roles.ACTIONS if roles.may(dave, a)} == set(roles.ROLES[roles.ROLELESS])


@pytest.mark.django_db
def test_the_role_command_lists_every_user_and_refuses_what_it_does_not_know():
    users = get_user_model().objects
    roles.user_role_set(user=users.create_user("erin"), role="analyst")
    users.create_user("frank")
    users.create_superuser("root", "root@example.com", None)
    listing = role_command().splitlines()
    assert [line.split()[:2] for line in listing] == [
        ["erin", "analyst"],
        ["frank", "(none)"],
        ["root", "(none)"],
    ]
    assert "everything" in listing[2]
    assert "superuser" in listing[2]
    assert "read_market (as a viewer)" in listing[1]
    with pytest.raises(CommandError, match="no user named 'nobody'"):
        role_command("nobody", "viewer")
    with pytest.raises(CommandError, match="invalid choice"):
        role_command("erin", "owner")


@pytest.mark.django_db
def test_a_user_in_another_group_gets_only_what_it_grants_and_inactive_users_nothing(settings):
    settings.MARKETFLUX_PUBLIC_READ = False
    users = get_user_model().objects
    grouped = users.create_user("grace")
    grouped.groups.add(Group.objects.create(name="newsletter"))
    assert not roles.may(grouped, roles.READ_MARKET)  # not roleless: the group decides
    left = roles.user_role_set(user=users.create_user("heidi", is_active=False), role="admin")
    assert not any(roles.may(left, a) for a in roles.ACTIONS)
    settings.MARKETFLUX_PUBLIC_READ = True
    assert roles.may(grouped, roles.READ_MARKET)
    assert roles.may(None, roles.READ_MARKET)
    assert not roles.may(None, roles.OWN_ALERTS)
