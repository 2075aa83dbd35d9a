"""Evaluation: metrics against hand-computed fixtures and their libraries, bootstrap, the API and the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Literal

import pytest
from pydantic import BaseModel

import promptask
from promptask.evaluate import METRICS, interval, label_report, paired_difference, resolve_metric
from promptask.evaluate.metrics import normalize_answer, token_f1
from promptask.prompts.environment import span_schema, spans

ROOT = Path(__file__).resolve().parent.parent


class Two(BaseModel):
    a: str
    b: int


SENTIMENT = promptask.tasks.sentiment


def score(name: str, pairs: list[tuple[Any, Any]]) -> float:
    return METRICS[name].score(pairs)


# ---------------------------------------------------------------------------- metrics, by hand


def test_accuracy_macro_f1_and_the_confusion_matrix_match_hand_computed_values() -> None:
    # (prediction, reference); by reference: a -> a, a, b; b -> b, c; c -> c, no valid output
    pairs = [("a", "a"), ("a", "a"), ("b", "a"), ("b", "b"), ("c", "b"), ("c", "c"), (None, "c")]
    assert score("accuracy", pairs) == pytest.approx(4 / 7)
    report = label_report([(r, p) for p, r in pairs])
    assert report["labels"] == ["a", "b", "c"]
    assert report["columns"] == ["a", "b", "c", "(invalid)"]
    assert report["confusion"] == [[2, 1, 0, 0], [0, 1, 1, 0], [0, 0, 1, 1]]
    # a: P 2/2, R 2/3 -> F1 0.8; b: P 1/2, R 1/2 -> 0.5; c: P 1/2, R 1/2 -> 0.5
    per = report["per_label"]
    assert (per["a"]["precision"], per["a"]["recall"], per["a"]["f1"]) == pytest.approx((1.0, 2 / 3, 0.8))
    assert (per["b"]["f1"], per["c"]["precision"], per["c"]["recall"]) == pytest.approx((0.5, 0.5, 0.5))
    assert (per["a"]["support"], per["c"]["support"]) == (3, 2)
    assert score("macro_f1", pairs) == pytest.approx((0.8 + 0.5 + 0.5) / 3)


def test_a_label_only_predicted_counts_in_the_macro_average_with_f1_zero() -> None:
    assert score("macro_f1", [("a", "a"), ("x", "b")]) == pytest.approx((1.0 + 0.0 + 0.0) / 3)


def test_squad_exact_match_and_token_f1() -> None:
    assert normalize_answer("The  Eiffel Tower!") == "eiffel tower"
    assert score("exact_match", [("the Eiffel tower", "Eiffel Tower."), ("Paris", "Lyon"), (None, "x")]) == 1 / 3
    # "red front door" vs "the red door": overlap {red, door} = 2; P 2/3, R 2/2 -> F1 0.8
    assert token_f1("red front door", "the red door") == pytest.approx(0.8)
    assert score("token_f1", [("red front door", "the red door"), (None, "x")]) == pytest.approx(0.4)
    assert token_f1("", "") == 1.0 and token_f1("x", "") == 0.0


def test_set_f1_is_micro_averaged_over_items() -> None:
    # item 1: pred {solar panels, roofs}, gold {solar panels, energy bills}: tp 1, pred 2, gold 2
    # item 2: pred {}, gold {bread}: tp 0, pred 0, gold 1  -> P 1/2, R 1/3, F1 0.4
    pairs = [(["Solar panels", "roofs"], ["solar panels", "energy bills"]), (None, ["bread"])]
    assert score("set_f1", pairs) == pytest.approx(0.4)


def test_span_f1_is_strict_on_text_type_and_offsets() -> None:
    gold = [{"text": "Ada", "type": "PERSON", "start": 0, "end": 3}, {"text": "London", "type": "LOCATION",
            "start": 10, "end": 16}]  # fmt: skip
    exact = [dict(g) for g in gold]
    wrong_type = [gold[0], {**gold[1], "type": "ORGANIZATION"}]
    wrong_offset = [gold[0], {**gold[1], "start": 11}]
    assert score("span_f1", [(exact, gold)]) == 1.0
    assert score("span_f1", [(wrong_type, gold)]) == 0.5
    assert score("span_f1", [(wrong_offset, gold)]) == 0.5
    assert score("span_f1", [([], [])]) == 1.0


def test_bleu_chrf_and_rouge_equal_direct_calls_of_their_libraries() -> None:
    sacrebleu = pytest.importorskip("sacrebleu")
    rouge_scorer = pytest.importorskip("rouge_score.rouge_scorer")
    hyps = ["Le chat est sur le tapis.", "Il pleut beaucoup à Paris.", "Bonjour"]
    refs = ["Le chat est sur le tapis.", "Il pleut fort à Paris.", "Bonsoir tout le monde"]
    pairs = list(zip(hyps, refs, strict=True))
    assert score("bleu", pairs) == pytest.approx(sacrebleu.corpus_bleu(hyps, [refs]).score)
    assert score("chrf", pairs) == pytest.approx(sacrebleu.corpus_chrf(hyps, [refs]).score)
    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=True)
    for name in ("rouge1", "rouge2", "rougeL"):
        direct = sum(scorer.score(r, h)[name].fmeasure for h, r in pairs) / len(pairs)
        assert score(name, pairs) == pytest.approx(direct)


def test_contains_any_and_custom_metrics() -> None:
    assert score("contains_any", [("Come to our picnic!", ["picnic"]), ("Hello", ["picnic", "park"])]) == 0.5
    metric = resolve_metric(lambda output, row: float(len(output) <= row["limit"]))
    assert (
        metric.combine(
            [metric.item(None, None, "short", {"limit": 5}), metric.item(None, None, "longer", {"limit": 5})]
        )
        == 0.5
    )
    assert resolve_metric("promptask.evaluate.metrics:token_f1").name == "token_f1"


def test_an_unknown_metric_lists_the_available_ones() -> None:
    with pytest.raises(promptask.UserError, match=r"unknown metric 'acuracy'; available: accuracy, macro_f1"):
        resolve_metric("acuracy")


# ---------------------------------------------------------------------------- bootstrap


def test_bootstrap_is_deterministic_for_a_seed_and_contains_the_estimate() -> None:
    stats = [(float(i % 3 != 0),) for i in range(50)]
    combine = METRICS["accuracy"].combine
    first = interval(combine, stats, seed=7)
    assert first == interval(combine, stats, seed=7)
    assert first != interval(combine, stats, seed=8)
    value, low, high = first
    assert low <= value <= high and value == pytest.approx(33 / 50)
    assert 0.5 < low < value < high <= 0.8  # about ±0.13 for 50 items near 0.66


def test_the_paired_difference_of_identical_variants_is_zero_and_of_a_better_one_positive() -> None:
    stats = [(float(i % 2),) for i in range(40)]
    combine = METRICS["accuracy"].combine
    assert paired_difference(combine, stats, stats) == (0.0, 0.0, 0.0)
    better = [(1.0,) if i < 30 else s for i, s in enumerate(stats)]  # 15 more items right
    difference, low, high = paired_difference(combine, stats, better)
    assert difference == pytest.approx(15 / 40) and 0 < low < difference < high


# ---------------------------------------------------------------------------- spans


def test_a_possessive_name_and_long_names_can_be_decoded() -> None:
    text = (
        "Acme's chief met the Fairhaven Community Housing Trust and Fairhaven Community Housing Trust of North Devon."
    )
    candidates = spans(text, 3)
    assert "Acme" in candidates and "Acme's" in candidates
    assert "Fairhaven Community Housing Trust" in candidates
    assert "Fairhaven Community Housing Trust of North Devon" in candidates
    options = span_schema(text, 3)["anyOf"]
    found = {(o["properties"]["text"]["const"], o["properties"]["start"]["const"]) for o in options}
    assert ("Acme", 0) in found
    start = text.index("Fairhaven Community Housing Trust of")
    assert ("Fairhaven Community Housing Trust of North Devon", start) in found
    # the built-in task's per-call schema admits both mentions
    task = promptask.tasks.extract_entities
    schema = json.dumps(task.request_schema(task.validate_inputs((), {"text": text})))
    assert '"const": "Acme"' in schema and '"const": "Fairhaven Community Housing Trust"' in schema


# ---------------------------------------------------------------------------- evaluate()


def scripted(labels: list[str]) -> promptask.ScriptedBackend:
    return promptask.ScriptedBackend([{"label": label} for label in labels])


ROWS = [
    {"id": "a", "text": "Great!", "expected": "positive"},
    {"id": "b", "text": "Awful.", "expected": "negative"},
    {"id": "c", "text": "It opens at nine.", "expected": "neutral"},
    {"id": "d", "text": "Lovely.", "expected": "positive"},
]


def test_evaluate_scores_records_and_compares_variants_on_the_same_rows() -> None:
    baseline = SENTIMENT.with_options(examples=(), version="zero-shot")
    backend = promptask.ScriptedBackend(
        lambda request: {"label": "positive"} if "Great" in request.messages[-1].content
        or len(request.messages) < 4 else {"label": "negative"}
    )  # fmt: skip
    report = promptask.evaluate(SENTIMENT, ROWS, backend=backend, variants=[baseline], cache=False)
    main, other = report.variants
    assert (main.name, other.name) == ("sentiment", "sentiment#2")
    assert main.metrics["accuracy"].value == 0.5  # a right, b right, c wrong, d wrong
    assert other.metrics["accuracy"].value == 0.5  # every row "positive": a and d right
    assert main.labels is not None and main.labels["confusion"] == [[1, 1, 0], [0, 1, 0], [0, 1, 0]]
    assert [c.metric for c in report.comparisons] == ["accuracy", "macro_f1"]
    assert report.comparisons[0].line().startswith("sentiment#2 - sentiment: accuracy +0.000 [")
    record = next(r for r in report.records if r.variant == "sentiment" and r.id == "c")
    assert record.output == {"label": "negative"} and record.failed and record.scores["accuracy"] == 0.0
    assert record.attempts == 1 and record.tokens > 0 and not record.cached


def test_rows_missing_an_input_or_reference_are_reported_by_line_and_skipped(tmp_path: Path) -> None:
    data = tmp_path / "rows.jsonl"
    data.write_text('{"text": "Great!", "expected": "positive"}\n{"expected": "negative"}\n{"text": "Hm"}\nnot json\n')
    report = promptask.evaluate(SENTIMENT, data, backend=scripted(["positive"]), cache=False)
    assert report.main.items == 1 and report.skipped == 3
    assert report.problems == [
        f"{data}:2: missing input 'text'; skipped",
        f"{data}:3: no reference field 'expected'; skipped",
        f"{data}:4: not valid JSON (Expecting value: line 1 column 1 (char 0)); skipped",
    ]
    with pytest.raises(promptask.UserError, match=r"rows\.jsonl:2: missing input 'text' \(--strict\)"):
        promptask.evaluate(SENTIMENT, data, backend=scripted(["positive"]), cache=False, strict=True)


def test_a_custom_metric_that_raises_is_reported_with_the_row_id_and_the_run_goes_on() -> None:
    def picky(output: Any, row: dict[str, Any]) -> float:
        if row["id"] == "b":
            raise KeyError("boom")
        return 1.0

    backend = promptask.ScriptedBackend([{"label": "positive"}], repeat=True)
    report = promptask.evaluate(SENTIMENT, ROWS, metrics=["accuracy", picky], backend=backend, cache=False)
    assert report.problems == ["sentiment: metric picky failed on row id 'b': KeyError: 'boom'"]
    assert report.main.metrics["picky"].n == 3 and report.main.metrics["picky"].value == 1.0
    assert report.main.metrics["accuracy"].n == 4


def test_metrics_declared_in_python_and_defaults_by_output_type() -> None:
    @promptask.task(metrics=["exact_match"])
    def capital(country: str) -> str:
        """Name the capital."""

    @promptask.task
    def polarity(text: str) -> Literal["pos", "neg"]:
        """Polarity."""

    rows = [{"country": "France", "expected": "Paris"}, {"country": "Peru", "expected": "Lima"}]
    backend = promptask.ScriptedBackend([{"answer": "paris"}, {"answer": "Cusco"}])
    report = promptask.evaluate(capital, rows, backend=backend, cache=False)
    assert report.metrics == ["exact_match"] and report.value("exact_match") == 0.5
    assert promptask.evaluate(polarity, [{"text": "x", "expected": "pos"}], backend=promptask.ScriptedBackend(
        [{"answer": "pos"}]), cache=False).metrics == ["accuracy", "macro_f1"]  # fmt: skip


def test_an_output_without_a_default_metric_says_how_to_declare_one() -> None:
    @promptask.task
    def pair(text: str) -> Two:
        """Two fields."""

    with pytest.raises(promptask.UserError, match=r"no default metric .* declare some: in YAML `eval:"):
        promptask.evaluate(
            pair, [{"text": "x", "expected": "y"}], backend=promptask.ScriptedBackend([{"a": "y", "b": 1}])
        )


def test_reports_are_written_whole(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    report = promptask.evaluate(SENTIMENT, ROWS, backend=promptask.ScriptedBackend([{"label": "positive"}],
                                repeat=True), cache=False)  # fmt: skip
    target = tmp_path / "report.json"
    target.write_text("old")

    def broken(*args: Any, **kwargs: Any) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken)
    with pytest.raises(OSError, match="disk full"):
        report.write_json(target)
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["report.json"]
    monkeypatch.undo()
    report.write_json(target)
    assert json.loads(target.read_text())["variants"][0]["metrics"]["accuracy"]["value"] == 0.5


# ---------------------------------------------------------------------------- the CLI


def cli(*args: str, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "PROMPTASK_BACKEND"}
    return subprocess.run(
        [sys.executable, "-m", "promptask", "eval", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture
def data(tmp_path: Path) -> Path:
    path = tmp_path / "reviews.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in ROWS))
    return path


NEGATIVE = 'scripted:{"label": "negative"}'


def test_cli_prints_the_table_with_intervals_and_writes_json(tmp_path: Path, data: Path) -> None:
    out = cli(
        "sentiment", "--data", str(data), "--backend", NEGATIVE, "--json", "r.json", "--no-progress", cwd=tmp_path
    )
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].startswith(f"sentiment: 4 items from {data}; 95% bootstrap intervals (1000 resamples, seed 0)")
    assert lines[1].split() == ["variant", "accuracy", "macro_f1", "valid", "latency", "tokens"]
    # one of four right; macro F1 = (0 + 2/5 + 0) / 3
    assert lines[2].startswith("sentiment  0.250 [0.000, 0.750]  0.133 [0.000, 0.429]  4/4 (100%)")
    saved = json.loads((tmp_path / "r.json").read_text())
    assert saved["variants"][0]["metrics"]["accuracy"] == {"value": 0.25, "low": 0.0, "high": 0.75, "n": 4,
                                                          "scale": "0-1"}  # fmt: skip
    assert len(saved["records"]) == 4 and saved["records"][0]["id"] == "a"


def test_cli_min_gate_exits_1_below_and_0_above(tmp_path: Path, data: Path) -> None:
    below = cli("sentiment", "--data", str(data), "--backend", NEGATIVE, "--min", "accuracy=0.5", cwd=tmp_path)
    assert below.returncode == 1
    assert below.stderr.splitlines()[-1] == "promptask: below minimum: accuracy 0.250 < 0.5 (sentiment)"
    above = cli("sentiment", "--data", str(data), "--backend", NEGATIVE, "--min", "accuracy=0.25",
                "--min", "valid=1", cwd=tmp_path)  # fmt: skip
    assert above.returncode == 0, above.stderr


def test_cli_variants_backends_limit_and_reference_field(tmp_path: Path, data: Path) -> None:
    rows = [{**row, "gold": row.pop("expected")} for row in map(dict, ROWS)]
    data.write_text("".join(json.dumps(row) + "\n" for row in rows))
    variant = tmp_path / "plain.yaml"
    variant.write_text("label: plain\nexamples: []\nsystem: null\ntemplate: 'Sentiment of: {{ text }}'\n")
    positive = 'scripted:{"label": "positive"}'
    out = cli("sentiment", "--data", str(data), "--reference-field", "gold", "--limit", "2", "--variant", str(variant),
              "--backend", NEGATIVE, "--backend", positive, "--no-progress", cwd=tmp_path)  # fmt: skip
    assert out.returncode == 0, out.stderr
    names = [line.split("  ")[0] for line in out.stdout.splitlines()[2:6]]
    assert names == [f"sentiment @ {NEGATIVE}", f"plain @ {NEGATIVE}", 'sentiment @ scripted:{"label": "positive"}',
                     'plain @ scripted:{"label": "positive"}']  # fmt: skip
    assert "2 items" in out.stdout.splitlines()[0]
    assert f"plain @ {NEGATIVE} - sentiment @ {NEGATIVE}: accuracy +0.000 [+0.000, +0.000]" in out.stdout
    assert 'sentiment @ scripted:{"label": "positive"} - sentiment @ ' + NEGATIVE + ": accuracy +0.000" in out.stdout


def test_a_variant_file_changes_any_option_a_task_file_sets(tmp_path: Path) -> None:
    from promptask.evaluate.run import load_variant

    base = promptask.builtin_task("classify")
    by_score = tmp_path / "by_score.yaml"
    by_score.write_text("label: by score\nchoose_by_score: true\nrepeat_penalty: 1.0\nretry_temperature: null\n")
    variant = load_variant(by_score, base)
    assert variant.name == "by score"
    spec = variant.task.spec
    assert (spec.choose_by_score, spec.repeat_penalty, spec.retry_temperature, spec.confidence) == (
        True,
        1.0,
        None,
        True,
    )
    assert spec.template == base.spec.template and spec.output_schema == base.spec.output_schema
    bad = tmp_path / "bad.yaml"
    bad.write_text("confidence: sometimes\n")
    with pytest.raises(
        promptask.TaskDefinitionError, match="confidence must be true or false, got 'sometimes'"
    ) as info:
        load_variant(bad, base)
    assert str(bad) in str(info.value)
    renamed = tmp_path / "renamed.yaml"
    renamed.write_text("name: other\n")
    with pytest.raises(promptask.TaskDefinitionError, match=r"unknown key 'name'; a variant changes .*choose_by_score"):
        load_variant(renamed, base)


def test_cli_reruns_hit_the_cache_and_show_progress(tmp_path: Path, data: Path) -> None:
    backend = "scripted:" + json.dumps({"label": "positive"})
    first = cli("sentiment", "--data", str(data), "--backend", backend, "--json", "1.json", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert "eval sentiment: 4/4 rows" in first.stderr
    second = cli("sentiment", "--data", str(data), "--backend", backend, "--json", "2.json", cwd=tmp_path)
    assert second.returncode == 0, second.stderr
    assert json.loads((tmp_path / "1.json").read_text())["variants"][0]["cached"] == 0
    assert json.loads((tmp_path / "2.json").read_text())["variants"][0]["cached"] == 4


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--metric", "acuracy"], "unknown metric 'acuracy'; available: accuracy, macro_f1, exact_match"),
        (["--min", "f1=0.5"], "--min f1: not measured here; measured: valid, accuracy, macro_f1"),
        (["--min", "accuracy"], "--min 'accuracy': write NAME=NUMBER"),
        (["--strict", "--reference-field", "gold"], ":1: no reference field 'gold' (--strict)"),
    ],
)
def test_cli_mistakes_exit_2_with_one_line(tmp_path: Path, data: Path, args: list[str], message: str) -> None:
    out = cli("sentiment", "--data", str(data), "--backend", NEGATIVE, *args, cwd=tmp_path)
    assert out.returncode == 2
    assert message in out.stderr and len(out.stderr.strip().splitlines()) == 1, out.stderr


def test_a_missing_extra_names_it(tmp_path: Path, data: Path) -> None:
    script = (
        "import sys; sys.modules['sacrebleu'] = None\n"
        "from promptask.cli import main\n"
        f"sys.exit(main(['eval', 'sentiment', '--data', {str(data)!r}, '--metric', 'chrf', '--backend', "
        f"{NEGATIVE!r}, '--no-progress']))"
    )
    out = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert out.returncode == 2
    assert "the chrf metric needs the sacrebleu package: pip install 'promptask[eval]'" in out.stderr


# ---------------------------------------------------------------------------- the real model


@pytest.mark.slow
def test_cli_on_the_default_model_for_one_builtin(tmp_path: Path) -> None:
    data = ROOT / "examples" / "data" / "test" / "sentiment.jsonl"
    out = cli("sentiment", "--data", str(data), "--limit", "6", "--json", "r.json", "--no-progress", cwd=tmp_path,
              timeout=600)  # fmt: skip
    assert out.returncode == 0, out.stderr
    report = json.loads((tmp_path / "r.json").read_text())
    main = report["variants"][0]
    assert main["items"] == 6 and main["valid"] == 6 and main["backend"] == "default"
    accuracy = main["metrics"]["accuracy"]
    assert accuracy["low"] <= accuracy["value"] <= accuracy["high"]
    assert all(r["output"]["label"] in {"positive", "negative", "neutral"} for r in report["records"])


def test_macro_f1_counted_directly_equals_the_label_report() -> None:
    import random

    from promptask.evaluate.metrics import _macro_f1, label_report

    rng = random.Random(1)
    for _ in range(500):
        labels = [f"l{i}" for i in range(rng.randint(1, 6))]
        pairs = [
            (None if rng.random() < 0.1 else rng.choice(labels), rng.choice([*labels, None]))
            for _ in range(rng.randint(0, 30))
        ]
        per_label = label_report(pairs)["per_label"]
        expected = sum(v["f1"] for v in per_label.values()) / len(per_label) if per_label else 0.0
        assert _macro_f1(pairs) == pytest.approx(expected, abs=1e-12)
