"""The HTML evaluation report, opened in a real headless Chromium: offline, complete, and its filter works.

Set ``PROMPTASK_UPDATE_SCREENSHOT=1`` to refresh ``docs/eval-report.png`` and ``docs/eval-calibration.png``,
the README's pictures of the report and of its calibration section.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from browser import Chromium, blank, required

import promptask
from promptask.types import Generation, GenerationRequest, Scores, Usage

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "examples" / "data" / "test" / "sentiment.jsonl"
SCREENSHOT = ROOT / "docs" / "eval-report.png"
CALIBRATION_SHOT = ROOT / "docs" / "eval-calibration.png"
LABELS = ("positive", "negative", "neutral")

try:
    import matplotlib  # noqa: F401  (the report's plots: the eval extra)
except ImportError:
    if required():
        raise  # CI installs the eval extra: the page tests must run there
    pytest.skip("matplotlib is not installed (pip install -e '.[eval]')", allow_module_level=True)


def keyword_labeller(request: GenerationRequest) -> Generation:
    """A stand-in model that labels by a few words: right often, wrong sometimes, so the page has failures.

    It scores its answers too, more sure where a keyword decided the label, so the page has calibration plots.
    """
    text = request.messages[-1].content.lower()
    if any(word in text for word in ("love", "great", "best", "brilliant", "fantastic", "impressed")):
        label, sure = "positive", 0.6
    elif any(word in text for word in ("never", "terrible", "rude", "cold", "broken", "refuse", "regret")):
        label, sure = "negative", 0.6
    else:
        label, sure = "neutral", 0.35
    probability = sure + 0.35 * (len(text) % 11) / 10  # spread over the bins, the same for the same text
    others = {other: (1 - probability) / 2 for other in LABELS if other != label}
    text = json.dumps({"label": label})
    usage = Usage(sum((len(m.content) + 3) // 4 for m in request.messages), (len(text) + 3) // 4)  # as scripted
    return Generation(text, usage=usage, scores=Scores({"label": {label: probability, **others}}))


class ScoringLabeller(promptask.ScriptedBackend):
    """The keyword labeller, as a backend that can score."""

    confidence = "sequence"


@pytest.fixture
def report_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, promptask.EvalReport]:
    baseline = tmp_path / "zero-shot.yaml"
    baseline.write_text((ROOT / "examples" / "data" / "baselines" / "sentiment.yaml").read_text())
    monkeypatch.chdir(ROOT)  # the report names its data as given: a path relative to the repository
    report = promptask.evaluate(
        promptask.tasks.sentiment,
        DATA.relative_to(ROOT),
        backend=ScoringLabeller(keyword_labeller),
        variants=[baseline],
        cache=False,
    )
    return report.write_html(tmp_path / "report.html"), report


def test_the_report_opens_offline_with_plots_tables_and_a_working_failures_filter(
    chromium: Chromium, report_file: tuple[Path, promptask.EvalReport]
) -> None:
    path, report = report_file
    url = path.as_uri()
    with chromium.page(width=1280, height=1500) as (page, log):
        page.goto(url)
        page.wait_for_load_state("load")
        png = page.screenshot(full_page=False)
        assert not blank(png)

        assert page.locator("#summary tbody tr").count() == 2
        confusion = page.locator("#confusion-0")
        assert confusion.locator("tbody tr").count() == 3  # positive, negative, neutral
        assert confusion.locator("thead th").all_inner_texts()[1:] == ["positive", "negative", "neutral"]
        assert page.locator("figure.confusion-plot svg").count() == 2
        assert page.locator("figure.f1-plot svg").count() == 2
        assert page.locator("#calibration tbody tr").count() == 2
        for plot in ("figure.reliability-plot svg", "figure.coverage-plot svg"):  # one per variant, drawn
            assert page.locator(plot).count() == 2
            box = page.locator(plot).first.bounding_box()
            assert box is not None and box["width"] > 200 and box["height"] > 150
        reliability = page.locator("figure.reliability-plot").first.inner_text()
        assert "Reliability: sentiment (ECE" in reliability and "perfect calibration" in reliability
        assert "Accuracy vs coverage: sentiment (AUROC" in page.locator("figure.coverage-plot").first.inner_text()
        calibration_png = page.locator("#calibration-section").screenshot()
        assert not blank(calibration_png)

        rows = page.locator("#items tbody tr")
        assert rows.count() == len(report.records) == 120
        failures = sum(r.failed for r in report.records)
        assert 0 < failures < 120
        page.check("#failures-only")
        assert page.locator("#items tbody tr:visible").count() == failures
        assert page.locator("#shown-count").inner_text() == f"{failures} of 120 rows"
        assert all(t == "failed" for t in page.locator("#items tbody tr:visible td.status").all_inner_texts())
        page.select_option("#variant-filter", "zero-shot")
        shown = sum(r.failed for r in report.records if r.variant == "zero-shot")
        assert page.locator("#items tbody tr:visible").count() == shown
        page.uncheck("#failures-only")
        page.select_option("#variant-filter", "")

        page.click("#items thead th:nth-child(2)")  # sort by id, ascending
        ids = page.locator("#items tbody tr td:nth-child(2)").all_inner_texts()
        assert ids == sorted(ids)
        page.click("#items thead th:nth-child(2)")
        assert page.locator("#items tbody tr td:nth-child(2)").all_inner_texts() == sorted(ids, reverse=True)

    assert log.requests_outside(url) == []
    assert [r for r in log.requests if r != url and not r.startswith("data:")] == []
    assert log.console_errors() == []
    if os.environ.get("PROMPTASK_UPDATE_SCREENSHOT"):
        SCREENSHOT.parent.mkdir(exist_ok=True)
        shot = path.with_suffix(".png")
        shot.write_bytes(png)
        shutil.copyfile(shot, SCREENSHOT)
        CALIBRATION_SHOT.write_bytes(calibration_png)
