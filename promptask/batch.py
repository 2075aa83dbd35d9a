"""Batch runs over a JSONL or CSV file, written to a JSONL file as rows finish.

>>> import io, pathlib, tempfile, promptask
>>> folder = pathlib.Path(tempfile.mkdtemp())
>>> _ = (folder / "reviews.csv").write_text("id,text\\n1,Great phone\\n2,Lovely screen\\n")
>>> backend = promptask.ScriptedBackend(['{"label": "positive"}'], repeat=True)
>>> summary = run_file(promptask.tasks.sentiment, folder / "reviews.csv", folder / "labels.jsonl",
...                    backend=backend, cache=False, log=io.StringIO())
>>> summary.done, summary.failed
(2, 0)
>>> (folder / "labels.jsonl").read_text().splitlines()[0][:45]
'{"id": "1", "row": 1, "output": {"label": "po'

Each output line is one JSON object: ``id`` (the row's ``id`` field, the field
named by ``id_field``, else the row number), ``row`` (the 1-based row number),
then ``output``, or ``error`` with ``attempts``, and ``cached`` and ``usage``.

Nothing is lost on interruption.  Each line is written and flushed as its
row finishes.  Running the same batch again keeps the rows that already have
an output, drops error lines and any line cut short by a crash, and runs only
the rest, so the file ends with each row exactly once.  When a run completes
with no failure, the file is rewritten in input order.

Malformed input rows (bad JSON, wrong number of CSV fields, a CSV field over
:data:`MAX_FIELD_CHARS` characters) are reported with their line number and
skipped, or stop the run with ``strict=True``.  Input must be UTF-8 (a
byte-order mark is allowed and dropped); anything else stops the run with the
line it is on.

The output file stays the user's: it is rewritten (atomically, through a
temporary file beside it) with its permissions kept, and through a symbolic
link to wherever the link points.

With ``min_confidence``, every output line also carries ``status``: ``"review"``
when its ``confidence`` is below the threshold (or the backend gave none), else
``"ok"``; the summary counts the rows to review, and ``review_path`` gets a
copy of each of their lines.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import stat
import sys
import tempfile
import time
import types
import typing
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from promptask.backends.base import Backend
from promptask.config import CacheSetting
from promptask.errors import OutputValidationError, PromptaskError, UserError
from promptask.progress import Progress
from promptask.tasks.result import TaskResult
from promptask.tasks.task import Task
from promptask.types import Usage

__all__ = ["MAX_FIELD_CHARS", "BatchSummary", "InputRow", "id_of", "parse_rows", "read_rows", "row_inputs", "run_file"]

MAX_FIELD_CHARS = 16 * 2**20
"""Longest CSV field read (Python's csv module stops at 131,072 characters by default)."""

_BOM = b"\xef\xbb\xbf"


@dataclass(frozen=True)
class InputRow:
    """One row of an input file: its 1-based number and line, and its fields or what is wrong with it."""

    number: int
    line: int
    fields: dict[str, Any] | None
    problem: str | None = None


def read_rows(path: str | os.PathLike[str]) -> Iterator[InputRow]:
    """The rows of a ``.jsonl`` (or ``.json`` lines) or ``.csv`` file, malformed ones included."""
    file = Path(path)
    kind = file.suffix.lower()
    if kind != ".csv" and kind not in (".jsonl", ".json", ".ndjson"):
        raise UserError(f"{file}: give a .jsonl or .csv file")
    try:
        handle = file.open("rb")
    except OSError as exc:
        raise UserError(f"cannot read {file}: {exc.strerror}") from None
    with handle:
        yield from parse_rows(handle, kind, name=str(file))


def parse_rows(
    handle: Iterable[bytes], suffix: str, *, name: str = "input", keep_undecodable: bool = False
) -> Iterator[InputRow]:
    """The rows of an open binary ``.jsonl`` or ``.csv`` stream (by ``suffix``), malformed ones included.

    A line that is not UTF-8 stops the run with its line number, unless
    ``keep_undecodable``: then its bytes survive as surrogate escapes, for a
    caller that reports such rows one by one.
    """
    kind = suffix.lower()
    if kind != ".csv" and kind not in (".jsonl", ".json", ".ndjson"):
        raise UserError(f"{name}: give a .jsonl or .csv file")
    text = _utf8_lines(handle, name, keep_undecodable=keep_undecodable)
    yield from _csv_rows(text, name) if kind == ".csv" else _jsonl_rows(text)


def _utf8_lines(handle: Iterable[bytes], name: str, *, keep_undecodable: bool = False) -> Iterator[str]:
    """Lines decoded one by one, so a byte that is not UTF-8 is reported with its line; a leading BOM is dropped."""
    for number, raw in enumerate(handle, 1):
        if number == 1 and raw.startswith(_BOM):
            raw = raw[len(_BOM) :]  # Excel's "CSV UTF-8" starts so; it would rename the first column
        if keep_undecodable:
            yield raw.decode("utf-8", errors="surrogateescape")
            continue
        try:
            yield raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise UserError(
                f"{name}:{number}: not UTF-8 text (byte 0x{raw[exc.start]:02x} at column {exc.start + 1}); "
                "save the file as UTF-8"
            ) from None


def _jsonl_rows(lines: Iterable[str]) -> Iterator[InputRow]:
    number = 0
    for line_number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        number += 1
        try:
            value = json.loads(line)
        except ValueError as exc:
            yield InputRow(number, line_number, None, f"not valid JSON ({exc})")
            continue
        except RecursionError:
            yield InputRow(number, line_number, None, "not valid JSON (nested too deeply)")
            continue
        if not isinstance(value, dict):
            yield InputRow(number, line_number, None, f"expected a JSON object, got {type(value).__name__}")
            continue
        yield InputRow(number, line_number, value)


def _csv_rows(lines: Iterable[str], name: str) -> Iterator[InputRow]:
    if csv.field_size_limit() < MAX_FIELD_CHARS:
        csv.field_size_limit(MAX_FIELD_CHARS)  # process-wide, but only ever raised
    reader = csv.reader(lines)
    try:
        header = next(reader, None)
    except csv.Error as exc:
        raise UserError(f"{name}:{reader.line_num}: cannot read the CSV header ({exc})") from None
    if not header:
        return
    number = 0
    while True:
        try:
            values = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:  # a field over the limit, a NUL byte: this row only
            number += 1
            yield InputRow(number, reader.line_num, None, f"unreadable CSV ({exc})")
            continue
        if not values:
            continue
        number += 1
        if len(values) != len(header):
            problem = f"expected {len(header)} fields ({', '.join(header)}), got {len(values)}"
            yield InputRow(number, reader.line_num, None, problem)
            continue
        yield InputRow(number, reader.line_num, dict(zip(header, values, strict=True)), None)


def is_text(annotation: Any) -> bool:
    """Text inputs take a value as written; others are read as JSON when they parse."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return is_text(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        return any(is_text(option) for option in typing.get_args(annotation))
    return annotation is str


def id_of(fields: Mapping[str, Any], number: int, id_field: str | None) -> Any:
    """A row's id: its ``id_field`` (``id`` by default) when present, else its row number."""
    return fields.get(id_field or "id", number)


def row_inputs(
    task: Task[Any, Any], fields: Mapping[str, Any], rename: Mapping[str, str], constants: Mapping[str, Any] | None
) -> dict[str, Any]:
    """The task inputs a row gives: its fields renamed, only the task's inputs, over the constants."""
    inputs = task.input_model.model_fields
    renamed = {rename.get(name, name): value for name, value in fields.items()}
    return coerce_text(task, {**(constants or {}), **{k: v for k, v in renamed.items() if k in inputs}})


def coerce_text(task: Task[Any, Any], values: Mapping[str, Any]) -> dict[str, Any]:
    """Read string values of non-text inputs as JSON (``"3"`` -> 3, ``'["a"]'`` -> a list)."""
    fields = task.input_model.model_fields
    out: dict[str, Any] = {}
    for name, value in values.items():
        field_info = fields.get(name)
        if isinstance(value, str) and field_info is not None and not is_text(field_info.annotation):
            with contextlib.suppress(ValueError, RecursionError):  # not JSON: validation says what is wrong
                value = json.loads(value)
        out[name] = value
    return out


@dataclass
class BatchSummary:
    """What a batch run did."""

    total: int = 0
    done: int = 0
    failed: int = 0
    cached: int = 0
    already_done: int = 0
    malformed: int = 0
    review: int = 0
    usage: Usage = field(default_factory=Usage)
    seconds: float = 0.0
    interrupted: bool = False

    def line(self, task: str) -> str:
        tokens = self.usage.prompt_tokens + self.usage.completion_tokens
        return (
            f"{task}: {self.total} rows: {self.done} done ({self.cached} cached, {self.already_done} already in the "
            f"output), {self.failed} failed, {self.malformed} malformed"
            + (f", {self.review} to review" if self.review else "")
            + f"; {tokens:,} tokens; {self.seconds:.1f} s"
            + (" (interrupted)" if self.interrupted else "")
        )


def _finished_ids(out: Path) -> set[str]:
    """Ids that already have an output; rewrites the file without anything else (errors, a cut-off line)."""
    if not out.exists():
        return set()
    kept: list[str] = []
    ids: set[str] = set()
    rewrite = False
    try:
        with out.open("rb") as handle:
            raw_lines = handle.readlines()
    except OSError as exc:
        raise UserError(f"cannot read the output file {out}: {exc.strerror}") from None
    for raw in raw_lines:
        record = _parse_record(raw)
        if isinstance(record, dict) and "output" in record and "id" in record:
            ids.add(_key(record["id"]))
            kept.append(raw.decode("utf-8").rstrip("\r\n") + "\n")
            rewrite = rewrite or not raw.endswith(b"\n")  # else the next line would be appended to it
        else:
            rewrite = True
    if rewrite:
        _replace(out, kept)
    return ids


def _parse_record(raw: bytes) -> Any:
    try:
        return json.loads(raw.decode("utf-8"))
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        return None


def _replace(path: Path, lines: list[str]) -> None:
    """Rewrite ``path`` atomically, keeping its mode, and through a symbolic link rather than over it."""
    target = Path(os.path.realpath(path))
    mode = stat.S_IMODE(target.stat().st_mode) if target.exists() else None
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.writelines(lines)
        if mode is not None:
            os.chmod(tmp, mode)  # mkstemp makes it 0600
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _sort_by_row(path: Path) -> None:
    with path.open("rb") as handle:
        raw_lines = handle.readlines()

    def row(raw: bytes) -> int:
        record = _parse_record(raw)
        number = record.get("row", 0) if isinstance(record, dict) else 0
        return number if isinstance(number, int) else 0

    raw_lines.sort(key=row)
    _replace(path, [raw.decode("utf-8", errors="replace").rstrip("\r\n") + "\n" for raw in raw_lines])


# Characters str.splitlines() breaks lines at that json.dumps(ensure_ascii=False) leaves raw inside strings.
_LINE_BREAKS = {"\x85": "\\u0085", "\u2028": "\\u2028", "\u2029": "\\u2029"}


def _json_line(record: Mapping[str, Any]) -> str:
    """One output line that every JSONL reader sees as one line.

    ASCII escapes where the text cannot be written as UTF-8 (a lone surrogate
    from JSON input), and for the Unicode line separators, inside strings the
    only place they can be.
    """
    line = json.dumps(record, ensure_ascii=False)
    try:
        line.encode("utf-8")
    except UnicodeEncodeError:
        line = json.dumps(record)
    for char, escaped in _LINE_BREAKS.items():
        line = line.replace(char, escaped)
    return line + "\n"


def _key(row_id: Any) -> str:
    return json.dumps(row_id, sort_keys=True)


def _record(row_id: Any, number: int, outcome: TaskResult[Any] | PromptaskError) -> dict[str, Any]:
    record: dict[str, Any] = {"id": row_id, "row": number}
    if isinstance(outcome, TaskResult):
        data = outcome.to_dict()
        record.update(output=data["output"], cached=outcome.cached, usage=data["usage"])
        if outcome.confidence is not None:
            record["confidence"] = outcome.confidence
        return record
    record.update(error=str(outcome), cached=False)
    if isinstance(outcome, OutputValidationError):
        record["attempts"] = [attempt.to_dict() for attempt in outcome.attempts]
        record["usage"] = outcome.usage.to_dict()
    else:
        record["usage"] = Usage().to_dict()
    return record


def run_file(
    task: Task[Any, Any],
    input_path: str | os.PathLike[str],
    output_path: str | os.PathLike[str],
    *,
    backend: Backend | str | None = None,
    concurrency: int | None = None,
    cache: CacheSetting | None = None,
    constants: Mapping[str, Any] | None = None,
    rename: Mapping[str, str] | None = None,
    id_field: str | None = None,
    fail_fast: bool = False,
    strict: bool = False,
    progress: bool | None = None,
    log: TextIO | None = None,
    min_confidence: float | None = None,
    review_path: str | os.PathLike[str] | None = None,
) -> BatchSummary:
    """Run ``task`` over every row of ``input_path``, appending results to ``output_path``.

    Args:
        constants: inputs given to every row (a row's own field wins).
        rename: input-file field -> task input (``{"review": "text"}``).
        id_field: the field that identifies a row (default: ``id`` when present, else the row number).
        fail_fast: stop at the first failed row.
        strict: refuse to run when any input row is malformed.
        progress: show progress (default on: a redrawn bar on a terminal, else a line every ten seconds).
        log: where progress, malformed-row reports and the summary go (default: standard error).
        min_confidence: mark rows whose ``confidence`` is below this (or missing) ``"status": "review"``.
        review_path: a JSONL file that also gets each row marked for review.
    """
    if min_confidence is not None and not 0 <= min_confidence <= 1:
        raise UserError(f"min_confidence must be between 0 and 1, got {min_confidence}")
    if review_path is not None and min_confidence is None:
        raise UserError("a review file needs a confidence threshold (--min-confidence)")
    log = log if log is not None else sys.stderr
    started = time.perf_counter()
    out = Path(output_path)
    summary = BatchSummary()
    rows = list(read_rows(input_path))
    summary.total = len(rows)
    malformed = [row for row in rows if row.problem]
    if malformed and strict:
        first = malformed[0]
        raise UserError(f"{input_path}:{first.line}: {first.problem} ({len(malformed)} malformed rows; --strict)")
    for row in malformed:
        print(f"promptask: {input_path}:{row.line}: {row.problem}; skipped", file=log)
    summary.malformed = len(malformed)

    rename = dict(rename or {})
    todo: list[tuple[int, dict[str, Any]]] = []
    ids: dict[int, Any] = {}
    seen: dict[str, int] = {}
    finished = _finished_ids(out)
    for row in rows:
        if row.fields is None:
            continue
        if id_field is not None and id_field not in row.fields:
            raise UserError(f"{input_path}:{row.line}: no {id_field!r} field (given by --id-field)")
        row_id = id_of(row.fields, row.number, id_field)
        key = _key(row_id)
        if key in seen:
            raise UserError(f"{input_path}:{row.line}: id {row_id!r} repeats row {seen[key]}; ids must be unique")
        seen[key] = row.number
        ids[row.number] = row_id
        if key in finished:
            summary.already_done += 1
            continue
        todo.append((row.number, row_inputs(task, row.fields, rename, constants)))

    meter = Progress(len(todo), label=task.name, enabled=progress is not False, stream=log)
    out.parent.mkdir(parents=True, exist_ok=True)
    results = task.stream((values for _, values in todo), backend=backend, concurrency=concurrency, cache=cache)
    review = Path(review_path) if review_path is not None else None
    try:
        with out.open("a", encoding="utf-8") as handle, contextlib.ExitStack() as stack:
            review_handle = stack.enter_context(review.open("a", encoding="utf-8")) if review is not None else None
            for index, outcome in results:
                number = todo[index][0]
                record = _record(ids[number], number, outcome)
                if min_confidence is not None and isinstance(outcome, TaskResult):
                    low = outcome.confidence is None or outcome.confidence < min_confidence
                    record["status"] = "review" if low else "ok"
                    summary.review += low
                line = _json_line(record)
                handle.write(line)
                handle.flush()
                if review_handle is not None and record.get("status") == "review":
                    review_handle.write(line)
                    review_handle.flush()
                ok = isinstance(outcome, TaskResult)
                meter.advance(ok=ok)
                if isinstance(outcome, TaskResult):
                    summary.done += 1
                    summary.cached += outcome.cached
                    summary.usage += outcome.usage
                else:
                    summary.failed += 1
                    if isinstance(outcome, OutputValidationError):
                        summary.usage += outcome.usage
                    if fail_fast:
                        break
    except KeyboardInterrupt:
        summary.interrupted = True
    finally:
        results.close()
        meter.close()
    summary.seconds = time.perf_counter() - started
    complete = not summary.interrupted and summary.done + summary.already_done == len(rows) - len(malformed)
    if complete and out.exists():
        _sort_by_row(out)
    print(summary.line(task.name), file=log)
    return summary
