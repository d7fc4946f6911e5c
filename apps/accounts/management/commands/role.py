"""Give a user a role, or list who has which (docs/security.md#roles)."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from apps.accounts import roles

NONE = "none"


class Command(BaseCommand):
    help = (
        "`role` lists every user and their role; `role USER` shows one; `role USER ROLE` gives"
        f" them ROLE ({', '.join(roles.ROLES)}, or {NONE}), with is_staff as the role needs it."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("username", nargs="?")
        parser.add_argument("role", nargs="?", choices=[*roles.ROLES, NONE])

    def handle(self, *args, username: str | None, role: str | None, **options) -> None:
        if username is None:
            for user, current in roles.users_with_roles():
                self.stdout.write(self._line(user, current))
            return
        user = get_user_model().objects.filter(username=username).first()
        if user is None:
            raise CommandError(f"no user named {username!r}")
        if role is not None:
            roles.user_role_set(user=user, role=None if role == NONE else role)
        self.stdout.write(self._line(user, roles.role_of(user)))

    def _line(self, user, role: str | None) -> str:
        """`alice  analyst  read_market, own_alerts, own_tokens` (+ staff, superuser)."""
        flags = [f for f, on in (("staff", user.is_staff), ("superuser", user.is_superuser),
                                 ("inactive", not user.is_active)) if on]  # fmt: skip
        if user.is_superuser:
            actions = "everything"
        elif role is not None:
            actions = ", ".join(roles.ROLES[role])
        elif user.groups.exists():
            actions = "what their other groups grant"
        else:
            actions = ", ".join(roles.ROLES[roles.ROLELESS]) + f" (as a {roles.ROLELESS})"
        shown = role or f"({NONE})"
        return f"{user.get_username():<20} {shown:<10} {' '.join(flags):<16} {actions}".rstrip()
