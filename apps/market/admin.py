"""The Symbol admin: what a symbol is, its simulator parameters, activation.

The alerts app adds the symbol's alert rules to this page (`apps.alerts.admin`).
"""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from apps.market import services
from apps.market.models import Symbol


class SymbolForm(forms.ModelForm):
    class Meta:
        model = Symbol
        fields = [
            "ticker", "name", "exchange", "sector", "active",
            "start_price", "drift", "volatility", "jump_rate", "anomaly_threshold",
        ]  # fmt: skip

    def clean_ticker(self) -> str:
        # URLs, the API and the WebSocket take a ticker in any case; so does this form.
        return self.cleaned_data["ticker"].strip().upper()


@admin.register(Symbol)
class SymbolAdmin(admin.ModelAdmin):
    form = SymbolForm
    # What fits a 1280 px window beside the admin's sidebars (tested in a browser,
    # test_browser.py): exchange and sector are in the filters, the rest on the symbol's page.
    list_display = ["ticker", "name", "active", "start_price", "volatility", "updated_at"]
    list_filter = ["active", "exchange", "sector"]
    search_fields = ["ticker", "name", "sector"]
    ordering = ["ticker"]
    readonly_fields = ["created_at", "updated_at"]
    actions = ["activate", "deactivate"]
    fieldsets = [
        (None, {"fields": ["ticker", "name", "exchange", "sector", "active"]}),
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
