"""Confidence without a model: field scanning, combining and choosing, the call loop, the cache, batch routing."""

from __future__ import annotations

import io
import json
import math
import random
import subprocess
import sys
from pathlib import Path

import pytest

import promptask
import promptask.batch
from promptask import BaseBackend, Generation, GenerationRequest
from promptask.calibration import accuracy_at_coverage, auroc, expected_calibration_error
from promptask.scoring import (
    choose_by_score,
    confidence_of,
    finite_values,
    format_path,
    parse_path,
    scores_from_logprobs,
    value_spans,
)
from promptask.types import Scores

LABELS = ["sport", "politics", "technology"]


def test_value_spans_find_finite_fields_and_free_strings_with_their_paths() -> None:
    schema = {
        "type": "object",
        "properties": {
            "label": {"enum": ["a", "b"]},
            "tags": {"type": "array", "items": {"type": "string", "enum": ["x", "y", "z"]}},
            "urgent": {"type": "boolean"},
            "note": {"type": "string"},
            "n": {"type": "integer"},
            "inner": {"$ref": "#/$defs/inner"},
        },
        "$defs": {"inner": {"type": "object", "properties": {"kind": {"const": "k"}}}},
    }
    text = '{"label":"b","tags":["x","z"],"urgent":false,"note":"hi there","n":3,"inner":{"kind":"k"}}'
    spans = {s.path: s for s in value_spans(text, schema)}
    assert set(spans) == {"label", "tags[0]", "tags[1]", "urgent", "note", "inner.kind"}
    assert text[spans["label"].start : spans["label"].end] == '"b"' and spans["label"].closer == ","
    assert spans["tags[1]"].closer == "]" and spans["inner.kind"].closer == "}"
    assert spans["urgent"].candidates == [True, False] and spans["note"].candidates is None
    assert finite_values({"anyOf": [{"const": 1}, {"enum": [2, 3]}]}, {}) == [1, 2, 3]
    assert finite_values({"anyOf": [{"const": 1}, {"type": "string"}]}, {}) is None


def test_paths_round_trip_even_for_odd_keys() -> None:
    keys = ("a", 0, "b c", 'q"uote', "x-y")
    assert parse_path(format_path(keys)) == keys


def test_confidence_is_the_product_over_scored_fields_and_choosing_takes_each_best() -> None:
    scores = Scores({"a": {"x": 0.6, "y": 0.4}, "b": {"true": 0.1, "false": 0.9}})
    assert confidence_of(scores, {"a": "x", "b": True}) == pytest.approx(0.06)
    assert confidence_of(scores, {"other": 1}) is None
    assert confidence_of(None, {"a": "x"}) is None
    assert choose_by_score({"a": "y", "b": True}, scores) == {"a": "x", "b": False}


def test_scores_from_server_logprobs_tell_prefix_sharing_labels_apart() -> None:
    schema = {"type": "object", "properties": {"label": {"enum": ["positive", "position", "neutral"]}}}
    # generated: {"label":"positive"}, as tokens '{"', 'label', '":"', 'pos', 'itive', '"}'
    tokens = [
        ('{"', 0.0, {}),
        ("label", 0.0, {}),
        ('":"', -0.01, {}),
        ("pos", math.log(0.9), {"pos": math.log(0.9), "neut": math.log(0.1)}),
        ("itive", math.log(0.75), {"itive": math.log(0.75), "ition": math.log(0.25)}),
        ('"}', 0.0, {}),
    ]
    scores = scores_from_logprobs(tokens, schema)
    assert scores is not None and scores.method == "logprobs"
    probabilities = scores.choices["label"]
    assert sum(probabilities.values()) == pytest.approx(1.0, abs=1e-9)
    assert probabilities["positive"] == pytest.approx(0.9 * 0.75 / (0.9 * 0.75 + 0.9 * 0.25 + 0.1))
    assert probabilities["position"] == pytest.approx(0.9 * 0.25 / (0.9 * 0.75 + 0.9 * 0.25 + 0.1))
    assert scores_from_logprobs([("not json", 0.0, {})], schema) is None


