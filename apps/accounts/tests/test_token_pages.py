"""Managing API tokens by hand (docs/security.md#api-tokens): the signed-in user's page at
`/account/tokens/` and the admin, through Django's test client."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.utils import timezone

from apps.accounts.models import ApiToken
from apps.accounts.tests.helpers import API, bearer, columns_holding, issue, token_of

PAGE = "/account/tokens/"
ADMIN = "/admin/accounts/apitoken/"
KEY = re.compile(r'value="(mfx_[A-Za-z0-9_-]{43})"[^>]*data-new-key')


def shown_key(html: str) -> str:
    (key,) = KEY.findall(html)
    return key


def main_part(html: str) -> str:
    return html.split('<main id="main">', 1)[1].split("</main>", 1)[0]


# The page


def test_the_page_needs_a_login(client, db):
    answer = client.get(PAGE)
    assert answer.status_code == 302
    assert answer["Location"].startswith("/accounts/login/")


def test_a_token_made_on_the_page_shows_its_key_once(client, market, redis_client, alice):
    client.force_login(alice)
    assert "No tokens yet" in client.get(PAGE).content.decode()
    expiry = (timezone.now() + timedelta(days=7)).strftime("%Y-%m-%dT%H:%M")
    made = client.post(PAGE, {"name": "notebook", "scopes": ["read"], "expires": expiry})
    assert made.status_code == 200
    assert "no-store" in made["Cache-Control"]
    html = made.content.decode()
    key = shown_key(html)
    assert "shown this once" in html

    again = client.get(PAGE)
    listing = again.content.decode()
    assert key not in listing
    assert key[12:20] not in listing
    assert f"{key[:12]}…" in listing
    assert "notebook" in listing
    assert columns_holding(key) == []

    client.logout()
    assert client.get(f"{API}/stocks", headers=bearer(key)).status_code == 200
    assert token_of(key).expires.strftime("%Y-%m-%dT%H:%M") == expiry


@pytest.mark.parametrize(
    ("form", "field"),
    [
        ({"name": "x", "scopes": ["write"]}, "scopes"),
        ({"name": "x"}, "scopes"),
        ({"name": "", "scopes": ["read"]}, "name"),
        ({"name": "taken", "scopes": ["read"]}, "name"),
        ({"name": "x", "scopes": ["read"], "expires": "2020-01-01T00:00"}, "expires"),
    ],
)
def test_a_bad_form_shows_the_error_beside_its_field(client, redis_client, alice, form, field):
    issue(alice, "read", name="taken")
    client.force_login(alice)
    answer = client.post(PAGE, form)
    assert answer.status_code == 400
    assert f'data-error-for="{field}"' in answer.content.decode()
    assert "data-new-key" not in answer.content.decode()
    assert ApiToken.objects.count() == 1


def test_revoke_on_the_page(client, market, redis_client, alice, bob):
    key = issue(alice, "read", name="old")
    bobs = issue(bob, "read")
    client.force_login(alice)
    mine, theirs = token_of(key).pk, token_of(bobs).pk
    assert client.get(f"{PAGE}{mine}/revoke").status_code == 405  # a POST button only
    assert client.post(f"{PAGE}{theirs}/revoke").status_code == 404
    assert token_of(bobs).revoked is None

    answer = client.post(f"{PAGE}{mine}/revoke", follow=True)
    html = answer.content.decode()
    assert "Token old" in html
    assert "revoked" in html
    assert 'aria-label="Revoke token old"' not in html  # nothing left to revoke
    client.logout()
    assert client.get(f"{API}/stocks", headers=bearer(key)).status_code == 401


def test_the_page_uses_csrf_protected_forms_and_no_inline_script(redis_client, alice):
    issue(alice, "read")
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(alice)
    html = browser.get(PAGE).content.decode()
    content = main_part(html)
    assert content.count("<form") == content.count("csrfmiddlewaretoken") == 2
    assert "<script" not in content
    assert "onclick=" not in content
    refused = browser.post(PAGE, {"name": "x", "scopes": ["read"]})
    assert refused.status_code == 403
    assert not ApiToken.objects.filter(name="x").exists()


# The admin


@pytest.fixture
def admin(db) -> Client:
    client = Client()
    client.force_login(get_user_model().objects.create_superuser("root"))
    return client


def test_a_token_added_in_the_admin_shows_its_key_once(admin, market, redis_client, alice):
    answer = admin.post(
        f"{ADMIN}add/", {"user": alice.pk, "name": "feed", "scopes": ["read", "alerts:write"]}
    )
    assert answer.status_code == 200
    key = shown_key(answer.content.decode())
    token = token_of(key)
    assert (token.user, token.name, token.scopes) == (alice, "feed", ["read", "alerts:write"])

    for page in (ADMIN, f"{ADMIN}{token.pk}/change/"):
        html = admin.get(page).content.decode()
        assert key not in html, page
        assert token.digest not in html, page
    assert f"{key[:12]}…" in admin.get(ADMIN).content.decode()
    assert columns_holding(key) == []
    assert Client().get(f"{API}/stocks", headers=bearer(key)).status_code == 200


def test_the_admin_refuses_a_duplicate_name_and_a_past_expiry(admin, redis_client, alice):
    issue(alice, "read", name="taken")
    duplicate = admin.post(f"{ADMIN}add/", {"user": alice.pk, "name": "taken", "scopes": ["read"]})
    assert duplicate.status_code == 200
    assert "already have a token named" in duplicate.content.decode()
    past = admin.post(
        f"{ADMIN}add/",
        {"user": alice.pk, "name": "x", "scopes": ["read"], "expires": "2020-01-01T00:00"},
    )
    assert "must be in the future" in past.content.decode()
    assert ApiToken.objects.count() == 1


def test_the_admin_revoke_action(admin, market, redis_client, alice, bob):
    keys = [issue(alice, "read"), issue(bob, "read")]
    answer = admin.post(
        ADMIN,
        {"action": "revoke", "_selected_action": [token_of(k).pk for k in keys]},
        follow=True,
    )
    assert "Revoked 2 token(s)." in answer.content.decode()
    for key in keys:
        assert Client().get(f"{API}/stocks", headers=bearer(key)).status_code == 401
    listing = admin.get(f"{ADMIN}?state=revoked").content.decode()
    assert listing.count('class="field-state">revoked') == 2
