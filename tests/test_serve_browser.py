"""The playground in a real headless Chromium, against a real ``promptask serve`` on 127.0.0.1.

Set ``PROMPTASK_UPDATE_SCREENSHOT=1`` to write the README's screenshot
(``docs/playground.png``) from the default-model run.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from browser import Chromium, PageLog, blank
from test_serve import KEY, write_project
from test_serve_server import Server

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
SCREENSHOT = ROOT / "docs" / "playground.png"
LABELS = {"positive", "negative", "neutral"}


def own_failures(log: PageLog) -> list[str]:
    """Script errors and console errors, less the browser's note on each 4xx answer the page handles itself."""
    return [text for text in log.console_errors() if "Failed to load resource" not in text]


def test_playground_asks_for_the_key_once_builds_forms_and_runs_tasks(chromium: Chromium, tmp_path: Path) -> None:
    project = write_project(tmp_path / "project")
    server = Server(project, "--backend", "echo:", "--api-key-env", "PT_SERVE_KEY", log=tmp_path / "server.log",
                    env={"PT_SERVE_KEY": KEY})  # fmt: skip
    try:
        with chromium.page() as (page, log):
            posted: list[tuple[str, Any]] = []
            page.on("request", lambda r: posted.append((r.url, r.post_data)) if r.method == "POST" else None)
            page.goto(server.url + "/")
            page.wait_for_selector("#key-panel:not([hidden])", timeout=10_000)
            page.fill("#api-key", KEY)
            page.click("#key-form button")
            page.wait_for_selector("#task-list button[data-task=profile]", timeout=10_000)
            assert page.is_hidden("#key-panel")

            page.click("#task-list button[data-task=profile]")
            kinds = page.eval_on_selector_all(
                "#fields [data-kind]", "nodes => Object.fromEntries(nodes.map(n => [n.name, n.dataset.kind]))"
            )
            assert kinds == {"name": "textarea", "tags": "textarea", "age": "number", "height": "number",
                             "verified": "checkbox", "tone": "select"}  # fmt: skip
            page.fill("#input-name", "Ada")
            page.click("#run")  # without the required age: the server's 422 names the field
            page.wait_for_selector("#error:not([hidden])", timeout=10_000)
            assert "422" in page.inner_text("#error")
            assert page.get_attribute(".field.invalid", "data-field") == "age"

            page.fill("#input-age", "36")
            page.fill("#input-tags", "maths\npoetry")
            page.check("#input-verified")
            page.select_option("#input-tone", label="casual")
            page.click("#run")
            page.wait_for_selector("#result:not([hidden])", timeout=10_000)
            assert isinstance(json.loads(page.inner_text("#output"))["people"], list)
            assert page.inner_text("#attempts") == "1" and page.inner_text("#cached") == "no"
            assert page.inner_text("#confidence") == "not scored by this backend"
            assert json.loads(posted[-1][1]) == {"name": "Ada", "age": 36, "tags": ["maths", "poetry"],
                                                 "verified": True, "tone": "casual"}  # fmt: skip

            page.click("#task-list button[data-task=echo]")
            page.fill("#input-text", "Hello from Chromium")
            page.click("#run")
            page.locator("#output", has_text="Hello from Chromium").wait_for(timeout=10_000)
            assert page.inner_text("#latency").endswith("ms") and page.is_hidden("#key-panel")  # asked once
            stored = page.evaluate("JSON.stringify(localStorage) + JSON.stringify(sessionStorage) + document.cookie")
            assert KEY not in stored and KEY not in page.content() and KEY not in page.url
            assert not blank(page.screenshot(full_page=True))

            page.goto(server.url + "/docs")  # the API docs: every task's request and answer schemas
            page.wait_for_selector("#key-panel:not([hidden])", timeout=10_000)
            page.fill("#api-key", KEY)
            page.click("#key-form button")
            page.get_by_role("heading", name="POST /tasks/profile", exact=True).wait_for(timeout=10_000)
            assert "maxLength" in page.inner_text("#operations")
        assert log.requests_outside(server.url) == []
        assert own_failures(log) == []
        assert all(url.startswith(server.url) for url, _ in posted)
    finally:
        assert server.stop() == 0


def test_playground_runs_a_task_on_the_default_model(chromium: Chromium, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "PROMPTASK_BACKEND"}
    server = Server(tmp_path, log=tmp_path / "server.log", env=env)  # the built-in tasks on the default model
    try:
        with chromium.page(width=1100, height=720) as (page, log):
            page.goto(server.url + "/?task=sentiment")
            page.wait_for_selector("#input-text", timeout=10_000)
            page.fill("#input-text", "I love this phone! The battery lasts two days.")
            page.click("#run")
            page.wait_for_selector("#result:not([hidden])", timeout=180_000)
            label = json.loads(page.inner_text("#output"))["label"]
            assert label in LABELS
            assert page.inner_text("#attempts") == "1"
            png = page.screenshot()
            assert not blank(png)
            (tmp_path / "playground.png").write_bytes(png)
            if os.environ.get("PROMPTASK_UPDATE_SCREENSHOT"):
                SCREENSHOT.parent.mkdir(exist_ok=True)
                SCREENSHOT.write_bytes(png)
        assert log.requests_outside(server.url) == []
        assert own_failures(log) == []
    finally:
        assert server.stop() == 0
