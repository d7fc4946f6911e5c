"""Create, list and revoke users' API tokens from the command line
(docs/security.md#api-tokens). A new token's key is printed once, alone on stdout, so
`KEY=$(manage.py apitoken create alice --name ci --scope read)` works."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime

from apps.accounts import tokens
from apps.accounts.models import ApiToken

_DAYS = re.compile(r"^(\d{1,5})d$")


def parse_expiry(text: str) -> datetime:
    """`--expires`: a number of days (`90d`), a date (`2027-06-30`, midnight UTC) or an ISO
    8601 time (UTC when it names no offset)."""
    days = _DAYS.match(text)
    if days:
        return timezone.now() + timedelta(days=int(days[1]))
    try:
        moment = parse_datetime(text)
        day = None if moment else parse_date(text)
    except ValueError:
        moment = day = None
    if day is not None:
        moment = datetime(day.year, day.month, day.day, tzinfo=UTC)
    if moment is None:
        raise CommandError(f"--expires: {text!r} is not a date, a time or a number of days (90d)")
    return moment if timezone.is_aware(moment) else moment.replace(tzinfo=UTC)


def _when(moment: datetime | None, empty: str = "-") -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ") if moment else empty


class Command(BaseCommand):
    help = "Create (printing the key once), list or revoke users' API tokens."

    def add_arguments(self, parser) -> None:
        actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
        create = actions.add_parser("create", help="Create a token and print its key, once.")
        create.add_argument("username")
        create.add_argument("--name", required=True, help="Unique among the user's tokens.")
        create.add_argument(
            "--scope",
            action="append",
            dest="scopes",
            choices=tokens.SCOPES,
            required=True,
            help="Repeat for several: read, alerts:write, admin.",
        )
        create.add_argument("--expires", help="90d, 2027-06-30 or an ISO 8601 time; default never.")
        listing = actions.add_parser("list", help="List tokens (never their keys).")
        listing.add_argument("username", nargs="?", help="Only this user's; default everyone's.")
        revoke = actions.add_parser("revoke", help="Revoke a user's token by name.")
        revoke.add_argument("username")
        revoke.add_argument("name")

    def handle(self, *args, action: str, **options) -> None:
        getattr(self, f"_{action}")(**options)

    def _user(self, username: str):
        user = get_user_model().objects.filter(username=username).first()
        if user is None:
            raise CommandError(f"no user named {username!r}")
        return user

    def _create(self, *, username: str, name: str, scopes: list[str], expires, **_) -> None:
        user = self._user(username)
        moment = parse_expiry(expires) if expires else None
        try:
            _, key = tokens.api_token_create(user=user, name=name, scopes=scopes, expires=moment)
        except ValidationError as invalid:
            problems = "; ".join(f"--{f}: {' '.join(m)}" for f, m in invalid.message_dict.items())
            raise CommandError(problems.replace("--scopes", "--scope")) from None
        self.stdout.write(key)
        self.stderr.write("This key is shown once: keep it now.")

    def _list(self, *, username: str | None, **_) -> None:
        rows = ApiToken.objects.select_related("user").order_by("user__username", "-created")
        if username:
            rows = rows.filter(user=self._user(username))
        self.stdout.write("user\tname\tprefix\tscopes\tcreated\texpires\tlast used\trevoked")
        for t in rows:
            self.stdout.write(
                "\t".join(
                    [
                        t.user.get_username(),
                        t.name,
                        f"{t.prefix}…",
                        ",".join(t.scopes),
                        _when(t.created),
                        _when(t.expires, "never"),
                        _when(t.last_used, "never"),
                        _when(t.revoked),
                    ]
                )
            )

    def _revoke(self, *, username: str, name: str, **_) -> None:
        token = tokens.user_tokens(self._user(username)).filter(name=name).first()
        if token is None:
            raise CommandError(f"{username} has no token named {name!r}")
        was_revoked = token.revoked is not None
        tokens.api_token_revoke(token=token)
        state = "was already revoked" if was_revoked else "revoked"
        self.stdout.write(f"{token.name} ({token.prefix}…) of {username} {state}")
