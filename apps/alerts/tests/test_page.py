"""The alerts page (/alerts/) as a signed-in user works with it, in a browser's HTTP."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta

import pytest
from auditlog.models import LogEntry as AuditEntry
from django.test import Client

from apps.accounts.audit import entries_for
from apps.alerts.models import AlertRule
from apps.testing.factories import AlertEventFactory, AlertRuleFactory

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("market", "fresh_state")]

PAGE = "/alerts/"
T0 = datetime(2026, 12, 1, 15, 0, tzinfo=UTC)


@pytest.fixture
def browser(alice) -> Client:
    """Alice in a browser that enforces CSRF, as a real one does."""
    client = Client(enforce_csrf_checks=True)
    client.force_login(alice)
    return client


def csrf(client: Client) -> str:
    page = client.get(PAGE)
    return re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.content.decode())[1]


def post(client: Client, path: str, data: dict | None = None, **kwargs):
    return client.post(path, {"csrfmiddlewaretoken": csrf(client), **(data or {})}, **kwargs)


def changes_made(**filters) -> list[AuditEntry]:
    """The audit log's entries about alert rules other than their creation by a factory."""
    return list(entries_for("alerts.AlertRule").filter(**filters).exclude(
        additional_data__door="shell"))  # fmt: skip


def rule_rows(html: str) -> list[str]:
    return re.findall(r'<tr data-rule-id="(\d+)"', html)


def event_rows(html: str) -> list[str]:
    return re.findall(r'<tr data-alert-id="(\d+)"', html)


def test_login_required(client, alice):
    response = client.get(PAGE)
    assert response.status_code == 302
    assert response["Location"] == "/accounts/login/?next=/alerts/"
    rule = AlertRuleFactory(owner=alice)
    response = client.post(f"/alerts/rules/{rule.pk}/delete")
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")
    assert AlertRule.objects.exists()


def test_shows_only_your_rules(browser, alice, bob):
    mine = AlertRuleFactory(owner=alice, symbol_id="AAPL")
    everything = AlertRuleFactory(
        owner=alice, symbol_id=None, condition="anomaly", threshold=None, active=False
    )
    AlertRuleFactory(owner=bob, symbol_id="TSLA")
    html = browser.get(PAGE).content.decode()
    assert rule_rows(html) == [str(everything.pk), str(mine.pk)]
    assert '<th scope="row" data-field="symbol">*</th>' in html
    assert '<th scope="row" data-field="symbol">AAPL</th>' in html
    assert "TSLA</th>" not in html
    assert "Price above" in html
    assert f'aria-label="Disable rule {mine.pk}"' in html
    assert f'aria-label="Enable rule {everything.pk}"' in html


def test_every_form_control_is_labelled(browser):
    html = browser.get(PAGE).content.decode()
    form = html[html.index('id="new-rule-title"') :]
    ids = re.findall(r'<(?:input|select|textarea)[^>]*\bid="(id_[^"]+)"', form)
    assert {"id_symbol", "id_condition", "id_threshold", "id_frequency", "id_message"} <= set(ids)
    for control in ids:
        assert f'<label for="{control}">' in form, control


def test_create_a_rule_with_the_form(browser, alice):
    response = post(
        browser,
        PAGE,
        {"symbol": "MSFT", "condition": "price_below", "threshold": "300",
         "frequency": "every_time", "cooldown_seconds": "60", "message": "{symbol} dipped"},
        follow=True,
    )  # fmt: skip
    assert response.status_code == 200
    rule = AlertRule.objects.get()
    assert (rule.owner, rule.symbol_id, rule.condition, rule.threshold) == (
        alice, "MSFT", "price_below", 300.0
    )  # fmt: skip
    assert (rule.frequency, rule.cooldown_seconds, rule.message) == (
        "every_time",
        60,
        "{symbol} dipped",
    )
    assert rule_rows(response.content.decode()) == [str(rule.pk)]
    assert "created" in response.content.decode()
    (audit,) = changes_made()
    assert (audit.action, audit.actor, audit.additional_data["door"]) == (
        AuditEntry.Action.CREATE, alice, "web"
    )  # fmt: skip


