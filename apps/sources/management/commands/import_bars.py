from __future__ import annotations

from pathlib import Path

from apps.sources import files, services
from apps.sources.management.base import ImportCommand


class Command(ImportCommand):
    help = (
        "Import recorded bars of any interval (CSV, gzipped CSV or Parquet): each bar stored"
        " as one tick at its start carrying the whole bar, so the bars of its interval are"
        " the file's rows, with indicators over the closes. Safe to run again, and resumes"
        " where a stopped run ended (docs/sources.md#recorded-data)."
    )
    kind = files.BARS
    noun = "bars"

    def run(self, path: Path, fmt: files.FileFormat, **options) -> services.ImportResult:
        return services.import_bars(
            path, fmt=fmt, create_symbols=options["create_symbols"],
            exchange=options["exchange"], progress=options["progress"],
        )  # fmt: skip
