from __future__ import annotations

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from apps.market import backup


class Command(BaseCommand):
    help = (
        "Restore a dump written by `backup` into an empty database: DATABASE_URL's, or a new"
        " one made on the same server with --create NAME."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("file", type=Path, help="a dump written by `manage.py backup`")
        parser.add_argument(
            "--create", metavar="NAME", default="",
            help="make this database (it must not exist) and restore into it",
        )  # fmt: skip

    def handle(self, *args, file: Path, create: str, **options) -> None:
        try:
            if create:
                backup.create_database(create)
            done = backup.restore(file, database=create or None)
        except backup.BackupError as exc:
            raise CommandError(str(exc)) from exc
        where = create or "the database DATABASE_URL names"
        self.stdout.write(f"restore: {done.path} into {where} in {done.seconds:.1f} s")