def test_the_form_can_watch_every_symbol(browser):
    post(browser, PAGE, {"symbol": "*", "condition": "anomaly", "frequency": "once"})
    assert AlertRule.objects.get().symbol_id is None


def test_the_symbol_has_no_default_the_user_picks_one(browser):
    html = browser.get(PAGE).content.decode()
    select = re.search(r'<select name="symbol"[^>]*>(.*?)</select>', html, re.S).group(1)
    options = re.findall(r'<option value="([^"]*)"( selected)?>', select)
    assert options[0] == ("", " selected")  # "Choose a symbol…"
    assert ("*", "") in options
    assert ("AAPL", "") in options
    assert [v for v, selected in options if selected] == [""]
    response = post(browser, PAGE, {"condition": "anomaly", "frequency": "once"})
    assert response.status_code == 400
    errors = re.findall(r'data-error-for="(\w+)">([^<]*)<', response.content.decode())
    assert errors == [("symbol", "Choose a symbol, or * for every active symbol.")]
    assert not AlertRule.objects.exists()


def test_without_javascript_every_field_shows_and_the_server_decides(browser):
    """The page hides the fields a condition does not use only in the browser
    (static/js/alerts.js); the HTML has them all, and a threshold sent with a condition that
    takes none is still refused beside its field."""
    html = browser.get(PAGE).content.decode()
    for name in ("symbol", "condition", "threshold", "window_seconds", "frequency",
                 "cooldown_seconds", "expires_at", "message"):  # fmt: skip
        assert re.search(rf'<p class="field" data-form-field="{name}">', html), name
    form = re.search(r"data-rule-form>(.*?)</form>", html, re.S).group(1)
    assert not re.search(r"<p [^>]*hidden", form)
    fields = json.loads(re.search(r'id="condition-fields"[^>]*>(.*?)</script>', html)[1])
    assert fields["anomaly"]["threshold"] == ""
    assert fields["change_pct_up"]["window"] is True
    response = post(browser, PAGE, {"symbol": "AAPL", "condition": "anomaly", "threshold": "3",
                                    "frequency": "once"})  # fmt: skip
    assert response.status_code == 400
    assert 'data-error-for="threshold">anomaly takes no threshold<' in response.content.decode()


def test_a_confirmation_names_the_condition_not_its_code(browser):
    response = post(
        browser, PAGE,
        {"symbol": "AAPL", "condition": "price_above", "threshold": "230", "frequency": "once"},
        follow=True,
    )  # fmt: skip
    html = response.content.decode()
    confirmation = re.search(r'<ul class="messages" role="status">(.*?)</ul>', html, re.S)[1]
    assert "AAPL Price above 230.00 created." in confirmation
    assert "price_above" not in confirmation


def test_event_prices_read_at_the_tick_size(browser, alice):
    rule = AlertRuleFactory(owner=alice)
    event = AlertEventFactory(rule=rule, ts=T0, price=228.21636189711106, value=228.21636189711106)
    penny = AlertEventFactory(
        rule=AlertRuleFactory(owner=alice, condition="rsi_above", threshold=70.0),
        ts=T0 + timedelta(seconds=1), price=0.123456, value=71.234567,
    )  # fmt: skip
    html = browser.get(PAGE).content.decode()
    row = html[html.index(f'data-alert-id="{event.pk}"') :].split("</tr>")[0]
    assert '<td class="num" data-field="price">228.22</td>' in row
    assert '<td class="num" data-field="value">228.22</td>' in row
    assert "228.216" not in html
    row = html[html.index(f'data-alert-id="{penny.pk}"') :].split("</tr>")[0]
    assert '<td class="num" data-field="price">0.1235</td>' in row
    assert '<td class="num" data-field="value">71.23</td>' in row  # an RSI level, no tick size


