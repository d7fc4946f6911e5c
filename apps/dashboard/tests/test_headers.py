"""The content security policy and the other headers every page answers with
(docs/security.md#headers-and-the-content-security-policy), read off the real responses;
and what the pages are made of: no script runs unless it is a file of ours or carries the
request's nonce, no inline event handler, no style attribute. The browser's side (nothing
is refused, an injected script is) is in test_browser_csp.py.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import subprocess
import sys
from html.parser import HTMLParser

import pytest
from django.conf import settings
from django.contrib.auth.models import User
from django.test import Client

pytestmark = pytest.mark.django_db

PAGES = [
    "/",
    "/stocks/AAPL/",
    "/alerts/",
    "/ops/",
    "/accounts/login/",
    "/accounts/password_change/",
    "/admin/",
    "/admin/market/symbol/",
    "/admin/market/symbol/AAPL/change/",
    "/admin/alerts/alertrule/add/",
    "/admin/axes/accessattempt/",
    "/docs",
    "/redoc",
    "/api/v1/stocks/",  # the browsable API (DRF's templates)
    "/api-auth/login/",
    "/no-such-page/",
]


@pytest.fixture
def staff(market) -> Client:
    client = Client()
    client.force_login(User.objects.create_superuser("root", "root@example.com", "x"))
    return client


def csp_hash(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


def policy(answer) -> dict[str, list[str]]:
    header = answer["Content-Security-Policy"]
    return {
        name: values
        for name, *values in (part.split() for part in header.split(";") if part.strip())
    }


class Markup(HTMLParser):
    """What in a page could run or style itself inline."""

    def __init__(self) -> None:
        super().__init__()
        self.scripts: list[dict] = []  # each <script>'s attributes
        self.handlers: list[str] = []  # on*= attributes
        self.style_elements = 0  # <style> elements without a nonce
        self.style_attributes: list[str] = []  # their values

    def handle_starttag(self, tag: str, attrs: list) -> None:
        attributes = dict(attrs)
        if tag == "script":
            self.scripts.append(attributes)
        if tag == "style" and not attributes.get("nonce"):
            self.style_elements += 1
        self.handlers += [f"<{tag} {name}>" for name in attributes if name.startswith("on")]
        if "style" in attributes:
            self.style_attributes.append(attributes["style"])


@pytest.mark.parametrize("path", PAGES)
def test_every_page_has_the_strict_policy_and_runs_nothing_inline(staff, path):
    answer = staff.get(path, HTTP_ACCEPT="text/html")
    assert answer.status_code in (200, 404), (path, answer.status_code)
    directives = policy(answer)
    assert directives["default-src"] == ["'self'"]
    assert directives["object-src"] == ["'none'"]
    assert directives["base-uri"] == ["'self'"]
    assert directives["frame-ancestors"] == ["'none'"]
    assert directives["form-action"] == ["'self'"]
    assert "'self'" in directives["connect-src"]  # the pages' WebSockets: ws(s) of this host
    for directive in ("script-src", "style-src"):
        assert "'unsafe-inline'" not in directives[directive]
        assert "'unsafe-eval'" not in directives[directive]
        assert "*" not in directives[directive]
    assert answer["X-Frame-Options"] == "DENY"
    assert answer["X-Content-Type-Options"] == "nosniff"
    assert answer["Referrer-Policy"] == "same-origin"

    page = Markup()
    page.feed(answer.content.decode())
    nonce = next((v[7:-1] for v in directives["script-src"] if v.startswith("'nonce-")), None)
    for script in page.scripts:
        data = script.get("type") == "application/json"  # json_script: data, never run
        runs_by_nonce = nonce is not None and script.get("nonce") == nonce
        assert "src" in script or data or runs_by_nonce, (path, script)
    assert page.handlers == [], (path, page.handlers)
    assert page.style_elements == 0, path
    for tag in re.findall(r"<style[^>]*>", answer.content.decode()):
        assert f'nonce="{nonce}"' in tag, (path, tag)  # the response's own nonce
    # Style attributes: none in the site's own pages; in the admin's and the browsable API's,
    # only the few values allowed by their hashes.
    allowed = set(directives["style-src-attr"]) - {"'unsafe-hashes'"}
    if not path.startswith(("/admin/", "/api/", "/api-auth/", "/accounts/password_change/")):
        assert page.style_attributes == [], (path, page.style_attributes)
    for value in page.style_attributes:
        assert csp_hash(value) in allowed, (path, value)


def test_the_import_map_runs_by_the_nonce_of_its_own_response(staff):
    nonces = set()
    for _ in range(2):
        answer = staff.get("/stocks/AAPL/")
        html = answer.content.decode()
        tag = re.search(r'<script type="importmap" nonce="([^"]+)">', html)
        assert tag, "the import map carries a nonce"
        assert f"'nonce-{tag.group(1)}'" in policy(answer)["script-src"]
        nonces.add(tag.group(1))
    assert len(nonces) == 2  # a fresh one per response: a nonce read once is worth nothing


def test_redoc_alone_may_start_a_worker_from_a_blob(staff):
    assert policy(staff.get("/redoc"))["worker-src"] == ["'self'", "blob:"]
    assert "worker-src" not in policy(staff.get("/docs"))


def test_swagger_ui_starts_from_a_script_url_of_its_own(staff):
    html = staff.get("/docs").content.decode()
    src = re.search(r'<script src="(/docs\?[^"]*script=[^"]*)"></script>', html)
    assert src, "Swagger UI's start-up script is a URL, not inline"
    script = staff.get(src.group(1).replace("&amp;", "&"))
    assert script.status_code == 200
    assert script["Content-Type"].startswith("application/javascript")
    assert "SwaggerUIBundle(" in script.content.decode()


def test_report_only_sends_the_same_policy_without_enforcing_it(staff, settings):
    enforced = staff.get("/").headers["Content-Security-Policy"]
    settings.CONTENT_SECURITY_POLICY_REPORT_ONLY = settings.CONTENT_SECURITY_POLICY
    settings.CONTENT_SECURITY_POLICY = None
    answer = staff.get("/")
    assert "Content-Security-Policy" not in answer.headers
    assert re.sub(r"'nonce-[^']+'", "", answer["Content-Security-Policy-Report-Only"]) == re.sub(
        r"'nonce-[^']+'", "", enforced
    )


def _settings_with(**env: str) -> str:
    """What `marketflux_site.settings` makes of the environment `env`, in a fresh process."""
    code = (
        "import django, json; django.setup(); from django.conf import settings as s; "
        "print(json.dumps({'enforced': getattr(s, 'CONTENT_SECURITY_POLICY', None) is not None,"
        " 'report_only': getattr(s, 'CONTENT_SECURITY_POLICY_REPORT_ONLY', None) is not None,"
        " 'connect': s._CSP_DIRECTIVES['connect-src'], 'report': s._CSP_DIRECTIVES.get("
        "'report-uri')}))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "marketflux_site.settings", **env},
        capture_output=True,
        text=True,
        cwd=settings.BASE_DIR,
        check=True,
    )
    return result.stdout.strip().splitlines()[-1]


def test_the_report_only_switch_and_the_report_uri_are_settings():
    import json

    assert json.loads(_settings_with()) == {
        "enforced": True, "report_only": False, "connect": ["'self'"], "report": None,
    }  # fmt: skip
    switched = json.loads(
        _settings_with(
            MARKETFLUX_CSP_REPORT_ONLY="1", MARKETFLUX_CSP_REPORT_URI="https://reports.example/csp"
        )
    )
    assert switched["enforced"] is False
    assert switched["report_only"] is True
    assert switched["report"] == ["https://reports.example/csp"]


def test_without_a_proxy_the_websocket_port_of_each_allowed_host_is_allowed():
    import json

    sources = json.loads(
        _settings_with(MARKETFLUX_WS_PORT="8766", ALLOWED_HOSTS="127.0.0.1,[::1],.example.com")
    )["connect"]
    assert sources == [
        "'self'",
        "ws://127.0.0.1:8766",
        "wss://127.0.0.1:8766",
        "ws://example.com:8766",
        "wss://example.com:8766",
        "ws://*.example.com:8766",
        "wss://*.example.com:8766",
    ]


def test_the_browsable_apis_log_out_is_a_form_not_an_inline_handler(staff):
    html = staff.get("/api/v1/stocks/", HTTP_ACCEPT="text/html").content.decode()
    form = re.search(
        r'<form method="post" action="(/api-auth/logout/\?next=/api/v1/stocks/)"[^>]*>\s*'
        r'<input type="hidden" name="csrfmiddlewaretoken" value="[^"]+">\s*'
        r'<button type="submit" class="btn btn-link" data-logout>Log out</button>',
        html,
    )
    assert form, "the user menu logs out with a form's button"
    answer = staff.post(form.group(1))
    assert answer.status_code == 302
    assert answer["Location"] == "/api/v1/stocks/"
    assert 'data-signed-in="false"' in staff.get("/").content.decode()
