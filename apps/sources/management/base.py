"""What `import_trades` and `import_bars` share: the file options, the progress bar, the
errors and the summary line."""

from __future__ import annotations

import time
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from apps.ingest.pipeline import BatchError
from apps.sources import files, services


def columns_option(text: str) -> dict[str, str]:
    out = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, sep, column = part.partition("=")
        if not sep or not name or not column:
            raise CommandError(f"--columns: {part!r} is not field=column")
        out[name] = column
    return out


class ImportCommand(BaseCommand):
    kind: files.Kind = files.TRADES
    noun = "ticks"

    def add_arguments(self, parser) -> None:
        parser.add_argument("file", type=Path)
        parser.add_argument(
            "--columns", default="", type=columns_option,
            help="field=column pairs for columns the defaults do not find, e.g."
            " 'symbol=Ticker,time=Time'; fields: " + ", ".join(self.kind.fields),
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
            "--create-symbols", action="store_true",
            help="create symbols the file names that do not exist yet (source 'files')",
        )  # fmt: skip
        parser.add_argument("--exchange", default="", help="exchange of created symbols")

    def run(self, reading: services.Reading, **options) -> services.ImportResult:
        raise NotImplementedError

    def handle(self, *args, file: Path, **options) -> None:
        unknown = set(options["columns"]) - set(self.kind.fields)
        if unknown:
            raise CommandError(f"--columns: no field {', '.join(sorted(unknown))}; fields: "
                               f"{', '.join(self.kind.fields)}")  # fmt: skip
        fmt = files.FileFormat(columns=options["columns"], symbol=options["symbol"],
                               tz=options["tz"], time_unit=options["time_unit"])  # fmt: skip
        bar = tqdm(unit=" rows", unit_scale=True, disable=options["verbosity"] == 0,
                   desc=file.name, file=self.stderr._out)  # fmt: skip
        reading = services.Reading(file, fmt, create_symbols=options["create_symbols"],
                                   exchange=options["exchange"], progress=bar.update)  # fmt: skip
        began = time.perf_counter()
        try:
            result = self.run(reading, **options)
        except (files.FileError, BatchError) as exc:
            raise CommandError(
                f"{exc}. Nothing of the failed batch was stored; what was stored before it"
                " stays, and a new run continues from it."
            ) from exc
        finally:
            bar.close()
        created = f"; created {', '.join(result.created)}" if result.created else ""
        self.stdout.write(
            f"{self.__module__.rsplit('.', 1)[-1]}: {result.rows:,} rows, {result.ticks:,} "
            f"{self.noun} ({result.stored:,} new) for "
            f"{', '.join(sorted(result.symbols)) or 'no symbol'}{created} in "
            f"{time.perf_counter() - began:.1f} s"
        )
