from __future__ import annotations

from django.conf import settings
from django.core.management.base import CommandError

from apps.sources import files, replay, services
from apps.sources.management.base import ImportCommand


class Command(ImportCommand):
    help = (
        "Replay a recorded file of trades (or --bars) through the live pipeline at --speed"
        " times real time: stored, pushed to the feeds, alerts evaluated, as if live. Pause,"
        " resume and stop it in the admin (Sources > Replays). docs/sources.md#replay."
    )

    def add_arguments(self, parser) -> None:
        super().add_arguments(parser)
        parser.add_argument("--bars", action="store_true", help="the file holds bars")
        parser.add_argument(
            "--speed", type=float, default=1.0,
            help="times real time (default 1); 0: as fast as the pipeline goes",
        )  # fmt: skip
        parser.add_argument(
            "--shift-to-now", action="store_true",
            help="move the file's first tick to the current minute",
        )  # fmt: skip
        parser.add_argument(
            "--interval", type=float, default=None,
            help="slot length in seconds for trades (default: TICK_INTERVAL)",
        )  # fmt: skip

    def handle(self, *args, **options) -> None:
        self.kind = files.BARS if options["bars"] else files.TRADES
        self.noun = "ticks replayed"
        super().handle(*args, **options)

    def run(self, reading: services.Reading, **options) -> services.ImportResult:
        if options["speed"] < 0:
            raise CommandError("--speed must be 0 (as fast as possible) or more")
        interval = options["interval"] or settings.TICK_INTERVAL
        outcome = replay.replay(
            reading, bars=options["bars"], interval=interval, speed=options["speed"],
            shift_to_now=options["shift_to_now"],
        )  # fmt: skip
        lags = sorted(outcome.lags_ms)
        if lags:
            p99 = lags[min(len(lags) - 1, int(len(lags) * 0.99))]
            self.stderr.write(
                f"replay {outcome.run.pk} {outcome.run.state}: lag behind the file's time at "
                f"{options['speed']:g}x: p50 {lags[len(lags) // 2]:.1f} ms, p99 {p99:.1f} ms, "
                f"max {lags[-1]:.1f} ms"
            )
        return outcome.result
