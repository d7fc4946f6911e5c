from __future__ import annotations

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from apps.market import backup


class Command(BaseCommand):
    help = (
        "Dump the whole database (pg_dump, custom format; one consistent snapshot, safe while"
        " the stack runs) to FILE, by default var/backups/marketflux-<UTC time>.dump."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("file", nargs="?", type=Path, help="where to write the dump")

    def handle(self, *args, file: Path | None, **options) -> None:
        try:
            done = backup.backup(file)
        except backup.BackupError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(
            f"backup: {done.path} ({done.bytes / 1e6:,.1f} MB) in {done.seconds:.1f} s;"
            f" restore it with: manage.py restore {done.path} --create NAME"
        )
