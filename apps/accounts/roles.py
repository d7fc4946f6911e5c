"""Roles: the one table of who may do what (docs/security.md#roles).

A role is a Django group of the same name holding the permissions of its actions. The
groups are made by the migration `accounts.0002_roles`; the doors ask `may(user, action)`
(REST permissions, WebSocket consumers, pages) and Django's admin reads the same model
permissions for itself. Django's groups and permissions are the library here: no row-level
rule needs more, and the admin already edits them.

Rules besides the table:

- superusers may do everything;
- with `MARKETFLUX_PUBLIC_READ` on, everyone, signed in or not, may `read_market` (as before
  roles existed); with it off, anonymous visitors may do nothing;
- a signed-in user in no group at all reads like a `viewer` (`ROLELESS`): new accounts can
  look at the market and nothing more until someone gives them a role. A user in any
  group gets exactly what their groups grant, so an admin can make a group that takes
  even reading away;
- inactive users may do nothing.

The accounts app sits beside `market` in the layers: it names other apps' permissions as
strings (`app_label.codename`) and never imports their models.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from functools import wraps
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django.contrib.auth.views import redirect_to_login
from django.contrib.contenttypes.models import ContentType
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.http import HttpRequest, HttpResponse

# The actions (what the doors ask about).
READ_MARKET = "read_market"
OWN_ALERTS = "own_alerts"
OWN_TOKENS = "own_tokens"
MANAGE_SYMBOLS = "manage_symbols"
MANAGE_SOURCES = "manage_sources"
RUN_REPLAYS = "run_replays"
VIEW_STATUS = "view_status"
ADMIN = "admin"

# Permissions no model has, kept on the accounts app's ApiToken content type (a permission
# needs one; its model's Meta is the tokens' and stays as it is): codename -> name.
CUSTOM_PERMISSIONS: dict[str, str] = {
    READ_MARKET: "Can read market data (pages, REST, WebSockets, the gateway)",
    OWN_ALERTS: "Can keep their own alert rules and receive their alerts",
    OWN_TOKENS: "Can keep their own API tokens",
    VIEW_STATUS: "Can view the operators' status page",
}
CUSTOM_PERMISSION_MODEL = ("accounts", "apitoken")


def _model(app_label: str, model: str, *actions: str) -> tuple[str, ...]:
    return tuple(f"{app_label}.{action}_{model}" for action in actions)


_ALL = ("add", "change", "delete", "view")

# Each action and the Django permissions (app_label.codename) it takes: all of them.
ACTIONS: dict[str, tuple[str, ...]] = {
    READ_MARKET: ("accounts.read_market",),
    OWN_ALERTS: ("accounts.own_alerts",),
    OWN_TOKENS: ("accounts.own_tokens",),
    # The admin's Symbol and Source pages.
    MANAGE_SYMBOLS: _model("market", "symbol", *_ALL),
    MANAGE_SOURCES: _model("market", "source", *_ALL),
    # The admin's Replay page: follow, pause, resume and stop (a replay starts from the
    # command line).
    RUN_REPLAYS: _model("sources", "replay", "view", "change"),
    VIEW_STATUS: ("accounts.view_status",),
    # Users and their roles (groups), every user's tokens and alert rules, the events and
    # the audit log, read-only. Editing users lets one edit one's own flags: give this
    # role only to people you would make superusers.
    ADMIN: (
        *_model("auth", "user", *_ALL),
        *_model("auth", "group", *_ALL),
        *_model("accounts", "apitoken", *_ALL),
        *_model("alerts", "alertrule", *_ALL),
        *_model("alerts", "alertevent", "view"),
        *_model("auditlog", "logentry", "view"),
        *_model("admin", "logentry", "view"),
    ),
}

VIEWER, ANALYST, OPERATOR, ADMIN_ROLE = "viewer", "analyst", "operator", "admin"
# The roles, each with everything of the one before it: role -> actions.
ROLES: dict[str, tuple[str, ...]] = {
    VIEWER: (READ_MARKET,),
    ANALYST: (READ_MARKET, OWN_ALERTS, OWN_TOKENS),
    OPERATOR: (READ_MARKET, OWN_ALERTS, OWN_TOKENS,
               MANAGE_SYMBOLS, MANAGE_SOURCES, RUN_REPLAYS, VIEW_STATUS),
    ADMIN_ROLE: tuple(ACTIONS),
}  # fmt: skip
# Roles that work in Django's admin, which lets only staff in.
STAFF_ROLES = frozenset({OPERATOR, ADMIN_ROLE})
# What a signed-in user in no group may do.
ROLELESS = VIEWER


def role_permissions(role: str) -> set[str]:
    """Every permission (app_label.codename) the role's group holds."""
    return {perm for action in ROLES[role] for perm in ACTIONS[action]}


