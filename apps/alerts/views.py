"""The alerts page: the signed-in user's rules, a form for a new one, their recent events.

Thin views: every rule change goes through `apps.alerts.services` (audited, source "web");
each button is a POST form that redirects back here (POST, redirect, GET).
"""

from __future__ import annotations

from django.contrib import messages
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from apps.accounts import roles
from apps.alerts import selectors, services
from apps.alerts.conditions import ALL_SYMBOLS, CONDITIONS
from apps.alerts.forms import RuleForm, condition_fields
from apps.alerts.models import AlertEvent, AlertRule
from apps.market.display import price_text

SOURCE = "web"
RECENT_EVENTS = 100
# Every view here is a user's own rules: analysts and up. An anonymous visitor is sent to
# the login page, a signed-in user whose role keeps no rules gets a 403 (docs/security.md).
own_alerts = roles.page_requires(roles.OWN_ALERTS)


def rule_text(rule: AlertRule) -> str:
    """A rule as a person reads it: `#3 AAPL Price above 230`, the condition's label and
    never its code (`price_above`)."""
    spec = CONDITIONS[rule.condition]
    if rule.threshold is None:
        level = ""
    elif spec.threshold == "price":
        level = f" {price_text(rule.threshold)}"
    else:
        level = f" {rule.threshold:g}"
    return f"#{rule.pk} {rule.symbol_id or ALL_SYMBOLS} {spec.label}{level}"


@own_alerts
def index(request: HttpRequest) -> HttpResponse:
    """GET: the page. POST: create a rule from the form (errors shown beside their fields)."""
    form = RuleForm(request.POST or None)
    if request.method == "POST":
        form.instance.owner = request.user
        if form.is_valid():
            services.rule_save(form.instance, actor=request.user, source=SOURCE)
            messages.success(request, f"Rule {rule_text(form.instance)} created.")
            return redirect("alerts:index")
    rules = selectors.user_rules(request.user)
    events = selectors.user_events(request.user)[:RECENT_EVENTS]
    return render(
        request,
        "alerts/index.html",
        {
            "form": form,
            "rules": rules,
            "events": events,
            "recent_events": RECENT_EVENTS,
            "condition_fields": condition_fields(),
        },
        status=400 if form.errors else 200,
    )


@require_POST
@own_alerts
def rule_active(request: HttpRequest, pk: int) -> HttpResponse:
    """Enable (active=true) or disable (active=false) one of your rules."""
    rules = selectors.user_rules(request.user).filter(pk=pk)
    get_object_or_404(rules)
    wanted = request.POST.get("active")
    if wanted not in ("true", "false"):
        return HttpResponseBadRequest('"active" must be "true" or "false"')
    active = wanted == "true"
    services.rules_set_active(rules, active=active, actor=request.user, source=SOURCE)
    messages.success(request, f"Rule #{pk} {'enabled' if active else 'disabled'}.")
    return redirect("alerts:index")


@require_POST
@own_alerts
def rule_delete(request: HttpRequest, pk: int) -> HttpResponse:
    rule = get_object_or_404(selectors.user_rules(request.user), pk=pk)
    services.rule_delete(rule, actor=request.user, source=SOURCE)
    messages.success(request, f"Rule #{pk} deleted.")
    return redirect("alerts:index")


@require_POST
@own_alerts
def event_acknowledge(request: HttpRequest, pk: int) -> HttpResponse:
    event = get_object_or_404(AlertEvent, owner=request.user, pk=pk)
    services.event_acknowledge(event)
    return redirect("alerts:index")
