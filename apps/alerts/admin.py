"""The alerts admin: every user's rules, their events, and the audit trail of rule changes.

Saves, deletes and actions go through `apps.alerts.services`, so each rule change leaves an
AlertRuleAudit (source "admin"); Django's admin log records them too (the normal views log
by themselves, the actions log each rule they changed).
"""

from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from apps.alerts import conditions, services
from apps.alerts.models import AlertEvent, AlertRule, AlertRuleAudit

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


@admin.register(AlertRuleAudit)
class AlertRuleAuditAdmin(admin.ModelAdmin):
    """Read-only, for everyone: an audit trail that can be edited is not one."""

    list_display = ["at", "rule_id", "action", "actor", "source", "changes"]
    list_filter = ["action", "source", "at"]
    list_select_related = ["actor"]
    search_fields = ["actor__username"]
    date_hierarchy = "at"

    def get_search_results(self, request: HttpRequest, queryset: QuerySet, search_term: str):
        """Also find a rule's trail by its number (rule_id is kept after the rule is gone)."""
        found, duplicates = super().get_search_results(request, queryset, search_term)
        term = search_term.strip().lstrip("#")
        if term.isdigit() and len(term) < 19:
            found |= queryset.filter(rule_id=int(term))
        return found, duplicates

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(
        self, request: HttpRequest, obj: AlertRuleAudit | None = None
    ) -> bool:
        return False

    def has_delete_permission(
        self, request: HttpRequest, obj: AlertRuleAudit | None = None
    ) -> bool:
        return False
