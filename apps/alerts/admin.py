"""The alerts admin: every user's rules and their events.

Saves, deletes and actions go through `apps.alerts.services`, so each rule change leaves an
entry in the audit log, door "admin" (read under "Audit log": apps/accounts/audit.py).
Django's admin log records them too (the normal views log by themselves, the actions log
each rule they changed).
"""

from __future__ import annotations

from django.contrib import admin, messages
from django.db import transaction
from django.db.models import Count, Q, QuerySet
from django.http import HttpRequest

from apps.alerts import conditions, services
from apps.alerts.models import AlertEvent, AlertRule
from apps.market.admin import SymbolAdmin
from apps.market.models import Symbol

SOURCE = "admin"


@admin.register(AlertRule)
class AlertRuleAdmin(admin.ModelAdmin):
    list_display = [
        "id",
        "owner",
        "symbol_or_all",
        "condition",
        "threshold",
        "frequency",
        "active",
        "last_fired_at",
    ]
    list_display_links = ["id", "symbol_or_all"]
    list_filter = ["condition", "frequency", "active", "symbol", "owner"]
    list_select_related = ["owner"]
    search_fields = ["symbol__ticker", "owner__username", "message"]
    autocomplete_fields = ["owner", "symbol"]
    readonly_fields = ["last_fired_at", "created_at", "updated_at"]
    actions = ["enable", "disable", "test_fire"]
    fieldsets = [
        (None, {"fields": ["owner", "symbol", "active"]}),
        ("Condition", {"fields": ["condition", "threshold", "window_seconds"]}),
        ("When to fire", {"fields": ["frequency", "cooldown_seconds", "expires_at", "message"]}),
        ("History", {"fields": ["last_fired_at", "created_at", "updated_at"]}),
    ]

    @admin.display(description="symbol", ordering="symbol_id")
    def symbol_or_all(self, rule: AlertRule) -> str:
        return rule.symbol_id or conditions.ALL_SYMBOLS

    def save_model(self, request: HttpRequest, obj: AlertRule, form, change: bool) -> None:
        services.rule_save(obj, actor=request.user, source=SOURCE)

    def delete_model(self, request: HttpRequest, obj: AlertRule) -> None:
        services.rule_delete(obj, actor=request.user, source=SOURCE)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[AlertRule]) -> None:
        # "Delete selected": Django logs each deletion itself; the audit needs one per rule.
        for rule in queryset:
            services.rule_delete(rule, actor=request.user, source=SOURCE)

    def _set_active(self, request: HttpRequest, queryset: QuerySet, *, active: bool) -> None:
        word = "Enabled" if active else "Disabled"
        changed = services.rules_set_active(
            queryset,
            active=active,
            actor=request.user,
            source=SOURCE,
            on_change=lambda rule: self.log_change(
                request, rule, [{"changed": {"fields": ["Active"]}}]
            ),
        )
        self.message_user(request, f"{word} {changed} rule(s).", messages.SUCCESS)

    @admin.action(description="Enable selected rules", permissions=["change"])
    def enable(self, request: HttpRequest, queryset: QuerySet[AlertRule]) -> None:
        self._set_active(request, queryset, active=True)

    @admin.action(description="Disable selected rules", permissions=["change"])
    def disable(self, request: HttpRequest, queryset: QuerySet[AlertRule]) -> None:
        self._set_active(request, queryset, active=False)

    @admin.action(description="Test-fire selected rules (a real event, marked [test])",
                  permissions=["change"])  # fmt: skip
    def test_fire(self, request: HttpRequest, queryset: QuerySet[AlertRule]) -> None:
        fired, unpriced = [], []
        for rule in queryset:
            event = services.rule_test_fire(rule)
            if event is None:
                unpriced.append(str(rule))
                continue
            fired.append(event)
            self.log_change(request, rule, f"Test-fired: event #{event.pk} on {event.symbol}.")
        if fired:
            self.message_user(request, f"Test-fired {len(fired)} rule(s).", messages.SUCCESS)
        if unpriced:
            self.message_user(
                request,
                f"No price yet to test-fire at: {', '.join(unpriced)}.",
                messages.WARNING,
            )


@admin.register(AlertEvent)
class AlertEventAdmin(admin.ModelAdmin):
    """Read-only: an event is a record of what the market did.

    Only superusers may delete (test-fire leaves real events behind, and a user's history
    is theirs to keep otherwise); nobody adds or edits one here.
    """

    list_display = [
        "ts",
        "owner",
        "symbol",
        "condition",
        "price",
        "value",
        "message",
        "acknowledged",
        "rule",
    ]
    list_filter = ["symbol", "condition", "acknowledged", "ts"]
    list_select_related = ["owner", "rule"]
    search_fields = ["symbol", "owner__username", "message"]
    date_hierarchy = "ts"
    ordering = ["-ts", "-id"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: AlertEvent | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: AlertEvent | None = None) -> bool:
        return request.user.is_superuser


class AlertRuleInline(admin.TabularInline):
    """The symbol's alert rules (rules for every symbol are on the rules page).

    The columns a rule is read by, narrow enough for the symbol's page to fit a 1280 px
    window (apps/market/tests/test_browser.py); frequency, cooldown, expiry and message are
    on the rule's own page, one click away ("Change"). A rule added here gets their defaults.
    """

    model = AlertRule
    extra = 0
    fields = ["owner", "condition", "threshold", "window_seconds", "active", "last_fired_at"]
    readonly_fields = ["last_fired_at"]

    # The fields' widths are in static/css/admin.css (a style attribute breaks the CSP).

    autocomplete_fields = ["owner"]
    show_change_link = True
    ordering = ["-created_at", "-id"]


# The symbol's page lists its rules. The market app knows nothing of alerts (it sits below
# them), so this app extends its Symbol admin instead (market's admin registers first:
# INSTALLED_APPS lists market before alerts).
admin.site.unregister(Symbol)


@admin.register(Symbol)
class SymbolWithRulesAdmin(SymbolAdmin):
    inlines = [*SymbolAdmin.inlines, AlertRuleInline]
    list_display = [*SymbolAdmin.list_display[:-1], "active_rules", SymbolAdmin.list_display[-1]]

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
            services.rule_save(rule, actor=request.user, source=SOURCE)
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
            services.rule_delete(rule, actor=request.user, source=SOURCE)
