"""CSRF (docs/security.md#threat-model): a request that changes something on the strength
of the session cookie alone is refused unless it carries the page's CSRF token, on the
pages' forms and on the session-authenticated API alike. A browser's cookie goes with any
site's request; the token only with ours.

Django's test client with `enforce_csrf_checks=True`, as a browser on another site would
send the request: the cookie, no token.
"""

from __future__ import annotations

import pytest
from django.test import Client

from apps.alerts.models import AlertRule

pytestmark = pytest.mark.django_db

RULE = {"symbol": "AAPL", "condition": "price_above", "threshold": 1, "frequency": "once"}


@pytest.fixture
def browser(market, alice) -> Client:
    """Alice's signed-in browser (an analyst: she keeps alert rules), checked for CSRF as
    Django checks real ones."""
    client = Client(enforce_csrf_checks=True)
    client.force_login(alice)
    return client


def csrf_token(client: Client) -> str:
    """The token a page of ours hands the browser (its cookie, set by rendering a form)."""
    client.get("/alerts/")
    return client.cookies["csrftoken"].value


def test_the_alerts_form_without_a_token_is_refused(browser):
    answer = browser.post("/alerts/", RULE)
    assert answer.status_code == 403
    assert "CSRF" in answer.content.decode()
    assert not AlertRule.objects.exists()

    # The same form with the page's token goes through: the token was what was missing.
    token = csrf_token(browser)
    answer = browser.post("/alerts/", {**RULE, "csrfmiddlewaretoken": token})
    assert answer.status_code == 302
    assert AlertRule.objects.count() == 1


def test_a_session_api_write_without_a_token_is_refused(browser):
    answer = browser.post("/api/v1/alerts/rules/", RULE, content_type="application/json")
    assert answer.status_code == 403
    assert "CSRF" in answer.json()["detail"]
    assert not AlertRule.objects.exists()

    token = csrf_token(browser)
    answer = browser.post(
        "/api/v1/alerts/rules/", RULE, content_type="application/json", HTTP_X_CSRFTOKEN=token
    )
    assert answer.status_code == 201, answer.content
    assert AlertRule.objects.count() == 1


def test_logging_out_without_a_token_is_refused(browser):
    assert browser.post("/accounts/logout/").status_code == 403
    assert 'data-signed-in="true"' in browser.get("/").content.decode()  # still signed in
