"""Batch runs over files: ids, order, malformed rows, failures, resume after kill -9."""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

import promptask
from promptask import ScriptedBackend, UserError
from promptask.backends import GenerationRequest
from promptask.batch import run_file


@promptask.task(template="Label: {{ text }}")
def label(text: str, prefix: str = "") -> str: ...


def echo_backend(request: GenerationRequest) -> dict[str, Any]:
    """Answers with the text it was given, upper-cased; fails for rows saying 'fail'."""
    text = request.messages[-1].content.removeprefix("Label: ")
    if "fail" in text:
        return {"nothing": "useful"}
    time.sleep(0.01 * (len(text) % 3))  # uneven durations: rows finish out of order
    return {"answer": text.upper()}


def lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def run(tmp_path: Path, content: str, suffix: str = ".jsonl", **options: Any) -> tuple[Any, Path, str]:
    source = tmp_path / f"in{suffix}"
    source.write_text(content)
    out = tmp_path / "out.jsonl"
    log = io.StringIO()
    backend = options.pop("backend", ScriptedBackend(echo_backend))
    summary = run_file(label.with_options(retries=0), source, out, backend=backend, log=log, cache=False, **options)
    return summary, out, log.getvalue()


def test_jsonl_rows_keep_their_ids_and_input_order(tmp_path: Path) -> None:
    rows = "".join(json.dumps({"id": f"r{i}", "text": f"row {i}"}) + "\n" for i in range(12))
    summary, out, log = run(tmp_path, rows, concurrency=4)
    records = lines(out)
    assert [r["id"] for r in records] == [f"r{i}" for i in range(12)]  # rewritten in input order at the end
    assert [r["output"] for r in records] == [f"ROW {i}" for i in range(12)]
    assert all(r["cached"] is False and r["usage"]["completion_tokens"] > 0 for r in records)
    assert (summary.done, summary.failed) == (12, 0)
    assert "label: 12 rows: 12 done" in log


def test_row_numbers_are_ids_unless_an_id_field_is_named(tmp_path: Path) -> None:
    _, out, _ = run(tmp_path, '{"text": "a"}\n\n{"text": "b"}\n')
    assert [(r["id"], r["row"]) for r in lines(out)] == [(1, 1), (2, 2)]
    out.unlink()
    _, out, _ = run(tmp_path, '{"key": 7, "text": "a"}\n{"key": 9, "text": "b"}\n', id_field="key")
    assert [r["id"] for r in lines(out)] == [7, 9]


def test_csv_with_renamed_columns_and_constant_inputs(tmp_path: Path) -> None:
    content = 'id,review\n1,"good, really"\n2,bad\n'
    backend = ScriptedBackend(lambda r: {"answer": r.messages[-1].content})
    _, out, _ = run(tmp_path, content, ".csv", rename={"review": "text"}, constants={"prefix": "x"}, backend=backend)
    assert [r["output"] for r in lines(out)] == ["Label: good, really", "Label: bad"]
    assert [r["id"] for r in lines(out)] == ["1", "2"]


def test_malformed_rows_are_reported_with_line_numbers_and_skipped(tmp_path: Path) -> None:
    content = '{"text": "ok"}\n{"text": \n[1, 2]\n{"text": "fine"}\n'
    summary, out, log = run(tmp_path, content)
    assert "in.jsonl:2: not valid JSON" in log and "in.jsonl:3: expected a JSON object, got list" in log
    assert [r["output"] for r in lines(out)] == ["OK", "FINE"]
    assert summary.malformed == 2
    csv_summary, _, csv_log = run(tmp_path, "id,text\n1,a\n2,b,c\n", ".csv")
    assert "in.csv:3: expected 2 fields (id, text), got 3" in csv_log and csv_summary.malformed == 1
    with pytest.raises(UserError, match=r"in.jsonl:2: not valid JSON .*--strict"):
        run(tmp_path, content, strict=True)


def test_failed_rows_are_written_with_their_attempts_and_do_not_stop_the_batch(tmp_path: Path) -> None:
    content = "".join(json.dumps({"text": t}) + "\n" for t in ["a", "please fail", "b", "c"])
    summary, out, _ = run(tmp_path, content)
    records = {r["id"]: r for r in lines(out)}
    assert records[2]["error"].startswith("task 'label' produced no valid output")
    assert records[2]["attempts"][0]["raw"] == '{"nothing": "useful"}'
    assert [records[i]["output"] for i in (1, 3, 4)] == ["A", "B", "C"]
    assert (summary.done, summary.failed) == (3, 1)


