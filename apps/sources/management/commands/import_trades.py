from __future__ import annotations

import time
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from apps.ingest.pipeline import BatchError
from apps.sources import files, services


def _columns(text: str) -> dict[str, str]:
    out = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, sep, column = part.partition("=")
        if not sep or name not in files.FIELDS or not column:
            raise CommandError(
                f"--columns: {part!r} is not field=column with a field of {', '.join(files.FIELDS)}"
            )
        out[name] = column
    return out


class Command(BaseCommand):
    help = (
        "Import recorded trades (CSV, gzipped CSV or Parquet) as ticks: each symbol's trades"
        " of one slot conflated into one tick, stored with their bars, indicators and"
        " snapshots. Safe to run again, and resumes where a stopped run ended"
        " (docs/sources.md#recorded-data)."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("file", type=Path)
        parser.add_argument(
            "--columns", default="", type=_columns,
            help="field=column pairs for columns the defaults do not find, e.g."
            " 'symbol=Ticker,time=Time'; fields: " + ", ".join(files.FIELDS),
        )  # fmt: skip
        parser.add_argument("--symbol", help="the symbol of a file without a symbol column")
        parser.add_argument(
            "--tz", default="UTC", help="time zone of times written without an offset"
        )
        parser.add_argument(
            "--time-unit", choices=["s", "ms", "us", "ns"],
            help="unit of numeric times (default: by their size)",
        )  # fmt: skip
        parser.add_argument(
            "--interval", type=float, default=None,
            help="slot length in seconds (default: TICK_INTERVAL)",
        )  # fmt: skip
        parser.add_argument(
            "--create-symbols", action="store_true",
            help="create symbols the file names that do not exist yet (source 'files')",
        )  # fmt: skip
        parser.add_argument("--exchange", default="", help="exchange of created symbols")

    def handle(self, *args, file: Path, interval: float | None, **options) -> None:
        interval = settings.TICK_INTERVAL if interval is None else interval
        if not 0.001 <= interval <= 86_400 or round(interval * 1e6) != interval * 1e6:
            raise CommandError("--interval must be 0.001 to 86400 s, in whole microseconds")
        bar = tqdm(unit=" rows", unit_scale=True, disable=options["verbosity"] == 0,
                   desc=file.name, file=self.stderr._out)  # fmt: skip
        began = time.perf_counter()
        try:
            fmt = files.FileFormat(
                columns=options["columns"], symbol=options["symbol"], tz=options["tz"],
                time_unit=options["time_unit"],
            )  # fmt: skip
            result = services.import_trades(
                file, interval=interval, fmt=fmt, create_symbols=options["create_symbols"],
                exchange=options["exchange"], progress=bar.update,
            )  # fmt: skip
        except (files.FileError, BatchError) as exc:
            raise CommandError(
                f"{exc}. Nothing of the failed batch was stored; ticks stored before it stay,"
                " and a new run continues from them."
            ) from exc
        finally:
            bar.close()
        created = f"; created {', '.join(result.created)}" if result.created else ""
        self.stdout.write(
            f"import_trades: {result.rows:,} rows, {result.ticks:,} ticks of {interval:g} s"
            f" ({result.stored:,} new) for {', '.join(sorted(result.symbols)) or 'no symbol'}"
            f"{created} in {time.perf_counter() - began:.1f} s"
        )
