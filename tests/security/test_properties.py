"""Property tests: whatever text a model answers, and whatever rows a batch file holds, only promptask's own
errors come out (or a result), and every batch row is accounted for."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import promptask
from promptask import OutputValidationError, PromptaskError, ScriptedBackend
from promptask.batch import run_file
from promptask.tasks.parsing import extract_json

# The isolated-cache fixture is function-scoped; these tests use no cache (cache=False), so sharing it is fine.
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)
answers = st.one_of(
    st.text(max_size=300),
    json_values.map(json.dumps),
    st.builds(
        lambda n, c: c * n,
        st.integers(0, 3000) | st.sampled_from([999, 1000, 1500, 100_000]),
        st.sampled_from(["[", "{", '{"a":', "[1,", '"', "\\"]),
    ),
    st.builds(lambda a, b: f"Sure! ```json\n{a}\n``` {b}", json_values.map(json.dumps), st.text(max_size=30)),
)


@SETTINGS
@given(text=answers, lenient=st.booleans())
def test_parsing_any_text_gives_a_value_or_a_value_error(text: str, lenient: bool) -> None:
    with contextlib.suppress(ValueError):
        extract_json(text, lenient=lenient)


@SETTINGS
@given(replies=st.lists(answers, min_size=1, max_size=3))
def test_any_model_answer_is_a_result_or_an_output_validation_error(replies: list[str]) -> None:
    task = promptask.tasks.extract_entities.with_options(retries=len(replies) - 1)
    try:
        result = task.run(text="Ada met Charles in London.", backend=ScriptedBackend(replies), cache=False)
    except OutputValidationError as exc:
        attempts = len(exc.attempts)
        assert attempts == len(replies)
    else:
        assert result.output is not None


@promptask.task(template="Label: {{ text }}")
def label(text: str, count: int = 0) -> str: ...


cells = st.one_of(st.text(max_size=40), json_values.map(json.dumps), st.just(""), st.sampled_from(["[" * 2000]))
jsonl_rows = st.lists(
    st.one_of(
        st.dictionaries(st.sampled_from(["id", "text", "count", "other"]), json_values, max_size=4).map(json.dumps),
        st.text(max_size=60).map(lambda s: s.replace("\n", " ")),
        cells,
    ),
    max_size=8,
)


def run_batch(source: Path) -> tuple[Any, list[dict[str, Any]]]:
    out = source.with_name("out.jsonl")
    backend = ScriptedBackend(lambda request: {"answer": "ok"})
    summary = run_file(label.with_options(retries=0), source, out, backend=backend, cache=False, log=io.StringIO())
    records = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()] if out.exists() else []
    return summary, records


@SETTINGS
@given(rows=jsonl_rows)
def test_any_jsonl_file_runs_or_raises_promptasks_own_error(rows: list[str]) -> None:
    with tempfile.TemporaryDirectory() as folder:
        source = Path(folder) / "in.jsonl"
        source.write_text("\n".join(rows) + "\n", encoding="utf-8", errors="surrogatepass")
        try:
            summary, records = run_batch(source)
        except PromptaskError:
            return  # repeated ids, bytes that are not UTF-8: the user's to fix, and said so
        assert summary.done + summary.failed + summary.malformed == summary.total
        assert len(records) == summary.done + summary.failed


@SETTINGS
@given(header=st.lists(st.text(max_size=8), min_size=1, max_size=4), rows=st.lists(st.lists(cells, max_size=5),
                                                                                   max_size=6))  # fmt: skip
def test_any_csv_file_runs_or_raises_promptasks_own_error(header: list[str], rows: list[list[str]]) -> None:
    with tempfile.TemporaryDirectory() as folder:
        source = Path(folder) / "in.csv"
        with source.open("w", encoding="utf-8", errors="surrogatepass", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(header)
            writer.writerows(rows)
        try:
            summary, records = run_batch(source)
        except PromptaskError:
            return
        assert summary.done + summary.failed + summary.malformed == summary.total
        assert len(records) == summary.done + summary.failed
