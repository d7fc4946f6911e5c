"""`manage.py backfill`: simulated history (apps/market/backfill.py), or with `--source` a
vendor's (apps/sources/backfill.py). It lives in `sources`, the app above both."""

from __future__ import annotations

from datetime import datetime

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from apps.market import backfill
from apps.sources import backfill as vendor


def _minute(ts: datetime | None) -> str:
    return ts.strftime("%Y-%m-%dT%H:%MZ") if ts else "-"


class Command(BaseCommand):
    help = (
        "Seed 1-minute bars from the simulator so each symbol has DAYS of history up to now,"
        " ending at its first live price; or, with --source, load DAYS of the vendor's"
        " 1-minute bars for the symbols of that source (docs/sources.md#backfill-from-a-vendor)."
        " Safe to run again: existing bars are kept, and a stopped run continues."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--days", type=int, default=365, help=f"days of history, 1-{backfill.MAX_DAYS}"
        )
        parser.add_argument(
            "--symbols", default="",
            help="comma-separated tickers (default: every active symbol, of the source with"
            " --source)",
        )  # fmt: skip
        parser.add_argument(
            "--seed", type=int, default=None, help="simulator seed (default: MARKETFLUX_SEED)"
        )
        parser.add_argument(
            "--source", default=None,
            help="the name of a Polygon/Massive or Alpaca Source: load its REST history",
        )  # fmt: skip

    def handle(
        self, *args, days: int, symbols: str, seed: int | None, source: str | None, **options
    ) -> None:
        if not 1 <= days <= backfill.MAX_DAYS:
            raise CommandError(f"--days must be from 1 to {backfill.MAX_DAYS}, not {days}")
        tickers = [t for t in symbols.split(",") if t.strip()]
        if source is not None:
            if seed is not None:
                raise CommandError("--seed is for the simulated backfill, not with --source")
            self.from_vendor(source, days, tickers, verbosity=options["verbosity"])
            return
        try:
            chosen = backfill.resolve_symbols(tickers)
            if not chosen:
                raise CommandError("no active symbols: run seed_symbols first, or name --symbols")
            result = backfill.backfill(
                symbols=chosen,
                days=days,
                seed=settings.MARKETFLUX_SEED if seed is None else seed,
            )
        except backfill.BackfillError as exc:
            raise CommandError(str(exc)) from exc
        names = ", ".join(w.symbol.ticker for w in result.windows)
        if result.start is None:
            span = f"already {days} day{'s' if days != 1 else ''} of history up to now"
        else:
            span = f"{_minute(result.start)} to {_minute(result.end)}"
        refreshed = (
            f", longer bars refreshed ({', '.join(result.refreshed)})" if result.refreshed else ""
        )
        self.stdout.write(
            f"backfill: {result.rows:,} 1-minute bars written for {names} ({span})"
            f"{refreshed} in {result.seconds:.1f} s"
        )

    def from_vendor(self, name: str, days: int, tickers: list[str], *, verbosity: int) -> None:
        try:
            plan = vendor.plan(name, days=days, tickers=tickers)
        except backfill.BackfillError as exc:
            raise CommandError(str(exc)) from exc
        bar = tqdm(total=plan.days, unit=" days", disable=verbosity == 0, desc=name,
                   file=self.stderr._out)  # fmt: skip

        def progress(symbol: str, day: datetime) -> None:
            bar.set_description(f"{name} {symbol} {day:%Y-%m-%d}", refresh=False)
            bar.update()

        try:
            result = vendor.run(plan, progress=progress)
        except backfill.BackfillError as exc:
            raise CommandError(str(exc)) from exc
        finally:
            bar.close()
        earlier = ", the rest stored by an earlier run" if plan.resumed else ""
        skipped = "".join(
            f"; {count:,} {what} left out" for what, count in sorted(result.malformed.items())
        )
        self.stdout.write(
            f"backfill {name}: {result.bars:,} 1-minute bars from {plan.source.kind}, "
            f"{result.stored:,} new, {result.kept:,} for minutes already stored, for "
            f"{', '.join(plan.symbols)} ({_minute(plan.start)} to {_minute(plan.end)}; "
            f"{plan.days:,} symbol-days asked for{earlier}){skipped} in {result.seconds:.1f} s"
        )
