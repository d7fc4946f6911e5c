"""The content security policy in a real browser (Playwright driving Debian's chromium)
against a live Daphne with a real Celery worker and beat, as `make run` serves it
(docs/security.md#headers-and-the-content-security-policy): every page works under the
policy, with no violation reported and no console error; a script injected into a page is
refused and reported.

Needs /usr/bin/chromium (`apt-get install chromium`); without it these tests fail saying so.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import TimeoutError as PlaywrightTimeout

from apps.testing.browser import (
    PASSWORD,
    VIEWPORTS,
    WAIT_MS,
    PageWatch,
    browser_test_marks,
    chromium,
    log_in,
    screenshot,
    ticking_site,
)

pytestmark = browser_test_marks()

# Every securitypolicyviolation event of the page, kept where the test can read it. An init
# script is the browser's own (DevTools), not the page's: the policy does not apply to it.
RECORD_VIOLATIONS = """
window.__violations = [];
document.addEventListener("securitypolicyviolation", (e) => {
  window.__violations.push({directive: e.effectiveDirective, blocked: e.blockedURI,
                            sample: e.sample, disposition: e.disposition});
});
"""

# What shows each page working once its scripts ran: live data, a drawn chart, a filled
# table, the docs' operations listed.
PAGES = [
    ("market", "/", '[data-field="connection"][data-state="live"]',
     """() => [...document.querySelectorAll('td[data-field="price"]')]
           .some((td) => /\\d/.test(td.textContent))"""),
    ("symbol", "/stocks/AAPL/", "[data-chart][data-state=ready] canvas",
     """() => document.querySelectorAll('[data-legend="price"] .legend-item').length > 0"""),
    ("alerts", "/alerts/", '[data-field="connection"][data-state="live"]',
     """() => window.marketflux?.page === "alerts" """),
    ("ops", "/ops/", "svg[data-chart=ticks_per_s]",
     """() => document.querySelector('[data-field="updated"]').textContent !== "first paint" """),
    ("admin-index", "/admin/", "#content h1",
     """() => document.querySelectorAll("#content-main .module").length > 2
              && document.documentElement.dataset.theme === "auto" """),  # admin's theme.js
    ("admin-changelist", "/admin/market/symbol/", "#result_list",
     """() => document.querySelectorAll('#result_list tbody tr').length === 5"""),
    ("admin-changeform", "/admin/market/symbol/AAPL/change/", "#symbol_form",
     "() => !!document.querySelector('#symbol_form input[name=name]')"),
    ("admin-axes", "/admin/axes/accessattempt/", "#changelist", "() => true"),
    ("browsable-api", "/api/v1/stocks/", ".response-info",
     """() => document.querySelector(".response-info").textContent.includes('"AAPL"')
              && getComputedStyle(document.querySelector("button[data-target='#filtersModal']"))
                   .cssFloat === "right" """),
    ("swagger", "/docs", ".swagger-ui .info .title",
     "() => document.querySelectorAll('.swagger-ui .opblock').length > 10"),
    ("redoc", "/redoc", ".api-content h1",
     # ReDoc's styles: its <style> elements got the nonce, so the browser built their sheets.
     """() => document.querySelectorAll('[data-section-id*="operation/"]').length > 10
              && [...document.querySelectorAll("style[data-styled]")]
                   .some((s) => s.sheet && s.sheet.cssRules.length > 0)"""),
]  # fmt: skip


@pytest.fixture
def stack(market, redis_client, processes, django_user_model) -> str:
    """Worker, beat and Daphne; a superuser; the site's URL once every symbol has a price."""
    django_user_model.objects.create_superuser("root", "root@example.com", PASSWORD)
    return ticking_site(processes)


@pytest.fixture
def browser() -> Iterator:
    with chromium() as launched:
        yield launched


def violations(page) -> list[dict]:
    return page.evaluate("window.__violations")


