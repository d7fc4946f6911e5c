"""Driving Debian's chromium with Playwright in a test: every browser test (dashboard,
alerts page, admin, API docs) launches it, watches its pages and saves screenshots here.

Needs /usr/bin/chromium (`apt-get install chromium`; `.ci/run` installs it): without it
every browser test fails saying so, never passes unrun.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

from apps.testing import BASE_DIR

# Debian's chromium; MARKETFLUX_CHROMIUM points elsewhere (another distribution's path).
CHROMIUM = Path(os.environ.get("MARKETFLUX_CHROMIUM", "/usr/bin/chromium"))
LAUNCH_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
SCREENSHOTS = BASE_DIR / "var" / "test-artifacts" / "screenshots"
WAIT_MS = 15_000  # the longest any single wait in a browser may take
WINDOW_1280 = {"width": 1280, "height": 900}
VIEWPORTS = {"1280": WINDOW_1280, "390": {"width": 390, "height": 844}}
PASSWORD = "correct horse battery staple"  # noqa: S105 (the superuser a browser test logs in as)


def browser_test_marks() -> list:
    """The marks of a browser test module: live processes and a real database."""
    import pytest

    return [pytest.mark.worker, pytest.mark.django_db(transaction=True)]


@contextmanager
def chromium() -> Iterator:
    """A headless chromium (Playwright's sync API), closed afterwards."""
    import pytest
    from playwright.sync_api import sync_playwright

    if not CHROMIUM.exists():
        pytest.fail(f"browser tests need {CHROMIUM}: run `apt-get install chromium` (or point"
                    " MARKETFLUX_CHROMIUM at one)", pytrace=False)  # fmt: skip

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=LAUNCH_ARGS)
        try:
            yield browser
        finally:
            browser.close()


class PageWatch:
    """What a page did that its user would not want: console errors, uncaught exceptions,
    failed responses, and any request (WebSockets included) to a host other than the
    site's own: the site works offline, with no CDN, font or analytics host. `expected`:
    parts of messages a test provokes on purpose."""

    def __init__(self, page, *, site: str, expected: tuple[str, ...] = ()) -> None:
        self.errors: list[str] = []
        self.expected = expected
        self.host = urlsplit(site).netloc
        page.on("console", lambda m: m.type == "error" and self._add(f"console: {m.text}"))
        page.on("pageerror", lambda e: self._add(f"pageerror: {e}"))
        page.on(
            "response",
            lambda r: r.status >= 400 and self._add(f"HTTP {r.status} {r.url}"),
        )
        page.on("request", lambda r: self._check_host(r.url))
        page.on("websocket", lambda ws: self._check_host(ws.url))

    def _check_host(self, url: str) -> None:
        parts = urlsplit(url)
        if parts.scheme in {"http", "https", "ws", "wss"} and parts.netloc != self.host:
            self._add(f"request to another host: {url}")

    def _add(self, text: str) -> None:
        if not any(pattern in text for pattern in self.expected):
            self.errors.append(text)


def log_in(page, site: str, *, username: str, password: str) -> None:
    """Sign in through the admin's login form, as a person would."""
    page.goto(f"{site}/admin/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", password)
    page.click("input[type=submit]")
    page.wait_for_url(f"{site}/admin/", timeout=WAIT_MS)


def screenshot(page, name: str, *, full_page: bool = True) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=full_page)
    return path


def ticking_site(processes) -> str:
    """Worker, beat and Daphne ticking every 0.5 s (`processes`: the test's `Processes`);
    the site's URL once every symbol has a price, for a browser to open."""
    import requests

    from apps.testing.waiting import wait_for

    processes.celery_worker(TICK_INTERVAL="0.5")
    processes.celery_beat(TICK_INTERVAL="0.5")
    url = processes.daphne()
    wait_for(
        lambda: all(
            s["price"] is not None
            for s in requests.get(f"{url}/api/v1/market/overview", timeout=5).json()["symbols"]
        ),
        timeout=60,
        what="a first price for every symbol",
    )
    return url
