from __future__ import annotations

from django.core.management.base import BaseCommand, CommandParser

from apps.accounts import audit


class Command(BaseCommand):
    help = (
        "Delete audit log entries older than MARKETFLUX_AUDIT_RETENTION_DAYS (or --days);"
        " 0 keeps everything. Beat runs the same daily. (auditlogflush --before-date DATE"
        " deletes up to a date you give.)"
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--days", type=int, default=None, help="Keep this many days instead.")

    def handle(self, *args, days: int | None, **options) -> None:
        removed = audit.prune(days=days)
        self.stdout.write(f"audit log: {removed} entries older than the retention deleted")
