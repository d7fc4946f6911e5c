"""The Symbol admin: what a symbol is, its simulator parameters, activation, backfill.

The alerts app adds the symbol's alert rules to this page (`apps.alerts.admin`).
"""

from __future__ import annotations

import json

import redis
from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.core.exceptions import PermissionDenied
from django.db.models import Count, QuerySet
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import path
from django.utils.html import format_html

from apps.market import backfill, selectors, services
from apps.market.models import Source, Symbol
from apps.ops import status


class SymbolForm(forms.ModelForm):
    class Meta:
        model = Symbol
        fields = [
            "ticker", "name", "exchange", "sector", "active", "source", "calendar",
            "extended_hours",
            "start_price", "drift", "volatility", "jump_rate", "anomaly_threshold",
        ]  # fmt: skip

    def clean_ticker(self) -> str:
        # URLs, the API and the WebSocket take a ticker in any case; so does this form.
        return self.cleaned_data["ticker"].strip().upper()


class BackfillForm(forms.Form):
    days = forms.IntegerField(
        min_value=1,
        max_value=backfill.MAX_DAYS,
        initial=30,
        help_text=(
            f"Each symbol gets this many days of 1-minute bars up to now (1 to"
            f" {backfill.MAX_DAYS:,}); bars already stored are kept."
        ),
    )


@admin.register(Symbol)
class SymbolAdmin(admin.ModelAdmin):
    form = SymbolForm
    # What fits a 1280 px window beside the admin's sidebars (tested in a browser,
    # test_browser.py): exchange and sector are in the filters, the rest on the symbol's page.
    list_display = ["ticker", "name", "active", "start_price", "volatility", "updated_at"]
    list_filter = ["active", "source", "exchange", "sector"]
    search_fields = ["ticker", "name", "sector"]
    ordering = ["ticker"]
    readonly_fields = ["created_at", "updated_at"]
    actions = ["activate", "deactivate", "backfill_history"]
    fieldsets = [
        (None, {"fields": ["ticker", "name", "exchange", "sector", "active", "source"]}),
        ("Simulator", {"fields": ["start_price", "drift", "volatility", "jump_rate"]}),
        ("Indicators", {"fields": ["anomaly_threshold"]}),
        ("History", {"fields": ["created_at", "updated_at"]}),
    ]

    def get_readonly_fields(self, request: HttpRequest, obj: Symbol | None = None):
        # The ticker is the primary key that ticks and bars point at: fixed once created.
        return [*self.readonly_fields, "ticker"] if obj else self.readonly_fields

    @admin.action(description="Activate selected symbols", permissions=["change"])
    def activate(self, request: HttpRequest, queryset: QuerySet[Symbol]) -> None:
        changed = services.symbols_set_active(
            tickers=list(queryset.values_list("ticker", flat=True)), active=True
        )
        self.message_user(request, f"{changed} symbol(s) activated.", messages.SUCCESS)

    @admin.action(description="Deactivate selected symbols", permissions=["change"])
    def deactivate(self, request: HttpRequest, queryset: QuerySet[Symbol]) -> None:
        changed = services.symbols_set_active(
            tickers=list(queryset.values_list("ticker", flat=True)), active=False
        )
        self.message_user(request, f"{changed} symbol(s) deactivated.", messages.SUCCESS)

    @admin.action(description="Backfill history", permissions=["change"])
    def backfill_history(self, request: HttpRequest, queryset: QuerySet[Symbol]):
        """Ask how many days (an intermediate page), then queue the backfill as a Celery
        task (a year takes tens of seconds) and follow it on its progress page."""
        form = BackfillForm(request.POST if "apply" in request.POST else None)
        tickers = sorted(queryset.values_list("ticker", flat=True))
        if form.is_valid():
            days = form.cleaned_data["days"]
            job = services.backfill_job_start(tickers=tickers, days=days)
            for symbol in queryset:
                self.log_change(request, symbol, f"Backfill of {days} day(s) queued.")
            return redirect("admin:market_symbol_backfill", job=job)
        context = {
            **self.admin_site.each_context(request),
            "title": "Backfill history",
            "opts": self.model._meta,
            "form": form,
            "tickers": tickers,
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
        }
        return TemplateResponse(request, "admin/market/symbol/backfill.html", context)

    def get_urls(self):
        # Before the defaults: their "<path:object_id>/" would take "backfill/<job>/".
        return [
            path(
                "backfill/<slug:job>/",
                self.admin_site.admin_view(self.backfill_progress_view),
                name="market_symbol_backfill",
            ),
            *super().get_urls(),
        ]

    def backfill_progress_view(self, request: HttpRequest, job: str) -> HttpResponse:
        """A backfill's progress: bars done of the total, then rows written or the error;
        the page reloads itself until the job is finished."""
        if not self.has_change_permission(request):
            raise PermissionDenied
        progress = selectors.backfill_job_progress(job=job)
        if progress is None:
            raise Http404("no such backfill (they are kept for a day)")
        context = {
            **self.admin_site.each_context(request),
            "title": "Backfill history",
            "opts": self.model._meta,
            "progress": progress,
        }
        return TemplateResponse(request, "admin/market/symbol/backfill_progress.html", context)


@admin.register(Source)
class SourceAdmin(admin.ModelAdmin):
    """Sources other than the simulator (docs/sources.md); a symbol names its own. A live
    source's state is what its connector last reported (`manage.py run_sources`)."""

    list_display = ["name", "kind", "enabled", "symbol_count", "connection", "last_message"]
    list_filter = ["kind", "enabled"]
    readonly_fields = ["created_at", "state"]
    fieldsets = [
        (None, {"fields": ["name", "kind", "description", "enabled"]}),
        ("Live feed", {
            "fields": ["url", "rest_url", "feed", "key_env", "secret_env"],
            "description": "Polygon/Massive and Alpaca sources only. Credentials stay in the"
            " environment of run_sources: name the variables, never the secrets.",
        }),
        ("State", {"fields": ["state", "created_at"]}),
    ]  # fmt: skip

    def get_queryset(self, request: HttpRequest) -> QuerySet[Source]:
        return super().get_queryset(request).annotate(symbol_count=Count("symbols"))

    @admin.display(description="symbols", ordering="symbol_count")
    def symbol_count(self, source: Source) -> int:
        return source.symbol_count

    @admin.display(description="connection")
    def connection(self, source: Source) -> str:
        if not source.live:
            return "-"
        report = _source_reports().get(source.name)  # a few sources: a read each is cheap
        if report is None:
            return "not running" if source.enabled else "disabled"
        if report["stale"]:
            return f"no report for {report['age_s']:.0f} s"
        return "connected" if report["connected"] else "disconnected"

    @admin.display(description="last message")
    def last_message(self, source: Source) -> str:
        report = _source_reports().get(source.name) or {}
        seconds = report.get("seconds_since_last_message")
        if seconds is None:
            return "-"
        return f"{seconds:.1f} s ago, {report['messages_per_s']:g}/s"

    @admin.display(description="state")
    def state(self, source: Source) -> str:
        if not source.live:
            return "Recorded files have no connection."
        report = _source_reports().get(source.name)
        if report is None:
            return "No report: run_sources is not running it (disabled, no symbols, or stopped)."
        return format_html("<pre>{}</pre>", json.dumps(report, indent=2))


def _source_reports() -> dict[str, dict]:
    try:
        return status.read(status.SOURCES)
    except redis.RedisError:
        return {}
