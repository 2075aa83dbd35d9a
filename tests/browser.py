"""A real headless Chromium for page tests (Debian's ``chromium``, driven by Playwright).

Playwright cannot download its own browsers here, so it is pointed at the system
one.  Where no Chromium (or no Playwright) is found, browser tests skip with
that reason; under CI (``CI`` or ``PROMPTASK_REQUIRE_BROWSER`` set) they fail
instead, so a CI run can never pass without them.

    def test_page(chromium: Chromium) -> None:
        with chromium.page() as page:
            page.goto(url)
            ...
        assert page.requests_outside(origin) == []   # recorded by PageLog
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import pytest

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
# Without the background-networking switches Chromium keeps trying to reach Google's
# hosts, which this machine's closed network refuses.
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--disable-extensions",
]


def required() -> bool:
    return bool(os.environ.get("CI") or os.environ.get("PROMPTASK_REQUIRE_BROWSER"))


def unavailable(reason: str) -> None:
    if required():
        pytest.fail(f"browser tests must run in CI: {reason}")
    pytest.skip(reason)


def find_chromium() -> str | None:
    configured = os.environ.get("PROMPTASK_CHROMIUM")
    if configured:
        return configured
    return next((path for name in CANDIDATES if (path := shutil.which(name))), None)


@dataclass
class PageLog:
    """What a page did: every request it made and every console message."""

    requests: list[str] = field(default_factory=list)
    console: list[tuple[str, str]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def requests_outside(self, origin: str) -> list[str]:
        """Requests to any other scheme, host or port than ``origin`` (data: URLs are local)."""
        own = urlsplit(origin)
        return [
            url
            for url in self.requests
            if not url.startswith(("data:", "blob:", "about:"))
            and (urlsplit(url).scheme, urlsplit(url).netloc) != (own.scheme, own.netloc)
        ]

    def console_errors(self) -> list[str]:
        return [text for kind, text in self.console if kind == "error"] + self.errors


class Chromium:
    """One browser for the test session; each :meth:`page` is a fresh, isolated context."""

    def __init__(self, browser: Any) -> None:
        self.browser = browser

    @contextmanager
    def page(self, *, width: int = 1280, height: int = 900) -> Iterator[tuple[Any, PageLog]]:
        context = self.browser.new_context(viewport={"width": width, "height": height})
        page = context.new_page()
        log = PageLog()
        page.on("request", lambda request: log.requests.append(request.url))
        page.on("console", lambda message: log.console.append((message.type, message.text)))
        page.on("pageerror", lambda error: log.errors.append(str(error)))
        try:
            yield page, log
        finally:
            context.close()


# Module scope, not session: Playwright's sync API keeps an event loop running in this thread while it is
# open, and asyncio.run() in any later test would fail.
@pytest.fixture(scope="module")
def chromium() -> Iterator[Chromium]:
    executable = find_chromium()
    if executable is None:
        unavailable("no Chromium found (apt-get install chromium, or set PROMPTASK_CHROMIUM)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        unavailable("playwright is not installed (pip install -e '.[test]')")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=ARGS)
        try:
            yield Chromium(browser)
        finally:
            browser.close()


def blank(png: bytes) -> bool:
    """Whether a screenshot is one flat colour (nothing drawn)."""
    import io

    from PIL import Image

    image = Image.open(io.BytesIO(png)).convert("RGB")
    low, high = zip(*image.getextrema(), strict=True)
    return max(high) - min(low) < 8