def test_fail_fast_stops_at_the_first_failure(tmp_path: Path) -> None:
    content = "".join(json.dumps({"text": t}) + "\n" for t in ["a", "please fail", "b", "c"])
    summary, out, _ = run(tmp_path, content, fail_fast=True)
    assert [r.get("output", "error") for r in lines(out)] == ["A", "error"]
    assert summary.failed == 1 and summary.done == 1


def test_rerun_keeps_outputs_and_redoes_errors_and_cut_lines(tmp_path: Path) -> None:
    content = "".join(json.dumps({"id": i, "text": t}) + "\n" for i, t in enumerate(["a", "please fail", "b", "c"]))
    run(tmp_path, content)
    out = tmp_path / "out.jsonl"
    kept = [r for r in lines(out) if r["id"] in (0, 2)]
    out.write_text("".join(json.dumps(r) + "\n" for r in kept) + '{"id": 3, "row": 4, "outp')  # crash mid-line
    backend = ScriptedBackend(lambda r: {"answer": "redone"})
    summary, out, _ = run(tmp_path, content, backend=backend)
    records = lines(out)
    assert [r["id"] for r in records] == [0, 1, 2, 3]
    assert [r["output"] for r in records] == ["A", "redone", "B", "redone"]
    assert summary.already_done == 2 and summary.done == 2


def test_repeated_ids_are_refused(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="id 'x' repeats row 1"):
        run(tmp_path, '{"id": "x", "text": "a"}\n{"id": "x", "text": "b"}\n')


@pytest.mark.slow  # the batch runs on the default model
def test_kill_9_mid_batch_then_rerun_gives_each_row_exactly_once(tmp_path: Path) -> None:
    rows = 40
    source = tmp_path / "reviews.jsonl"
    source.write_text("".join(json.dumps({"id": f"r{i}", "text": f"Review {i}: it was fine."}) + "\n"
                              for i in range(rows)))  # fmt: skip
    out = tmp_path / "labels.jsonl"
    cmd = [sys.executable, "-m", "promptask", "run", "sentiment", "--file", str(source), "--out", str(out)]
    env = {**os.environ, "PROMPTASK_CACHE": "off"}  # the rerun must really skip rows, not hit the cache
    env.pop("PROMPTASK_BACKEND", None)
    first = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 240
    while (not out.exists() or len(out.read_text().splitlines()) < 5) and time.monotonic() < deadline:
        time.sleep(0.05)
    first.send_signal(signal.SIGKILL)
    first.wait()
    written = 0
    for line in out.read_text().splitlines():
        with contextlib.suppress(ValueError):  # a line cut short by the kill: the rerun drops it
            written += "output" in json.loads(line)
    assert 5 <= written < rows, "the kill must land mid-batch"

    second = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert second.returncode == 0, second.stderr
    records = lines(out)
    assert [r["id"] for r in records] == [f"r{i}" for i in range(rows)]
    assert all(r["output"]["label"] in {"positive", "negative", "neutral"} for r in records)
    assert f"{rows - written} done (0 cached, {written} already in the output)" in second.stderr


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_is_a_redrawn_bar_on_a_terminal_and_lines_elsewhere() -> None:
    from promptask.progress import Progress

    terminal = FakeTerminal()
    bar = Progress(4, label="t", stream=terminal, interval_s=0)
    for ok in (True, False, True, True):
        bar.advance(ok=ok)
    bar.close()
    drawn = terminal.getvalue()
    assert drawn.count("\r\x1b[K") == 5  # redrawn in place: four rows and the final state
    assert "[" + "#" * 6 + "." * 18 + "]" in drawn and "[" + "#" * 24 + "]" in drawn  # a quarter, then full
    assert "t: 4/4 rows" in drawn and "1 failed" in drawn and drawn.endswith("\n")
    assert "ETA" in drawn.split("\r")[2]

    log = io.StringIO()
    lines = Progress(2, label="t", stream=log, interval_s=0)
    lines.advance(ok=True)
    lines.advance(ok=True)
    lines.close()
    assert "\r" not in log.getvalue() and log.getvalue().splitlines()[-1].startswith("t: 2/2 rows")
