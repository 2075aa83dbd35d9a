"""Batch files as careless users and other tools write them: every defect is handled or named, and the output
file stays the user's (its mode, its symlink)."""

from __future__ import annotations

import io
import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest

import promptask
from promptask import ScriptedBackend, UserError
from promptask.batch import run_file


@promptask.task(template="Label: {{ text }}")
def label(text: str) -> str: ...


def upper(request: Any) -> dict[str, Any]:
    return {"answer": request.messages[-1].content.removeprefix("Label: ")[:20].upper()}


def run(source: Path, out: Path, **options: Any) -> tuple[Any, str]:
    log = io.StringIO()
    summary = run_file(label, source, out, backend=ScriptedBackend(upper), cache=False, log=log, **options)
    return summary, log.getvalue()


def records(out: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]


def test_a_csv_field_over_131072_characters_is_read(tmp_path: Path) -> None:
    source = tmp_path / "in.csv"
    source.write_text("id,text\n1," + "x" * 200_000 + "\n2,short\n")
    summary, _ = run(source, tmp_path / "out.jsonl")
    assert (summary.done, summary.malformed) == (2, 0)


def test_a_csv_field_over_the_limit_is_a_malformed_row(tmp_path: Path) -> None:
    from promptask.batch import MAX_FIELD_CHARS

    source = tmp_path / "in.csv"
    source.write_text("id,text\n1," + "x" * (MAX_FIELD_CHARS + 1) + "\n2,short\n")
    summary, log = run(source, tmp_path / "out.jsonl")
    assert (summary.done, summary.malformed) == (1, 1) and "in.csv:2: unreadable CSV" in log


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_a_file_that_is_not_utf8_is_named_with_its_line(tmp_path: Path, suffix: str) -> None:
    source = tmp_path / f"in{suffix}"
    lines = [b"id,text", b"1,fine", b"2,caf\xe9"] if suffix == ".csv" else [b'{"text": "fine"}', b'{"text": "caf\xe9"}']
    source.write_bytes(b"\n".join(lines) + b"\n")
    with pytest.raises(UserError, match=rf"in\{suffix}:{len(lines)}: not UTF-8 text \(byte 0xe9"):
        run(source, tmp_path / "out.jsonl")


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_a_byte_order_mark_is_dropped(tmp_path: Path, suffix: str) -> None:
    source = tmp_path / f"in{suffix}"
    body = "id,text\nr1,hello\n" if suffix == ".csv" else json.dumps({"id": "r1", "text": "hello"}) + "\n"
    source.write_bytes(b"\xef\xbb\xbf" + body.encode())
    summary, _ = run(source, tmp_path / "out.jsonl")
    assert summary.done == 1 and records(tmp_path / "out.jsonl")[0]["id"] == "r1"  # not the row number


def test_an_output_whose_last_record_lacks_its_newline_is_repaired(tmp_path: Path) -> None:
    source = tmp_path / "in.jsonl"
    source.write_text("".join(json.dumps({"id": i, "text": f"t{i}"}) + "\n" for i in range(3)))
    out = tmp_path / "out.jsonl"
    out.write_text(json.dumps({"id": 0, "row": 1, "output": "T0"}))  # no newline: another tool, or a crash
    summary, _ = run(source, out)
    assert (summary.already_done, summary.done) == (1, 2)
    assert [r["id"] for r in records(out)] == [0, 1, 2]
    summary, _ = run(source, out)  # and the next run too
    assert summary.already_done == 3


def test_a_finished_run_keeps_the_output_files_mode(tmp_path: Path) -> None:
    source = tmp_path / "in.jsonl"
    source.write_text("".join(json.dumps({"id": i, "text": f"t{i}"}) + "\n" for i in range(3)))
    out = tmp_path / "out.jsonl"
    out.write_text("not json, dropped\n")
    os.chmod(out, 0o644)
    run(source, out)
    assert stat.S_IMODE(out.stat().st_mode) == 0o644


def test_a_symlinked_output_stays_a_symlink(tmp_path: Path) -> None:
    source = tmp_path / "in.jsonl"
    source.write_text("".join(json.dumps({"id": i, "text": f"t{i}"}) + "\n" for i in range(3)))
    (tmp_path / "results").mkdir()
    real = tmp_path / "results" / "labels.jsonl"
    real.write_text("")
    link = tmp_path / "out.jsonl"
    link.symlink_to(real)
    run(source, link)
    assert link.is_symlink() and [r["id"] for r in records(real)] == [0, 1, 2]
    assert not list(tmp_path.glob(".out.jsonl.*")) and not list((tmp_path / "results").glob(".*.tmp"))


def test_deep_and_odd_jsonl_rows_are_malformed_or_run(tmp_path: Path) -> None:
    source = tmp_path / "in.jsonl"
    source.write_text("[" * 5000 + "\n" + '{"text": "\\ud800 lone"}\n' + '{"text": NaN}\n' + "[1]\n")
    summary, log = run(source, tmp_path / "out.jsonl")
    assert summary.malformed == 2 and "nested too deeply" in log
    assert len(records(tmp_path / "out.jsonl")) == 2  # the lone surrogate is written escaped


def test_unicode_line_separators_in_values_keep_one_record_per_line(tmp_path: Path) -> None:
    source = tmp_path / "in.jsonl"
    source.write_text("".join(json.dumps({"id": f"a{sep}b", "text": f"x{sep}y"}) + "\n" for sep in "\x85\u2028\u2029"))
    summary, _ = run(source, tmp_path / "out.jsonl")
    assert summary.done == 3
    assert [r["id"] for r in records(tmp_path / "out.jsonl")] == ["a\x85b", "a\u2028b", "a\u2029b"]
