"""Login protection (docs/security.md#login-protection): after MARKETFLUX_LOGIN_FAILURES
failed logins of one username from one address, that pair is locked out, even with the right
password, on the site's login page and the admin's alike, until the lockout time passes or an
administrator unlocks it (the admin's Axes pages, or `manage.py axes_reset_username`). And
the password validators hold where a signed-in user changes their password.

Real requests through the whole middleware chain (Django's test client) on PostgreSQL.
"""

from __future__ import annotations

from datetime import timedelta
from io import StringIO

import pytest
from axes.models import AccessAttempt
from django.conf import settings
from django.contrib.auth.models import User
from django.core.management import call_command
from django.db.models import F
from django.test import Client

pytestmark = pytest.mark.django_db

PASSWORD = "a long and unlikely passphrase 42"  # noqa: S105 (a throwaway test user)
HOME = "198.51.100.7"  # the address alice logs in from (TEST-NET-2)
ELSEWHERE = "203.0.113.9"  # another one (TEST-NET-3)


@pytest.fixture
def alice(db) -> User:
    return User.objects.create_user("alice", password=PASSWORD)


@pytest.fixture
def root(db) -> User:
    return User.objects.create_superuser("root", "root@example.com", PASSWORD)


def log_in(client: Client, username: str, password: str, address: str = HOME, path: str = ""):
    """A POST to the site's login page (or `path`, the admin's), as from `address`."""
    return client.post(
        path or "/accounts/login/",
        {"username": username, "password": password, "next": "/"},
        REMOTE_ADDR=address,
    )


def signed_in(client: Client) -> bool:
    return 'data-signed-in="true"' in client.get("/").content.decode()


def fail_until_locked(client: Client, username: str = "alice", address: str = HOME):
    """MARKETFLUX_LOGIN_FAILURES wrong passwords: every one before the last is the form's
    usual error, the last is the lockout. Returns that last answer."""
    limit = settings.MARKETFLUX_LOGIN_FAILURES
    for _ in range(limit - 1):
        answer = log_in(client, username, "wrong password", address)
        assert answer.status_code == 200
        assert "didn't match" in answer.content.decode()
    return log_in(client, username, "wrong password", address)


def assert_locked(answer) -> None:
    html = answer.content.decode()
    assert answer.status_code == 429, answer.status_code
    assert "Account locked" in html
    assert "even with the right password" in html


def test_failures_lock_the_user_out_from_that_address_with_a_clear_page(client, alice):
    assert settings.MARKETFLUX_LOGIN_FAILURES == 5  # the documented default
    locked = fail_until_locked(client)
    assert_locked(locked)
    html = locked.content.decode()
    assert "<strong>alice</strong>" in html
    # For how long: the documented default, 15 minutes after the last attempt.
    assert '<span data-field="lockout-minutes">15</span> minutes after the last attempt' in html
    assert "Axes &rsaquo; Access attempts" in html  # who can lift it

    # The right password changes nothing now, here or on the admin's login page.
    assert_locked(log_in(client, "alice", PASSWORD))
    assert_locked(log_in(client, "alice", PASSWORD, path="/admin/login/?next=/admin/"))
    assert not signed_in(client)


def test_the_lock_is_for_that_username_and_address_only(client, alice):
    User.objects.create_user("bob", password=PASSWORD)
    assert_locked(fail_until_locked(client))
    # Alice from another address, and another user from hers, log in as usual.
    assert log_in(Client(), "alice", PASSWORD, ELSEWHERE).status_code == 302
    assert log_in(Client(), "bob", PASSWORD, HOME).status_code == 302


def test_the_admin_login_counts_failures_too(client, alice):
    limit = settings.MARKETFLUX_LOGIN_FAILURES
    for _ in range(limit - 1):
        assert log_in(client, "alice", "wrong", path="/admin/login/").status_code == 200
    assert_locked(log_in(client, "alice", "wrong", path="/admin/login/"))
    assert_locked(log_in(client, "alice", PASSWORD))  # and the site's page agrees


def test_a_good_login_before_the_limit_forgets_the_failures(client, alice):
    limit = settings.MARKETFLUX_LOGIN_FAILURES
    for _ in range(limit - 1):
        log_in(client, "alice", "wrong")
    assert log_in(client, "alice", PASSWORD).status_code == 302
    client.post("/accounts/logout/")
    for _ in range(limit - 1):  # a fresh count: as many again are still only errors
        assert log_in(client, "alice", "wrong").status_code == 200
    assert log_in(client, "alice", PASSWORD).status_code == 302


