"""The ``promptask`` command: thin argument parsing over the library.

Exit codes: 0 success, 1 the run failed (backend error, output never
validated), 2 a usage mistake (unknown task, bad input, bad task file).  Set
``PROMPTASK_DEBUG=1`` to see tracebacks.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from promptask._version import __version__
from promptask.batch import coerce_text, run_file
from promptask.errors import ExecutionError, OutputValidationError, PromptaskError, UserError
from promptask.tasks import builtin_task, builtin_task_names
from promptask.tasks.loader import load_task
from promptask.tasks.result import to_jsonable
from promptask.tasks.task import Task

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="promptask",
        description="Run declarative NLP tasks: a Jinja prompt template plus an output schema.",
    )
    parser.add_argument("--version", action="version", version=f"promptask {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def with_tasks(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--tasks",
            action="append",
            default=[],
            metavar="DIR",
            help="a folder of YAML tasks, searched before ./tasks and the built-ins (repeatable)",
        )

    def with_inputs(p: argparse.ArgumentParser) -> None:
        p.add_argument("task", metavar="TASK", help="a task name, or the path of a YAML task file")
        p.add_argument(
            "--input",
            "-i",
            action="append",
            default=[],
            metavar="NAME=VALUE",
            help="an input value; NAME=@FILE reads it from a file; non-text inputs take JSON "
            '(e.g. labels=\'["a","b"]\')',
        )

    p_list = commands.add_parser("list", help="list the tasks found in ./tasks, --tasks folders and built in")
    with_tasks(p_list)

    p_show = commands.add_parser("show", help="show a task's inputs, output schema and rendered messages")
    with_inputs(p_show)
    with_tasks(p_show)

    p_run = commands.add_parser("run", help="run a task and print its output")
    with_inputs(p_run)
    with_tasks(p_run)
    p_run.add_argument("--backend", metavar="URI", help="backend URI (default: $PROMPTASK_BACKEND)")
    p_run.add_argument("--cache", choices=["on", "off", "refresh"], help="cache mode (default: $PROMPTASK_CACHE or on)")
    batch = p_run.add_argument_group("batch runs over a file")
    batch.add_argument("--file", metavar="INPUT", help="run over every row of a .jsonl or .csv file")
    batch.add_argument("--out", metavar="OUTPUT", help="the .jsonl file results are appended to (and resumed from)")
    batch.add_argument("--concurrency", type=int, metavar="N", help="rows in flight at once")
    batch.add_argument(
        "--map", action="append", default=[], metavar="FIELD=INPUT", help="feed a file field to a task input"
    )
    batch.add_argument("--id-field", metavar="FIELD", help="the field identifying rows (default: id, else row number)")
    batch.add_argument("--fail-fast", action="store_true", help="stop at the first failed row")
    batch.add_argument("--strict", action="store_true", help="refuse to run if any input row is malformed")
    batch.add_argument("--no-progress", action="store_true", help="no progress output")
    batch.add_argument("--min-confidence", type=float, metavar="P",
                       help='mark rows whose confidence is below P "status": "review" and count them')  # fmt: skip
    batch.add_argument("--review", metavar="FILE", help="also write the rows to review to this .jsonl file")
    p_run.add_argument(
        "--json", action="store_true", help="print the whole result (output, attempts, usage, timing) as JSON"
    )
    return parser


def _task_dirs(extra: Sequence[str]) -> list[Path]:
    dirs = [Path(d) for d in extra]
    for d in dirs:
        if not d.is_dir():
            raise UserError(f"--tasks {d}: no such folder")
    if Path("tasks").is_dir():
        dirs.append(Path("tasks"))
    return dirs


def _task_files(folder: Path) -> list[Path]:
    return sorted([*folder.glob("*.yaml"), *folder.glob("*.yml")])


def _declared_name(file: Path) -> str | None:
    try:
        data = yaml.safe_load(file.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return None
    name = data.get("name") if isinstance(data, dict) else None
    return name if isinstance(name, str) else None


def find_task(name: str, dirs: Sequence[Path]) -> Task[..., Any]:
    """A task by file path, then by name in ``dirs`` (in order), then built in."""
    as_path = Path(name)
    if as_path.suffix in (".yaml", ".yml") and as_path.is_file():
        return load_task(as_path)
    for folder in dirs:
        for file in (folder / f"{name}.yaml", folder / f"{name}.yml"):
            if file.is_file():
                return load_task(file)
        for file in _task_files(folder):
            if _declared_name(file) == name:
                return load_task(file)
    if name in builtin_task_names():
        return builtin_task(name)
    known = sorted({*builtin_task_names(), *(f.stem for d in dirs for f in _task_files(d))})
    raise UserError(f"unknown task {name!r}; available: {', '.join(known) or 'none'} (see `promptask list`)")


def _parse_inputs(task: Task[..., Any], pairs: Sequence[str]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for pair in pairs:
        name, sep, raw = pair.partition("=")
        if not sep or not name:
            raise UserError(f"--input {pair!r}: write NAME=VALUE")
        if raw.startswith("@@"):
            raw = raw[1:]
        elif raw.startswith("@"):
            try:
                raw = Path(raw[1:]).read_text(encoding="utf-8")
            except OSError as exc:
                raise UserError(f"--input {name}: cannot read {raw[1:]!r}: {exc.strerror}") from None
        values[name] = raw
    return coerce_text(task, values)


def _print_output(value: Any) -> None:
    if isinstance(value, str):
        print(value)
    else:
        print(json.dumps(to_jsonable(value), indent=2, ensure_ascii=False))


def _cmd_list(args: argparse.Namespace) -> int:
    rows: list[tuple[str, str, str]] = []
    failures = 0
    seen: set[str] = set()
    for folder in _task_dirs(args.tasks):
        for file in _task_files(folder):
            try:
                task = load_task(file)
            except PromptaskError as exc:
                print(f"promptask: {exc}", file=sys.stderr)
                failures += 1
                continue
            if task.name not in seen:
                seen.add(task.name)
                rows.append((task.name, str(file), task.description))
    for name in builtin_task_names():
        if name not in seen:
            rows.append((name, "built-in", builtin_task(name).description))
    width = max((len(r[0]) for r in rows), default=4)
    for name, origin, description in rows:
        summary = description.splitlines()[0] if description else ""
        print(f"{name:<{width}}  {summary}  [{origin}]")
    return 2 if failures else 0


def _cmd_show(args: argparse.Namespace) -> int:
    task = find_task(args.task, _task_dirs(args.tasks))
    print(f"task: {task.name} (version {task.version})")
    if task.description:
        print(f"description: {task.description}")
    print("inputs:")
    for name, field in task.input_model.model_fields.items():
        required = "required" if field.is_required() else f"default {field.default!r}"
        print(f"  {name}: {_type_label(field.annotation)} ({required})")
    print("output schema:")
    print(json.dumps(task.json_schema(), indent=2, ensure_ascii=False))
    if args.input or not any(f.is_required() for f in task.input_model.model_fields.values()):
        for message in task.render(**_parse_inputs(task, args.input)):
            print(f"\n--- {message.role} ---\n{message.content}")
    else:
        print("\n(give --input NAME=VALUE for every required input to see the rendered messages)")
    return 0


def _type_label(annotation: Any) -> str:
    return annotation.__name__ if isinstance(annotation, type) else str(annotation).replace("typing.", "")


def _cmd_run(args: argparse.Namespace) -> int:
    task = find_task(args.task, _task_dirs(args.tasks))
    if args.file:
        return _run_file(task, args)
    if args.out:
        raise UserError("--out needs --file: a single run prints its result")
    result = task.run(backend=args.backend, cache=args.cache, **_parse_inputs(task, args.input))
    if args.json:
        print(json.dumps(result.to_dict(), indent=2, ensure_ascii=False))
    else:
        _print_output(result.output)
    return 0


def _run_file(task: Task[..., Any], args: argparse.Namespace) -> int:
    if not args.out:
        raise UserError("--file needs --out OUTPUT.jsonl, where results are written (and resumed from)")
    rename = {}
    for pair in args.map:
        field, sep, name = pair.partition("=")
        if not sep or not field or not name:
            raise UserError(f"--map {pair!r}: write FIELD=INPUT")
        rename[field] = name
    summary = run_file(
        task,
        args.file,
        args.out,
        backend=args.backend,
        concurrency=args.concurrency,
        cache=args.cache,
        constants=_parse_inputs(task, args.input),
        rename=rename,
        id_field=args.id_field,
        fail_fast=args.fail_fast,
        strict=args.strict,
        progress=not args.no_progress,
        min_confidence=args.min_confidence,
        review_path=args.review,
    )
    if summary.interrupted:
        return 130
    return 1 if summary.failed else 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``promptask`` command."""
    args = _parser().parse_args(argv)
    commands = {"list": _cmd_list, "show": _cmd_show, "run": _cmd_run}
    try:
        return commands[args.command](args)
    except PromptaskError as exc:
        if os.environ.get("PROMPTASK_DEBUG"):
            raise
        print(f"promptask: error: {exc}", file=sys.stderr)
        if isinstance(exc, OutputValidationError):
            for i, attempt in enumerate(exc.attempts, 1):
                print(f"  attempt {i}: {attempt.error}; raw: {attempt.raw[:200]!r}", file=sys.stderr)
        return 1 if isinstance(exc, ExecutionError) else 2
    except KeyboardInterrupt:
        print("promptask: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