class Scoring(BaseBackend):
    """Answers with the first label; scores every label of the request's schema, favouring ``favourite``."""

    name = "scoring"
    confidence = "sequence"

    def __init__(self, favourite: str = "politics", answer: str = "sport") -> None:
        self.favourite, self.answer, self.calls = favourite, answer, 0

    def fingerprint(self) -> str:
        return "scoring-test"

    def generate(self, request: GenerationRequest) -> Generation:
        self.calls += 1
        text = request.messages[-1].content
        if not request.scores:
            return Generation(json.dumps({"labels": [self.answer]}))
        labels = request.schema["properties"]["labels"]["items"]["enum"]  # type: ignore[index]
        share = 0.9 if "sure" in text else 0.5
        rest = (1 - share) / (len(labels) - 1)
        choices = {"labels[0]": {label: share if label == self.favourite else rest for label in labels}}
        return Generation(json.dumps({"labels": [self.answer]}), scores=Scores(choices))


def test_the_loop_gives_confidence_chooses_by_score_and_caches_the_scores() -> None:
    backend = Scoring()
    classify = promptask.tasks.classify
    greedy = classify.run("sure thing", LABELS, backend=backend)
    assert greedy.output.label == "sport" and greedy.confidence == pytest.approx(0.05)
    assert greedy.scores["labels[0]"]["politics"] == pytest.approx(0.9)
    chosen = classify.run("sure thing", LABELS, backend=backend, choose_by_score=True)
    assert chosen.output.label == "politics" and chosen.confidence == pytest.approx(0.9) and not chosen.cached
    again = classify.run("sure thing", LABELS, backend=backend, choose_by_score=True)
    assert again.cached and again.output.label == "politics"
    assert again.confidence == chosen.confidence and again.scores == chosen.scores
    assert backend.calls == 2
    by_option = classify.with_options(choose_by_score=True).run("sure thing", LABELS, backend=backend)
    assert by_option.cached and by_option.output.label == "politics"


def test_a_cached_result_without_scores_is_recomputed_when_scores_are_wanted() -> None:
    backend = Scoring()
    classify = promptask.tasks.classify
    plain = classify.with_options(confidence=False)
    assert plain.run("maybe", LABELS, backend=backend).confidence is None
    scored = classify.run("maybe", LABELS, backend=backend)
    assert not scored.cached and scored.confidence == pytest.approx(0.25)
    assert classify.run("maybe", LABELS, backend=backend).cached


def test_a_backend_that_cannot_score_gives_none() -> None:
    backend = promptask.ScriptedBackend([{"label": "positive"}])
    result = promptask.tasks.sentiment.run("great", backend=backend, cache=False)
    assert result.confidence is None and result.scores == {} and result.text_logprobs == {}
    assert promptask.backends.describe(backend).confidence == "none"
    assert not backend.requests[0].scores


def test_choose_by_score_is_a_yaml_option_and_is_checked(tmp_path: Path) -> None:
    file = tmp_path / "t.yaml"
    file.write_text("name: t\ninputs: {text: str}\noutput: {type: string, enum: [a, b]}\ntemplate: '{{ text }}'\n"
                    "choose_by_score: true\n")  # fmt: skip
    assert promptask.load_task(file).spec.choose_by_score is True
    file.write_text(file.read_text().replace("choose_by_score: true", "choose_by_score: 3"))
    with pytest.raises(promptask.TaskDefinitionError, match="choose_by_score must be true or false"):
        promptask.load_task(file)


def test_min_confidence_marks_counts_and_copies_rows_for_review(tmp_path: Path) -> None:
    rows = tmp_path / "in.jsonl"
    rows.write_text("".join(json.dumps({"id": i, "text": t}) + "\n" for i, t in enumerate(["sure", "maybe", "sure"])))
    out, review, log = tmp_path / "out.jsonl", tmp_path / "review.jsonl", io.StringIO()
    summary = promptask.batch.run_file(
        promptask.tasks.classify, rows, out, backend=Scoring(answer="politics"), constants={"labels": LABELS},
        min_confidence=0.7, review_path=review, log=log, progress=False,
    )  # fmt: skip
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["status"] for r in records] == ["ok", "review", "ok"]
    assert [r["confidence"] for r in records] == pytest.approx([0.9, 0.5, 0.9])
    assert summary.review == 1 and "1 to review" in log.getvalue()
    assert [json.loads(line)["id"] for line in review.read_text().splitlines()] == [1]