def may(user: Any, action: str) -> bool:
    """Whether `user` (a user, `AnonymousUser` or None) may do `action` (one of ACTIONS).

    The rules are in the module's docstring. The permission check reads the user's
    permissions once and caches them on the user object (Django's `ModelBackend`), so a
    request asking several times costs two queries at most.
    """
    if action not in ACTIONS:
        raise ValueError(f"unknown action {action!r}")
    if action == READ_MARKET and settings.MARKETFLUX_PUBLIC_READ:
        return True
    if user is None or not user.is_authenticated or not user.is_active:
        return False
    if user.is_superuser or user.has_perms(ACTIONS[action]):
        return True
    return action in ROLES[ROLELESS] and not _in_any_group(user)


def _in_any_group(user: Any) -> bool:
    cached = getattr(user, "_mf_in_group", None)
    if cached is None:
        cached = user._mf_in_group = user.groups.exists()
    return cached


def role_of(user: Any) -> str | None:
    """The user's role: the highest role group they are in, None for none."""
    names = set(user.groups.filter(name__in=ROLES).values_list("name", flat=True))
    return next((role for role in reversed(ROLES) if role in names), None)


def _custom_permissions() -> dict[str, Permission]:
    """The custom permissions, made where missing (a flushed test database has none)."""
    app_label, model = CUSTOM_PERMISSION_MODEL
    content_type = ContentType.objects.get_by_natural_key(app_label, model)
    return {
        codename: Permission.objects.get_or_create(
            content_type=content_type, codename=codename, defaults={"name": name}
        )[0]
        for codename, name in CUSTOM_PERMISSIONS.items()
    }


def permissions_named(names: Iterable[str]) -> list[Permission]:
    """The Permission rows of `app_label.codename` names; an unknown name is an error (a
    typo in the table must not quietly grant less)."""
    _custom_permissions()
    wanted = {tuple(name.split(".", 1)) for name in names}
    rows = Permission.objects.select_related("content_type").filter(
        codename__in={codename for _, codename in wanted}
    )
    found = {(p.content_type.app_label, p.codename): p for p in rows}
    missing = sorted(".".join(name) for name in wanted - set(found))
    if missing:
        raise LookupError(f"no such permissions: {', '.join(missing)} (run migrate)")
    return [found[name] for name in sorted(wanted)]


def role_group(role: str) -> Group:
    """The role's group; made with the table's permissions when it is missing (it is kept as
    it is otherwise: an admin may have changed it in the admin on purpose)."""
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}; roles: {', '.join(ROLES)}")
    group, created = Group.objects.get_or_create(name=role)
    if created:
        group.permissions.set(permissions_named(role_permissions(role)))
    return group


@transaction.atomic
def user_role_set(*, user: Any, role: str | None) -> Any:
    """Give `user` exactly one role (None: none), replacing any other role group, and set
    `is_staff` to what the role needs for the admin site (operators and admins). Groups
    that are not roles are left alone. Returns the user, saved."""
    groups = [role_group(role)] if role is not None else []
    user.groups.remove(*Group.objects.filter(name__in=ROLES))
    user.groups.add(*groups)
    user.is_staff = role in STAFF_ROLES or user.is_superuser
    user.save(update_fields=["is_staff"])
    # Forget what this user object cached of its permissions: they just changed.
    for cache in ("_perm_cache", "_user_perm_cache", "_group_perm_cache", "_mf_in_group"):
        user.__dict__.pop(cache, None)
    return user


def users_with_roles() -> list[tuple[Any, str | None]]:
    """Every user with their role (None: none), by username."""
    users = get_user_model().objects.order_by("username").prefetch_related("groups")
    order = list(ROLES)
    listed = []
    for user in users:
        names = [g.name for g in user.groups.all() if g.name in ROLES]
        listed.append((user, max(names, key=order.index) if names else None))
    return listed


def page_requires(action: str, *, login_url: str | None = None) -> Callable:
    """A page view decorator: an anonymous visitor who may not `action` is sent to the login
    page (a redirect with an empty body: nothing of the page leaks), a signed-in user who
    may not gets a 403. `login_url`: another login page (the admin's, for `/ops/`)."""

    def decorate(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
        @wraps(view)
        def guarded(request: HttpRequest, *args, **kwargs) -> HttpResponse:
            if may(request.user, action):
                return view(request, *args, **kwargs)
            if request.user.is_authenticated:
                raise PermissionDenied(f"Your role does not allow {action}.")
            return redirect_to_login(request.get_full_path(), login_url)

        return guarded

    return decorate