def test_the_lock_ends_when_the_lockout_time_has_passed(client, alice, settings):
    settings.AXES_COOLOFF_TIME = timedelta(minutes=15)
    assert_locked(fail_until_locked(client))
    assert_locked(log_in(client, "alice", PASSWORD))
    # The failures are 16 minutes old: as if the time had passed (no sleep, which a busy
    # machine's slow attempts could outlast).
    AccessAttempt.objects.update(attempt_time=F("attempt_time") - timedelta(minutes=16))
    assert log_in(client, "alice", PASSWORD).status_code == 302
    assert signed_in(client)


def test_without_a_lockout_time_the_page_says_an_administrator_must_unlock(client, alice, settings):
    settings.AXES_COOLOFF_TIME = None  # MARKETFLUX_LOCKOUT_MINUTES=0
    html = fail_until_locked(client).content.decode()
    assert "locked\n    until an administrator unlocks it" in html
    assert "minutes after the last attempt" not in html


def test_the_reset_command_unlocks_the_user(client, alice):
    assert_locked(fail_until_locked(client))
    call_command("axes_reset_username", "alice", stdout=StringIO())
    assert log_in(client, "alice", PASSWORD).status_code == 302
    assert signed_in(client)


def test_an_administrator_unlocks_the_user_in_the_admin(client, alice, root):
    assert_locked(fail_until_locked(client))

    admin = Client()
    admin.force_login(root)
    listing = admin.get("/admin/axes/accessattempt/")
    assert listing.status_code == 200
    html = listing.content.decode()
    assert "alice" in html
    assert HOME in html  # the address it is locked from
    from axes.models import AccessAttempt

    attempt = AccessAttempt.objects.get(username="alice")
    # The change list's "Delete selected" action, confirmed: the lock is lifted.
    confirmed = admin.post(
        "/admin/axes/accessattempt/",
        {"action": "delete_selected", "_selected_action": [attempt.pk], "post": "yes"},
    )
    assert confirmed.status_code == 302
    assert not AccessAttempt.objects.filter(username="alice").exists()

    assert log_in(client, "alice", PASSWORD).status_code == 302
    assert signed_in(client)


def test_a_forwarded_address_counts_only_behind_a_trusted_proxy(client, alice, settings):
    # No proxy in front (NUM_PROXIES=0): X-Forwarded-For is the client's own say, ignored,
    # so changing it on every attempt does not escape the lock.
    limit = settings.MARKETFLUX_LOGIN_FAILURES
    for n in range(limit):
        answer = client.post(
            "/accounts/login/",
            {"username": "alice", "password": "wrong"},
            REMOTE_ADDR=HOME,
            HTTP_X_FORWARDED_FOR=f"192.0.2.{n}",
        )
    assert_locked(answer)

    # Behind one proxy, the address it recorded (the last entry) is the client's: a lock of
    # one client behind the proxy does not lock the others, whatever they put in front.
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "NUM_PROXIES": 1}
    proxy = "10.0.0.2"
    for _ in range(limit):
        answer = client.post(
            "/accounts/login/",
            {"username": "alice", "password": "wrong"},
            REMOTE_ADDR=proxy,
            HTTP_X_FORWARDED_FOR=f"{ELSEWHERE}, 192.0.2.50",
        )
    assert_locked(answer)
    other = Client().post(
        "/accounts/login/",
        {"username": "alice", "password": PASSWORD},
        REMOTE_ADDR=proxy,
        HTTP_X_FORWARDED_FOR=f"{ELSEWHERE}, 192.0.2.51",
    )
    assert other.status_code == 302


def test_a_signed_in_password_change_applies_the_password_validators(client, alice):
    client.force_login(alice)
    page = "/accounts/password_change/"
    assert client.get(page).status_code == 200
    for weak, why in [
        ("password", "too common"),
        ("short1", "too short"),
        ("4815162342", "entirely numeric"),
        ("alice1234", "too similar"),
    ]:
        answer = client.post(
            page, {"old_password": PASSWORD, "new_password1": weak, "new_password2": weak}
        )
        assert answer.status_code == 200
        assert why in answer.content.decode(), (weak, why)
    strong = "another long and unlikely passphrase"
    answer = client.post(
        page, {"old_password": PASSWORD, "new_password1": strong, "new_password2": strong}
    )
    assert answer.status_code == 302
    alice.refresh_from_db()
    assert alice.check_password(strong)
