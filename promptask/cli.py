"""The ``promptask`` command: thin argument parsing over the library.

Exit codes: 0 success, 1 the run failed (backend error, output never
validated), 2 a usage mistake (unknown task, bad input, bad task file).  Set
``PROMPTASK_DEBUG=1`` to see tracebacks.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from promptask import ray as on_ray
from promptask._version import __version__
from promptask.batch import coerce_text, run_file
from promptask.errors import ExecutionError, OutputValidationError, PromptaskError, UserError
from promptask.evaluate import eval_settings, evaluate
from promptask.tasks import builtin_task, builtin_task_names
from promptask.tasks.loader import load_task
from promptask.tasks.result import to_jsonable
from promptask.tasks.task import Task
from promptask.tasks.yaml_safe import load_yaml

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
    on = p_run.add_argument_group("batch runs on Ray (pip install 'promptask[ray]'; --out is then a folder)")
    on.add_argument("--ray", action="store_true", help="run the batch on Ray Data: a local Ray, or --ray-address")
    on.add_argument("--ray-address", metavar="ADDRESS", help="join this Ray cluster (auto, ray://host:10001)")
    on.add_argument("--workers", type=int, default=1, metavar="N", help="Ray actors, one backend each")
    on.add_argument("--cpus-per-worker", type=float, default=1, metavar="C", help="CPUs (llama.cpp threads) each")
    on.add_argument("--gpus-per-worker", type=float, default=0, metavar="G", help="GPUs each")
    on.add_argument("--batch-size", type=int, default=128, metavar="B", help="rows per Ray batch, one part file each")
    on.add_argument("--format", choices=["jsonl", "parquet"], default="jsonl", help="part file format")
    p_run.add_argument(
        "--json", action="store_true", help="print the whole result (output, attempts, usage, timing) as JSON"
    )
    _add_serve(commands.add_parser("serve", help="serve the tasks as an HTTP API, with a browser playground"))
    _eval_parser(commands, with_tasks)
    return parser


def _eval_parser(commands: Any, with_tasks: Any) -> None:
    p = commands.add_parser("eval", help="score a task on labelled rows, with 95%% intervals and comparisons")
    p.add_argument("task", metavar="TASK", help="a task name, or the path of a YAML task file")
    with_tasks(p)
    p.add_argument("--data", required=True, metavar="FILE", help="labelled rows: .jsonl or .csv")
    p.add_argument("--backend", action="append", default=[], metavar="URI", help="backend URI (repeat to compare)")
    p.add_argument(
        "--variant",
        action="append",
        default=[],
        metavar="FILE.yaml",
        help="a task file, or only the options it changes, to compare on the same rows (repeatable)",
    )
    p.add_argument("--metric", action="append", default=[], metavar="NAME", help="metric (default: the task's own)")
    p.add_argument("--field", metavar="PATH", help="the output field scored (e.g. labels.0)")
    p.add_argument("--reference-field", metavar="FIELD", help="the row field holding the reference (default: expected)")
    p.add_argument("--input", "-i", action="append", default=[], metavar="NAME=VALUE", help="an input for every row")
    p.add_argument("--limit", type=int, metavar="N", help="only the first N rows")
    p.add_argument(
        "--min",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="exit 1 when a metric's point estimate (or valid) is below VALUE (repeatable)",
    )
    p.add_argument("--report", metavar="FILE.html", help="write the self-contained HTML report")
    p.add_argument("--json", metavar="FILE.json", help="write the whole report as JSON")
    p.add_argument("--cache", choices=["on", "off", "refresh"], help="cache mode (default: $PROMPTASK_CACHE or on)")
    p.add_argument("--concurrency", type=int, metavar="N", help="rows in flight at once")
    p.add_argument("--strict", action="store_true", help="fail on a row missing an input or its reference")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    p.add_argument("--no-progress", action="store_true", help="no progress output")


def _add_serve(p: argparse.ArgumentParser) -> None:
    p.add_argument("project", nargs="?", default=".", metavar="PROJECT_DIR", help="serves PROJECT_DIR/tasks/*.yaml "
                   "and the built-in tasks (default: .)")  # fmt: skip
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1, this machine only)")
    p.add_argument("--port", type=int, default=8000, help="port to listen on (default: 8000; 0 picks a free one)")
    p.add_argument("--backend", metavar="URI", help="backend URI (default: $PROMPTASK_BACKEND)")
    p.add_argument("--api-key-env", metavar="VAR", help="require Authorization: Bearer KEY, KEY read from $VAR")
    p.add_argument("--max-queue", type=int, default=64, metavar="N", help="requests that may wait for a backend "
                   "beyond those it runs; more get 503 (default: 64)")  # fmt: skip
    p.add_argument("--timeout", type=float, default=60.0, metavar="S", help="seconds a request may take; then 504")
    p.add_argument("--grace", type=float, metavar="S", help="on SIGTERM, seconds for requests in flight to finish "
                   "(default: --timeout)")  # fmt: skip
    p.add_argument("--max-body", type=int, default=1_000_000, metavar="BYTES", help="largest request body; "
                   "larger gets 413 (default: 1000000)")  # fmt: skip
    p.add_argument("--cache", choices=["on", "off", "refresh"], help="cache mode (default: $PROMPTASK_CACHE or on)")
    p.add_argument("--insecure", action="store_true", help="allow a non-loopback --host without an API key")


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
        data, _ = load_yaml(file.read_text(encoding="utf-8"), source=str(file))
    except (OSError, ValueError, yaml.YAMLError, PromptaskError):  # reported when the file itself is loaded
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
            except UnicodeDecodeError as exc:
                line = exc.object[: exc.start].count(b"\n") + 1
                raise UserError(
                    f"--input {name}: {raw[1:]!r} is not UTF-8 text (byte 0x{exc.object[exc.start]:02x} on line "
                    f"{line}); give a text file"
                ) from None
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
    if args.ray and not args.file:
        raise UserError("--ray needs --file INPUT and --out OUTPUT_DIR")
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
    if args.ray:
        if args.fail_fast:
            raise UserError("--fail-fast does not apply to --ray runs: their rows run in parallel batches")
        return _run_ray(task, args, rename)
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


def _cmd_serve(args: argparse.Namespace) -> int:
    serving = importlib.import_module("promptask.serve")  # fastapi and uvicorn: only for this command
    code: int = serving.serve_project(
        args.project,
        host=args.host,
        port=args.port,
        backend=args.backend,
        api_key_env=args.api_key_env,
        max_queue=args.max_queue,
        timeout=args.timeout,
        grace=args.grace,
        max_body_bytes=args.max_body,
        cache=args.cache,
        insecure=args.insecure,
    )
    return code


def _cmd_eval(args: argparse.Namespace) -> int:
    task = find_task(args.task, _task_dirs(args.tasks))
    minimums: dict[str, float] = {}
    for pair in args.min:
        name, sep, raw = pair.partition("=")
        try:
            minimums[name] = float(raw)
        except ValueError:
            sep = ""
        if not sep or not name:
            raise UserError(f"--min {pair!r}: write NAME=NUMBER, e.g. accuracy=0.8")
    settings = eval_settings(task, metrics=args.metric or None, field=args.field, reference=args.reference_field)
    known = ["valid", *(m.name for m in settings.metrics)]
    for name in minimums:
        if name not in known:
            raise UserError(f"--min {name}: not measured here; measured: {', '.join(known)}")
    if args.limit is not None and args.limit < 1:
        raise UserError("--limit must be at least 1")
    report = evaluate(
        task,
        args.data,
        metrics=list(settings.metrics),
        field=settings.field,
        reference=settings.reference,
        backend=args.backend or None,
        variants=args.variant,
        constants=_parse_inputs(task, args.input),
        limit=args.limit,
        strict=args.strict,
        cache=args.cache,
        concurrency=args.concurrency,
        progress=not args.no_progress,
        seed=args.seed,
    )
    for problem in report.problems:
        print(f"promptask: {problem}", file=sys.stderr)
    print(report.table())
    if args.json:
        report.write_json(args.json)
        print(f"wrote {args.json}", file=sys.stderr)
    if args.report:
        report.write_html(args.report)
        print(f"wrote {args.report}", file=sys.stderr)
    missed = report.below(minimums)
    if missed:
        print(f"promptask: below minimum: {'; '.join(missed)}", file=sys.stderr)
        return 1
    return 0


def _run_ray(task: Task[..., Any], args: argparse.Namespace, rename: dict[str, str]) -> int:
    summary = on_ray.run(
        task,
        args.file,
        args.out,
        backend=args.backend,
        address=args.ray_address,
        workers=args.workers,
        cpus_per_worker=args.cpus_per_worker,
        gpus_per_worker=args.gpus_per_worker,
        batch_size=args.batch_size,
        concurrency=args.concurrency,
        cache=args.cache,
        constants=_parse_inputs(task, args.input),
        rename=rename,
        id_field=args.id_field,
        strict=args.strict,
        output_format=args.format,
        progress=not args.no_progress,
    )
    if summary.interrupted:
        return 130
    return 1 if summary.failed else 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``promptask`` command."""
    args = _parser().parse_args(argv)
    commands = {"list": _cmd_list, "show": _cmd_show, "run": _cmd_run, "eval": _cmd_eval, "serve": _cmd_serve}
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
    except Exception as exc:  # a bug in promptask or a dependency: still one line, as promised, unless debugging
        if os.environ.get("PROMPTASK_DEBUG"):
            raise
        where = traceback.extract_tb(exc.__traceback__)[-1]
        print(
            f"promptask: internal error: {type(exc).__name__}: {exc} (at {Path(where.filename).name}:{where.lineno}; "
            "set PROMPTASK_DEBUG=1 to see the traceback, and please report it)",
            file=sys.stderr,
        )
        return 1


if __name__ == "__main__":
    sys.exit(main())
