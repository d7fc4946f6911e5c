from __future__ import annotations

from django.core.management.base import BaseCommand

from apps.sources.live import runner


class Command(BaseCommand):
    help = (
        "Run the live feeds of every enabled Polygon/Massive and Alpaca source (or those"
        " named) until stopped: trades into ticks through the pipeline, reconnects, gaps"
        " filled from the vendor's history (docs/sources.md#live-feeds)."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("names", nargs="*", help="source names (default: every one)")

    def handle(self, *args, names: list[str], **options) -> None:
        runner.run(names or None)