def test_the_cli_routes_rows_without_confidence_to_review(tmp_path: Path) -> None:
    rows = tmp_path / "in.jsonl"
    rows.write_text('{"text": "a"}\n{"text": "b"}\n')
    out, review = tmp_path / "out.jsonl", tmp_path / "review.jsonl"
    command = [sys.executable, "-m", "promptask.cli", "run", "sentiment", "--file", str(rows), "--out", str(out),
               "--backend", 'scripted:{"label": "neutral"}', "--min-confidence", "0.7", "--review", str(review),
               "--no-progress"]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "2 to review" in done.stderr
    assert [json.loads(line)["status"] for line in out.read_text().splitlines()] == ["review", "review"]
    assert len(review.read_text().splitlines()) == 2
    bad = subprocess.run([*command[:-4], "1.5"], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "between 0 and 1" in bad.stderr


def test_calibration_metrics_on_hand_computed_cases() -> None:
    confidence = [0.9, 0.8, 0.7, 0.6, 0.55, 0.3]
    correct = [True, True, False, True, False, False]
    # pairs (correct, incorrect) ranked right: 0.9 and 0.8 beat all three; 0.6 beats 0.55 and 0.3, not 0.7
    assert auroc(confidence, correct) == pytest.approx((3 + 3 + 2) / 9)
    assert auroc([0.5, 0.5], [True, False]) == pytest.approx(0.5)
    assert auroc([0.5], [True]) is None
    ece = expected_calibration_error([0.95, 0.95, 0.15], [True, False, False], bins=10)
    assert ece == pytest.approx((2 * abs(0.95 - 0.5) + abs(0.15 - 0.0)) / 3)
    curve = accuracy_at_coverage(confidence, correct, (0.5, 1.0))
    assert curve == {0.5: pytest.approx(2 / 3), 1.0: pytest.approx(0.5)}


def pairwise_auroc(confidence: list[float], correct: list[bool]) -> float | None:
    """The definition: over every (correct, incorrect) pair, 1 when the correct one ranks higher, 1/2 on a tie."""
    right = [c for c, ok in zip(confidence, correct, strict=True) if ok]
    wrong = [c for c, ok in zip(confidence, correct, strict=True) if not ok]
    if not right or not wrong:
        return None
    return sum((r > w) + 0.5 * (r == w) for r in right for w in wrong) / (len(right) * len(wrong))


def test_rank_based_auroc_equals_the_pair_definition_on_random_data_with_ties() -> None:
    rng = random.Random(14)
    for trial in range(300):
        n = rng.randint(1, 60)
        levels = rng.choice([3, 10, 1000])  # few levels: many ties
        confidence = [rng.randint(0, levels) / levels for _ in range(n)]
        correct = [rng.random() < 0.6 for _ in range(n)]
        assert auroc(confidence, correct) == pairwise_auroc(confidence, correct), trial


def test_a_row_finds_log_probabilities_stored_ahead_at_an_earlier_step() -> None:
    from promptask.backends.local import DecodeRow, LocalModel

    model = LocalModel()
    model.context = 64
    row = DecodeRow(GenerationRequest(messages=()), [1, 2], model, seed=0)
    row.tokens = [5, 6, 7]
    row.remember(1, (6, 7, 8), {9: -0.25})  # evaluated ahead after the first token: then 6, 7, 8 were guesses
    row.remember(0, (), {5: -0.5})  # a decoding step's own choices
    assert row.known_after(1, (6, 7, 8)) == {9: -0.25}
    assert row.known_after(3, (8,)) == {9: -0.25}  # decoding then wrote 6 and 7: the same position
    assert row.known_after(2, (7, 8)) == {9: -0.25}
    assert row.known_after(3, (9,)) is None  # another path
    assert row.known_after(0, ()) == {5: -0.5} and row.known_after(1, ()) is None
