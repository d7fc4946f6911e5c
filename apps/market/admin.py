from __future__ import annotations

from django.contrib import admin, messages
from django.db import transaction
from django.db.models import Count, Q, QuerySet
from django.http import HttpRequest

from apps.alerts import services as alert_services
from apps.alerts.models import AlertRule
from apps.market import services
from apps.market.models import Symbol

ADMIN = "admin"  # the audit source of rule changes made here


class AlertRuleInline(admin.TabularInline):
    """The symbol's alert rules (rules for every symbol are on the rules page)."""

    model = AlertRule
    extra = 0
    fields = [
        "owner", "condition", "threshold", "window_seconds", "frequency", "cooldown_seconds",
        "expires_at", "active", "last_fired_at",
    ]  # fmt: skip
    readonly_fields = ["last_fired_at"]
    autocomplete_fields = ["owner"]
    show_change_link = True
    ordering = ["-created_at", "-id"]


@admin.register(Symbol)
class SymbolAdmin(admin.ModelAdmin):
    inlines = [AlertRuleInline]
    list_display = [
        "ticker",
        "name",
        "exchange",
        "sector",
        "active",
        "start_price",
        "volatility",
        "jump_rate",
        "anomaly_threshold",
        "active_rules",
        "updated_at",
    ]
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

    def get_queryset(self, request: HttpRequest) -> QuerySet[Symbol]:
        # One COUNT per page in the same query, not one per row.
        return (
            super()
            .get_queryset(request)
            .annotate(active_rule_count=Count("alert_rules", filter=Q(alert_rules__active=True)))
        )

    @admin.display(description="active rules", ordering="active_rule_count")
    def active_rules(self, symbol: Symbol) -> int:
        return symbol.active_rule_count

    def save_formset(self, request: HttpRequest, form, formset, change: bool) -> None:
        """Rules edited in the inline are saved and deleted through the alerts services
        (audited); each also gets its own admin log entry, on the rule's history."""
        if formset.model is not AlertRule:
            super().save_formset(request, form, formset, change)
            return
        rules = formset.save(commit=False)
        self._delete_rules(request, formset.deleted_objects)
        for rule in rules:
            adding = rule._state.adding
            alert_services.rule_save(rule, actor=request.user, source=ADMIN)
            if adding:
                self.log_addition(request, rule, [{"added": {}}])
        for rule, fields in formset.changed_objects:
            self.log_change(request, rule, [{"changed": {"fields": fields}}])

    def delete_model(self, request: HttpRequest, obj: Symbol) -> None:
        with transaction.atomic():
            self._delete_rules(request, AlertRule.objects.filter(symbol=obj))
            super().delete_model(request, obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Symbol]) -> None:
        with transaction.atomic():
            self._delete_rules(request, AlertRule.objects.filter(symbol__in=queryset))
            super().delete_queryset(request, queryset)

    def _delete_rules(self, request: HttpRequest, rules) -> None:
        """Delete rules audited and logged (a symbol's rules would otherwise go with it,
        by cascade, unrecorded)."""
        rules = list(rules)
        self.log_deletions(request, rules)
        for rule in rules:
            alert_services.rule_delete(rule, actor=request.user, source=ADMIN)

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
