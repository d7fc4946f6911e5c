from __future__ import annotations

import secrets

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "In development, create an 'admin' superuser with a random password if none exists."

    def handle(self, *args, **options) -> None:
        password_file = settings.VAR_DIR / "admin-password.txt"
        if not settings.DEBUG:
            self.stdout.write("ensure_dev_admin: not in DEBUG, nothing to do")
            return
        users = get_user_model().objects
        if users.filter(is_superuser=True).exists():
            hint = f" (password in {password_file})" if password_file.exists() else ""
            self.stdout.write(f"ensure_dev_admin: a superuser exists{hint}")
            return
        password = secrets.token_urlsafe(12)
        users.create_superuser("admin", "admin@localhost", password)
        password_file.parent.mkdir(exist_ok=True)
        password_file.write_text(password + "\n")
        password_file.chmod(0o600)
        self.stdout.write(
            f"ensure_dev_admin: created superuser 'admin' with password {password} "
            f"(saved in {password_file})"
        )