def test_every_page_works_under_the_policy_with_no_violation(stack, browser):
    context = browser.new_context(viewport=VIEWPORTS["1280"])
    context.add_init_script(RECORD_VIOLATIONS)
    page = context.new_page()

    # The login pages, signed out; then signed in as staff for the rest.
    watch = PageWatch(page, site=stack)
    page.goto(f"{stack}/accounts/login/")
    page.wait_for_selector("main form #id_username", timeout=WAIT_MS)
    assert page.get_attribute("html", "data-theme") == "dark"  # theme-init.js ran
    assert violations(page) == []
    page.goto(f"{stack}/api-auth/login/")  # DRF's, with its style attributes allowed by hash
    page.wait_for_selector("#id_username", timeout=WAIT_MS)
    assert page.evaluate("getComputedStyle(document.querySelector('.well')).width") == "320px"
    assert violations(page) == []
    log_in(page, stack, username="root", password=PASSWORD)

    for name, path, ready, working in PAGES:
        page.goto(f"{stack}{path}")
        try:
            page.wait_for_selector(ready, timeout=WAIT_MS)
            page.wait_for_function(working, timeout=WAIT_MS)
        except PlaywrightTimeout:
            screenshot(page, f"csp-{name}-failed", full_page=False)
            pytest.fail(f"{name} did not work: {violations(page)} {watch.errors}")
        page.wait_for_load_state("networkidle")
        assert violations(page) == [], (name, violations(page))
        screenshot(page, f"csp-{name}-1280", full_page=False)
    assert watch.errors == [], watch.errors


def test_the_theme_saved_on_one_page_is_applied_before_the_next_paints(stack, browser):
    page = browser.new_page(viewport=VIEWPORTS["390"])
    page.goto(f"{stack}/")
    page.click("[data-theme-toggle]")
    # With scripts other than theme-init.js held back, the next page is light at once.
    page.route("**/static/js/site.js", lambda route: route.abort())
    page.goto(f"{stack}/accounts/login/")
    assert page.get_attribute("html", "data-theme") == "light"


def test_an_injected_inline_script_is_refused_and_reported(stack, browser):
    context = browser.new_context(viewport=VIEWPORTS["1280"])
    context.add_init_script(RECORD_VIOLATIONS)
    page = context.new_page()
    # Expected on the console: the refusals, and the 404 of the image the handler hangs on.
    watch = PageWatch(
        page, site=stack, expected=("Content Security Policy", "no-such-image", "status of 404")
    )
    page.goto(f"{stack}/")
    page.wait_for_selector('[data-field="connection"][data-state="live"]', timeout=WAIT_MS)
    assert violations(page) == []

    # What an HTML injection would add: a script element with its code inline, an inline
    # event handler, and a javascript: link. page.evaluate itself is DevTools, exempt;
    # what it adds to the page is the page's, and the policy stops each one.
    page.evaluate(
        """() => {
          const script = document.createElement("script");
          script.textContent = "window.__injected = 'script'";
          document.body.append(script);
          const img = document.createElement("img");
          img.setAttribute("onerror", "window.__injected = 'handler'");
          img.src = "/static/no-such-image.png";
          document.body.append(img);
          const link = document.createElement("a");
          link.href = "javascript:window.__injected = 'link'";
          link.id = "injected-link";
          link.textContent = "click";
          document.body.append(link);
        }"""
    )
    page.click("#injected-link")
    page.wait_for_function("() => window.__violations.length >= 3", timeout=WAIT_MS)
    assert page.evaluate("window.__injected") is None  # none of them ran
    seen = violations(page)
    assert {v["directive"] for v in seen} == {"script-src-elem", "script-src-attr"}, seen
    assert all(v["disposition"] == "enforce" and v["blocked"] == "inline" for v in seen), seen
    # The page goes on working: the live feed still moves the prices.
    page.wait_for_selector('[data-field="connection"][data-state="live"]', timeout=WAIT_MS)
    assert watch.errors == []


def test_without_a_proxy_the_pages_open_their_websockets_on_the_second_port(
    market, redis_client, processes, browser
):
    """`make run` without nginx: the pages are served on one port and open their sockets on
    MARKETFLUX_WS_PORT, which the policy allows for each of ALLOWED_HOSTS."""
    sockets = processes.daphne("sockets")
    ws_port = sockets.rsplit(":", 1)[1]
    site = processes.daphne("pages", MARKETFLUX_WS_PORT=ws_port)
    context = browser.new_context(viewport=VIEWPORTS["1280"])
    context.add_init_script(RECORD_VIOLATIONS)
    page = context.new_page()
    watch = PageWatch(page, site=site, expected=(f"ws://127.0.0.1:{ws_port}/",))
    opened: list[str] = []
    page.on("websocket", lambda ws: opened.append(ws.url))
    page.goto(f"{site}/")
    page.wait_for_selector('[data-field="connection"][data-state="live"]', timeout=WAIT_MS)
    assert opened == [f"ws://127.0.0.1:{ws_port}/ws/market"]
    assert violations(page) == []
    assert watch.errors == []