@pytest.mark.parametrize(
    ("data", "field", "message"),
    [
        ({"condition": "rsi_above", "threshold": "150"}, "threshold", "between 0 and 100"),
        ({"condition": "change_pct_up", "threshold": "2"}, "window_seconds", "needs a window"),
        ({"symbol": "NOPE"}, "symbol", "Select a valid choice"),
        ({"message": "{nope}"}, "message", "unknown placeholder"),
        ({"expires_at": "2020-01-01T00:00"}, "expires_at", "is in the past"),
    ],
)
def test_an_invalid_rule_is_shown_beside_its_field(browser, data, field, message):
    base = {"symbol": "AAPL", "condition": "price_above", "threshold": "200",
            "frequency": "once_per_bar", "cooldown_seconds": "0"}  # fmt: skip
    response = post(browser, PAGE, {**base, **data})
    assert response.status_code == 400
    html = response.content.decode()
    errors = re.findall(r'data-error-for="(\w+)">([^<]*)<', html)
    assert [name for name, _ in errors] == [field]
    assert message in errors[0][1]
    assert not AlertRule.objects.exists()
    assert not changes_made()


def test_disable_and_enable(browser, alice):
    rule = AlertRuleFactory(owner=alice)
    post(browser, f"/alerts/rules/{rule.pk}/active", {"active": "false"})
    rule.refresh_from_db()
    assert rule.active is False
    html = browser.get(PAGE).content.decode()
    assert f'aria-label="Enable rule {rule.pk}"' in html
    post(browser, f"/alerts/rules/{rule.pk}/active", {"active": "true"})
    rule.refresh_from_db()
    assert rule.active is True
    audits = changes_made()
    assert [a.changes for a in audits] == [{"active": [True, False]}, {"active": [False, True]}]
    assert {(a.actor, a.additional_data["door"]) for a in audits} == {(alice, "web")}


def test_enable_or_disable_takes_only_true_or_false(browser, alice):
    rule = AlertRuleFactory(owner=alice)
    response = post(browser, f"/alerts/rules/{rule.pk}/active", {"active": "maybe"})
    assert response.status_code == 400
    rule.refresh_from_db()
    assert rule.active is True
    assert not changes_made()


def test_delete(browser, alice):
    rule = AlertRuleFactory(owner=alice)
    response = post(browser, f"/alerts/rules/{rule.pk}/delete")
    assert response.status_code == 302
    assert response["Location"] == PAGE
    assert not AlertRule.objects.exists()
    assert [a.action for a in changes_made()] == [AuditEntry.Action.DELETE]


def test_someone_elses_rules_and_events_are_404s(browser, bob):
    theirs = AlertRuleFactory(owner=bob)
    event = AlertEventFactory(rule=theirs, ts=T0)
    for path, data in [
        (f"/alerts/rules/{theirs.pk}/active", {"active": "false"}),
        (f"/alerts/rules/{theirs.pk}/delete", {}),
        (f"/alerts/events/{event.pk}/acknowledge", {}),
    ]:
        assert post(browser, path, data).status_code == 404, path
    theirs.refresh_from_db()
    event.refresh_from_db()
    assert (theirs.active, event.acknowledged) == (True, False)
    assert not changes_made()


def test_buttons_are_post_only_and_need_the_csrf_token(browser, alice):
    rule = AlertRuleFactory(owner=alice)
    assert browser.get(f"/alerts/rules/{rule.pk}/delete").status_code == 405
    assert browser.post(f"/alerts/rules/{rule.pk}/delete").status_code == 403  # no token
    assert AlertRule.objects.exists()


def test_recent_events_newest_first_with_acknowledge(browser, alice, bob):
    rule = AlertRuleFactory(owner=alice)
    events = [AlertEventFactory(rule=rule, ts=T0 + timedelta(seconds=i)) for i in range(101)]
    AlertEventFactory(rule=AlertRuleFactory(owner=bob), ts=T0 + timedelta(hours=1))
    html = browser.get(PAGE).content.decode()
    shown = event_rows(html)
    assert shown == [str(e.pk) for e in reversed(events[1:])]  # the newest 100
    newest = events[-1]
    response = post(browser, f"/alerts/events/{newest.pk}/acknowledge", follow=True)
    newest.refresh_from_db()
    assert newest.acknowledged is True
    html = response.content.decode()
    row = html[html.index(f'data-alert-id="{newest.pk}"') :].split("</tr>")[0]
    assert 'data-acknowledged="true"' in row
    assert "Acknowledge" not in row
    assert f'aria-label="Acknowledge alert {events[-2].pk}"' in html
    # Again is fine.
    assert post(browser, f"/alerts/events/{newest.pk}/acknowledge").status_code == 302
