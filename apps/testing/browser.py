"""Driving Debian's chromium with Playwright in a test (the admin and API docs tests).

`apps/dashboard/tests/test_browser.py` keeps its own copies of these constants; the
admin's and the docs' browser tests share this module.
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


@contextmanager
def chromium() -> Iterator:
    """A headless chromium (Playwright's sync API), closed afterwards."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=LAUNCH_ARGS)
        try:
            yield browser
        finally:
            browser.close()


class PageWatch:
    """What a page did that a user of an offline site would not want: console errors,
    uncaught exceptions, failed responses, and every request to a host other than the
    site's own."""

    def __init__(self, page, *, site: str) -> None:
        self.site_host = urlsplit(site).hostname
        self.errors: list[str] = []
        self.outside: list[str] = []
        page.on("console", lambda m: m.type == "error" and self.errors.append(f"console: {m.text}"))
        page.on("pageerror", lambda e: self.errors.append(f"pageerror: {e}"))
        page.on(
            "response",
            lambda r: r.status >= 400 and self.errors.append(f"HTTP {r.status} {r.url}"),
        )
        page.on("request", self._request)

    def _request(self, request) -> None:
        parts = urlsplit(request.url)
        if parts.scheme in ("data", "blob", "about"):
            return
        if parts.hostname != self.site_host:
            self.outside.append(request.url)


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
