from __future__ import annotations

from django.conf import settings
from django.core.management.base import CommandError

from apps.sources import files, services
from apps.sources.management.base import ImportCommand


class Command(ImportCommand):
    help = (
        "Import recorded trades (CSV, gzipped CSV or Parquet) as ticks: each symbol's trades"
        " of one slot conflated into one tick, stored with their bars, indicators and"
        " snapshots. Safe to run again, and resumes where a stopped run ended"
        " (docs/sources.md#recorded-data)."
    )
    kind = files.TRADES

    def add_arguments(self, parser) -> None:
        super().add_arguments(parser)
        parser.add_argument(
            "--interval", type=float, default=None,
            help="slot length in seconds (default: TICK_INTERVAL)",
        )  # fmt: skip

    def run(self, reading: services.Reading, **options) -> services.ImportResult:
        interval = options["interval"]
        interval = settings.TICK_INTERVAL if interval is None else interval
        if not 0.001 <= interval <= 86_400 or round(interval * 1e6) != interval * 1e6:
            raise CommandError("--interval must be 0.001 to 86400 s, in whole microseconds")
        self.noun = f"ticks of {interval:g} s"
        return services.import_trades(reading, interval=interval)
