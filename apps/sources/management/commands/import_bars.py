from __future__ import annotations

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

    def run(self, reading: services.Reading, **options) -> services.ImportResult:
        return services.import_bars(reading)
