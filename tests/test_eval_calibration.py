"""Calibration in the evaluator: figures against hand-computed values, the JSON and HTML reports, no confidence."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import promptask
from promptask.types import Generation, GenerationRequest, Scores

ROOT = Path(__file__).resolve().parent.parent
SENTIMENT = promptask.tasks.sentiment
LABELS = ("positive", "negative", "neutral")

# id: (reference, the label returned, its probability); None: no valid output
SCRIPT: dict[str, tuple[str, str | None, float]] = {
    "a": ("positive", "positive", 0.95),  # right
    "b": ("negative", "negative", 0.91),  # right
    "c": ("neutral", "positive", 0.75),  # wrong
    "d": ("positive", "positive", 0.65),  # right
    "e": ("negative", "neutral", 0.55),  # wrong
    "f": ("neutral", "negative", 0.35),  # wrong
    "g": ("neutral", None, 0.0),  # no valid output: wrong, and no confidence
}
ROWS = [{"id": key, "text": f"review {key}", "expected": reference} for key, (reference, _, _) in SCRIPT.items()]


class ScriptedScoring(promptask.ScriptedBackend):
    """A scripted backend that scores: each reply carries the probability of every label."""

    name = "scripted-scoring"
    confidence = "sequence"


def scored_reply(request: GenerationRequest) -> Generation:
    key = request.messages[-1].content.rsplit("review ", 1)[-1].strip()[:1]
    _, label, probability = SCRIPT[key]
    if label is None:
        return Generation("not json")
    others = {other: (1 - probability) / 2 for other in LABELS if other != label}
    return Generation(json.dumps({"label": label}), scores=Scores({"label": {label: probability, **others}}))


def evaluate(**options: Any) -> promptask.EvalReport:
    return promptask.evaluate(SENTIMENT, ROWS, backend=ScriptedScoring(scored_reply), cache=False, **options)


def test_calibration_figures_equal_hand_computed_values() -> None:
    report = evaluate()
    assert [r.confidence for r in report.records] == pytest.approx([0.95, 0.91, 0.75, 0.65, 0.55, 0.35, None])
    assert [r.correct for r in report.records] == [True, True, False, True, False, False, False]
    c = report.main.calibration
    assert c is not None and (c.items, c.scored) == (7, 6)  # g is judged (wrong) but has no confidence
    # bins (0.9, 1]: 0.95 and 0.91, both right -> gap |0.93 - 1| for 2 items; the others alone: |c - right|
    assert c.ece == pytest.approx((2 * 0.07 + 0.75 + 0.35 + 0.55 + 0.35) / 6)
    # right 0.95, 0.91, 0.65 against wrong 0.75, 0.55, 0.35: 3 + 3 + 2 of 9 pairs ranked right
    assert c.auroc == pytest.approx(8 / 9)
    # most confident first: R R W R W W -> top 3: 2/3; top round(4.8) = 5: 3/5; all 6: 3/6
    assert c.accuracy_at_coverage == pytest.approx({"50%": 2 / 3, "80%": 0.6, "100%": 0.5})
    assert [(b.low, b.high, b.items) for b in c.bins] == [(0.3, 0.4, 1), (0.5, 0.6, 1), (0.6, 0.7, 1),
                                                          (0.7, 0.8, 1), (0.9, 1.0, 2)]  # fmt: skip
    assert c.bins[-1].confidence == pytest.approx(0.93) and c.bins[-1].accuracy == 1.0


def test_the_table_and_the_json_report_carry_the_calibration(tmp_path: Path) -> None:
    report = evaluate()
    lines = report.table().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("calibration ("))
    assert lines[start + 1].split() == ["variant", "confidence", "ECE", "AUROC", "acc@50%", "acc@80%", "acc@100%"]
    assert lines[start + 2].split() == ["sentiment", "6/7", "0.357", "0.889", "0.667", "0.600", "0.500"]
    saved = json.loads(report.write_json(tmp_path / "r.json").read_text())
    calibration = saved["variants"][0]["calibration"]
    assert calibration["scored"] == 6 and calibration["auroc"] == pytest.approx(8 / 9)
    assert calibration["accuracy_at_coverage"] == pytest.approx({"50%": 2 / 3, "80%": 0.6, "100%": 0.5})
    assert calibration["bins"][-1] == {"low": 0.9, "high": 1.0, "confidence": pytest.approx(0.93), "accuracy": 1.0,
                                       "items": 2}  # fmt: skip
    assert [r["correct"] for r in saved["records"]][:3] == [True, True, False]


def test_a_backend_that_cannot_score_gets_none_never_a_number(tmp_path: Path) -> None:
    plain = promptask.ScriptedBackend(lambda request: {"label": "positive"})
    report = promptask.evaluate(SENTIMENT, ROWS, backend=[ScriptedScoring(scored_reply), plain], cache=False)
    scoring, other = report.variants
    assert scoring.calibration is not None and scoring.calibration.scored == 6
    assert other.calibration is not None
    assert (other.calibration.items, other.calibration.scored, other.calibration.ece, other.calibration.auroc) == (
        7, 0, None, None)  # fmt: skip
    assert other.calibration.accuracy_at_coverage == {"50%": None, "80%": None, "100%": None}
    lines = report.table().splitlines()
    row = lines[lines.index(next(line for line in lines if line.startswith("calibration ("))) + 3]
    assert row.startswith(other.name)
    assert row.split()[-11:] == ["0/7", "-", "-", "-", "-", "-", "no", "item", "had", "a", "confidence"]
    saved = json.loads(report.write_json(tmp_path / "r.json").read_text())["variants"][1]["calibration"]
    assert saved == {"items": 7, "scored": 0, "ece": None, "auroc": None,
                     "accuracy_at_coverage": {"50%": None, "80%": None, "100%": None}, "bins": []}  # fmt: skip


def test_graded_metrics_get_no_calibration_and_0_1_metrics_do() -> None:
    @promptask.task(metrics=["token_f1"])
    def capital(country: str) -> str:
        """Name the capital."""

    rows = [{"country": "France", "expected": "Paris"}]
    report = promptask.evaluate(capital, rows, backend=promptask.ScriptedBackend([{"answer": "Paris"}]), cache=False)
    assert report.main.calibration is None and report.records[0].correct is None
    assert "calibration" not in report.table() and report.to_dict()["variants"][0]["calibration"] is None
    exact = capital.with_options(version="2")
    report = promptask.evaluate(exact, rows, metrics=["exact_match"], backend=promptask.ScriptedBackend(
        [{"answer": "paris!"}]), cache=False)  # fmt: skip
    assert report.records[0].correct is True
    assert report.main.calibration is not None and report.main.calibration.scored == 0  # a free string: no score
    assert report.table().splitlines()[-1].startswith("calibration: no item had a confidence (the backend cannot")


def test_the_html_report_has_the_figures_both_plots_and_says_when_there_is_no_confidence(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    plain = promptask.ScriptedBackend(lambda request: {"label": "positive"})
    report = promptask.evaluate(SENTIMENT, ROWS, backend=[ScriptedScoring(scored_reply), plain], cache=False)
    page = report.write_html(tmp_path / "report.html").read_text()
    assert '<table id="calibration">' in page and "<h2>Calibration</h2>" in page
    assert page.count("<figure class='reliability-plot'><svg") == 1  # the variant without confidence has none
    assert page.count("<figure class='coverage-plot'><svg") == 1
    assert "Reliability: sentiment @ scripted-scoring (ECE 0.357)" in page
    assert "Accuracy vs coverage: sentiment @ scripted-scoring (AUROC 0.889)" in page
    assert f"{report.variants[1].name}: no item had a confidence" in page
    assert '<td class="num">6/7</td><td class="num">0.357</td><td class="num">0.889</td>' in page
    assert "<th>confidence</th>" in page and 'data-sort="0.95"' in page


@pytest.mark.slow
def test_cli_on_the_default_model_reports_calibration(tmp_path: Path) -> None:
    rows = (ROOT / "examples" / "data" / "test" / "sentiment.jsonl").read_text().splitlines()[:6]
    data = tmp_path / "six.jsonl"
    data.write_text("\n".join(rows) + "\n")
    env = {k: v for k, v in os.environ.items() if k != "PROMPTASK_BACKEND"}
    out = subprocess.run(
        [sys.executable, "-m", "promptask", "eval", "sentiment", "--data", str(data), "--json", "r.json",
         "--no-progress", "--cache", "off"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    start = lines.index(next(line for line in lines if line.startswith("calibration (")))
    row = lines[start + 2].split()
    assert row[:2] == ["sentiment", "6/6"]
    saved = json.loads((tmp_path / "r.json").read_text())
    calibration = saved["variants"][0]["calibration"]
    assert calibration["scored"] == 6 and 0.0 <= calibration["ece"] <= 1.0
    assert calibration["accuracy_at_coverage"]["100%"] == saved["variants"][0]["metrics"]["accuracy"]["value"]
    assert sum(b["items"] for b in calibration["bins"]) == 6
    assert all(0.0 < r["confidence"] <= 1.0 for r in saved["records"])
    assert float(row[2]) == pytest.approx(calibration["ece"], abs=5e-4)
