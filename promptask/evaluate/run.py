"""``evaluate``: run a task (and its variants) over labelled rows, score every item, bootstrap the metrics.

>>> import promptask
>>> rows = [{"id": 1, "text": "Great!", "expected": "positive"}, {"id": 2, "text": "Awful.", "expected": "negative"}]
>>> backend = promptask.ScriptedBackend(['{"label": "positive"}'], repeat=True)
>>> report = promptask.evaluate(promptask.tasks.sentiment, rows, backend=backend, cache=False)
>>> report.value("accuracy"), report.main.valid_rate
(0.5, 1.0)
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TextIO

import yaml
from pydantic import BaseModel

from promptask.backends.base import Backend
from promptask.batch import coerce_text, read_rows
from promptask.config import CacheSetting
from promptask.errors import InputValidationError, OutputValidationError, PromptaskError, TaskDefinitionError, UserError
from promptask.evaluate.bootstrap import RESAMPLES, SEED, interval, paired_difference
from promptask.evaluate.calibrate import Calibration, calibrate, judge
from promptask.evaluate.metrics import METRICS, Metric, label_of, label_report, resolve_metric
from promptask.evaluate.report import Comparison, EvalReport, ItemRecord, MetricValue, VariantReport
from promptask.progress import Progress
from promptask.tasks.loader import load_task
from promptask.tasks.result import TaskResult, to_jsonable
from promptask.tasks.spec import YAML_OPTIONS
from promptask.tasks.task import Task

__all__ = ["EvalSettings", "Variant", "eval_settings", "evaluate", "load_variant"]

MetricSpec = str | Metric | Callable[[Any, Mapping[str, Any]], float]
DEFAULT_REFERENCE = "expected"
_OVERRIDES = {*YAML_OPTIONS, "template", "template_file", "examples", "checks", "version"}
"""What a variant file may change: everything a task file sets except its name, inputs and output."""


@dataclass(frozen=True)
class EvalSettings:
    """How a task is scored: its metrics, the output field they read, and the row field holding the reference."""

    metrics: tuple[Metric, ...]
    field: str | None
    reference: str


@dataclass(frozen=True)
class Variant:
    """A task to compare, under a name of its own."""

    name: str
    task: Task[..., Any]


# ---------------------------------------------------------------------------- what to score


def _wrapped(task: Task[..., Any]) -> bool:
    """Plain output types (``str``, ``Literal``...) travel as ``{"answer": ...}``; models as themselves."""
    return not (isinstance(task.output_type, type) and issubclass(task.output_type, BaseModel))


def output_data(task: Task[..., Any], output: Any) -> Any:
    """An output as JSON data, in the shape of the task's output schema."""
    data = to_jsonable(output)
    return {"answer": data} if _wrapped(task) else data


def _path(field: str | None) -> list[str]:
    return [part for part in (field or "").split(".") if part]


def select(data: Any, field: str | None) -> Any:
    """The value at a dotted path (``labels.0``), or ``None`` when it is not there."""
    for part in _path(field):
        if isinstance(data, Mapping):
            data = data.get(part)
        elif isinstance(data, list) and part.isdigit() and int(part) < len(data):
            data = data[int(part)]
        else:
            return None
    return data


def _schema_at(schema: Mapping[str, Any], field: str | None) -> Mapping[str, Any] | None:
    definitions = schema.get("$defs", {})

    def deref(node: Any) -> Any:
        while isinstance(node, Mapping) and "$ref" in node:
            node = definitions.get(str(node["$ref"]).rsplit("/", 1)[-1], {})
        return node

    node: Any = deref(schema)
    for part in _path(field):
        if not isinstance(node, Mapping):
            return None
        node = deref(node.get("items") if part.isdigit() else node.get("properties", {}).get(part))
    return node if isinstance(node, Mapping) else None


def _default_metrics(schema: Mapping[str, Any] | None) -> list[str] | None:
    if schema is None:
        return None
    kind = schema.get("type")
    if "enum" in schema or "const" in schema or kind == "boolean":
        return ["accuracy", "macro_f1"]
    if kind == "string":
        return ["exact_match", "token_f1"]
    if kind == "array":
        items = schema.get("items")
        spans = isinstance(items, Mapping) and {"start", "end"} <= set(items.get("properties", {}))
        return ["span_f1"] if spans else ["set_f1"]
    return None


def eval_settings(
    task: Task[..., Any],
    *,
    metrics: Sequence[MetricSpec] | None = None,
    field: str | None = None,
    reference: str | None = None,
) -> EvalSettings:
    """The metrics, output field and reference field for ``task``: arguments first, then what the task declares,
    then defaults by output type (labels: accuracy and macro F1; text: exact match and token F1; lists: set F1).
    """
    declared: Any = task.spec.metrics
    declared_metrics: Sequence[MetricSpec] | None = None
    if isinstance(declared, Mapping):
        unknown = sorted(set(declared) - {"metrics", "field", "reference"})
        if unknown:
            raise TaskDefinitionError(
                f"eval: unknown key {unknown[0]!r}; give metrics, field and reference", source=task.spec.source
            )
        declared_metrics = declared.get("metrics")
        field = field if field is not None else declared.get("field")
        reference = reference if reference is not None else declared.get("reference")
    elif declared is not None:
        declared_metrics = declared
    schema = task.json_schema()
    if field is None:
        properties = list(schema.get("properties", {}))
        field = properties[0] if len(properties) == 1 else None
    chosen: Sequence[MetricSpec] | None = metrics or declared_metrics or _default_metrics(_schema_at(schema, field))
    if not chosen:
        where = f"field {field!r}" if field else "an output with several fields"
        raise UserError(
            f"task {task.name!r}: no default metric for {where}; declare some: in YAML `eval: {{metrics: [token_f1],"
            f" field: summary}}`, in Python `@promptask.task(metrics=[...])`, or pass --metric NAME "
            f"(available: {', '.join(METRICS)})"
        )
    resolved = tuple(resolve_metric(m) for m in chosen)
    names = [m.name for m in resolved]
    if len(set(names)) != len(names):
        raise UserError(f"metric names repeat: {', '.join(names)}")
    return EvalSettings(resolved, field, str(reference or DEFAULT_REFERENCE))


# ---------------------------------------------------------------------------- variants


def load_variant(path: str | os.PathLike[str], base: Task[..., Any]) -> Variant:
    """A variant from a YAML file: a whole task file, or only the options it changes in ``base``.

    A file without ``output`` changes the base task: ``template`` (or ``template_file``),
    ``system``, ``examples``, ``checks``, the sampling options, ``confidence`` and
    ``choose_by_score`` (any task-file key but ``name``, ``inputs``, ``output`` and
    ``eval``); ``label`` names the variant (default: the file name). Everything else,
    output schema and metrics included, stays.
    """
    file = Path(path)
    try:
        data = yaml.safe_load(file.read_text(encoding="utf-8"))
    except OSError as exc:
        raise UserError(f"--variant {file}: cannot read it: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise TaskDefinitionError(f"invalid YAML: {exc}", source=str(file)) from None
    if not isinstance(data, Mapping):
        raise TaskDefinitionError("a variant file is a mapping of task options", source=str(file))
    label = str(data.get("label") or file.stem)
    if "output" in data:
        return Variant(label, load_task(file))  # `label` is not a task key: a whole task file names itself
    unknown = sorted(set(data) - _OVERRIDES - {"label"})
    if unknown:
        raise TaskDefinitionError(
            f"unknown key {unknown[0]!r}; a variant changes {', '.join(sorted(_OVERRIDES))} (or is a whole task file)",
            source=str(file),
        )
    changes: dict[str, Any] = {k: v for k, v in data.items() if k in _OVERRIDES}
    if "template" in changes:
        changes.setdefault("template_file", None)
    elif "template_file" in changes:
        changes["template"] = None
    if "examples" in changes:
        changes["examples"] = changes["examples"] or ()
    search_path = [file.parent, *base.spec.search_path]
    spec = base.spec.replace(source=str(file), search_path=search_path, template_line=0, **changes)
    return Variant(label, Task.from_spec(spec))


def _variants(
    task: Task[..., Any], variants: Sequence[Task[..., Any] | Variant | str | os.PathLike[str]] | None
) -> list[Variant]:
    chosen = [Variant(task.name, task)]
    for item in variants or ():
        if isinstance(item, Variant):
            chosen.append(item)
        elif isinstance(item, Task):
            chosen.append(Variant(item.name, item))
        else:
            chosen.append(load_variant(item, task))
    seen: set[str] = set()
    for i, variant in enumerate(chosen):
        if variant.name in seen:  # the same name twice: number the later ones
            chosen[i] = Variant(f"{variant.name}#{i + 1}", variant.task)
        seen.add(chosen[i].name)
    return chosen


def _backend_name(backend: Backend | str | None) -> str:
    if backend is None:
        return "default"
    if isinstance(backend, str):
        return backend
    return str(getattr(backend, "name", type(backend).__name__))


# ---------------------------------------------------------------------------- rows


@dataclass(frozen=True)
class _Row:
    line: int
    id: Any
    fields: dict[str, Any]
    inputs: dict[str, Any]


def _rows(
    task: Task[..., Any],
    data: str | os.PathLike[str] | Iterable[Mapping[str, Any]],
    reference: str,
    constants: Mapping[str, Any] | None,
    limit: int | None,
    strict: bool,
    problems: list[str],
) -> tuple[list[_Row], int]:
    source = str(data) if isinstance(data, (str, os.PathLike)) else "row"
    if isinstance(data, (str, os.PathLike)):
        raw = [(row.line, row.fields, row.problem) for row in read_rows(data)]
    else:
        raw = [(i, dict(row) if isinstance(row, Mapping) else None, None if isinstance(row, Mapping) else
                f"expected a mapping, got {type(row).__name__}") for i, row in enumerate(data, 1)]  # fmt: skip
    if limit is not None:
        raw = raw[:limit]
    fields = task.input_model.model_fields
    required = [name for name, info in fields.items() if info.is_required() and name not in (constants or {})]
    rows: list[_Row] = []
    skipped = 0
    seen: set[str] = set()
    for line, values, problem in raw:
        where = f"{source}:{line}" if source != "row" else f"row {line}"
        if values is not None and problem is None:
            missing = [name for name in required if name not in values]
            if missing:
                problem = f"missing input {', '.join(map(repr, missing))}"
            elif reference not in values:
                problem = f"no reference field {reference!r}"
        if values is not None and problem is None:
            inputs = coerce_text(task, {**(constants or {}), **{k: v for k, v in values.items() if k in fields}})
            try:
                task.validate_inputs((), inputs)
            except InputValidationError as exc:
                problem = str(exc)
        row_id = values.get("id", line) if values is not None else line
        if problem is None and repr(row_id) in seen:
            problem = f"id {row_id!r} repeats an earlier row"
        if problem is not None or values is None:
            if strict:
                raise UserError(f"{where}: {problem} (--strict)")
            problems.append(f"{where}: {problem}; skipped")
            skipped += 1
            continue
        seen.add(repr(row_id))
        rows.append(_Row(line, row_id, values, inputs))
    if not rows:
        raise UserError(f"no rows to evaluate in {source if source != 'row' else 'the data given'}")
    return rows, skipped


# ---------------------------------------------------------------------------- running and scoring


def _run_variant(
    variant: Variant,
    rows: list[_Row],
    backend: Backend | str | None,
    *,
    label: str,
    cache: CacheSetting | None,
    concurrency: int | None,
    batch_size: int | None,
    progress: bool,
    log: TextIO,
) -> list[TaskResult[Any] | PromptaskError]:
    outcomes: list[TaskResult[Any] | PromptaskError | None] = [None] * len(rows)
    meter = Progress(len(rows), label=f"eval {label}", enabled=progress, stream=log)
    stream = variant.task.stream(
        (row.inputs for row in rows), backend=backend, concurrency=concurrency, batch_size=batch_size, cache=cache
    )
    try:
        for index, outcome in stream:
            outcomes[index] = outcome
            meter.advance(ok=isinstance(outcome, TaskResult))
    finally:
        stream.close()
        meter.close()
    return [o if o is not None else PromptaskError("not run") for o in outcomes]


def evaluate(
    task: Task[..., Any],
    data: str | os.PathLike[str] | Iterable[Mapping[str, Any]],
    *,
    metrics: Sequence[MetricSpec] | None = None,
    field: str | None = None,
    reference: str | None = None,
    backend: Backend | str | Sequence[Backend | str] | None = None,
    variants: Sequence[Task[..., Any] | Variant | str | os.PathLike[str]] | None = None,
    constants: Mapping[str, Any] | None = None,
    limit: int | None = None,
    strict: bool = False,
    cache: CacheSetting | None = None,
    concurrency: int | None = None,
    batch_size: int | None = None,
    progress: bool = False,
    seed: int = SEED,
    resamples: int = RESAMPLES,
    log: TextIO | None = None,
) -> EvalReport:
    """Run ``task`` over labelled rows and score it, with bootstrap intervals.

    Args:
        data: a ``.jsonl`` or ``.csv`` file, or rows; each row holds the task's inputs,
            the reference (field ``expected`` unless ``reference`` or the task says
            otherwise) and optionally an ``id``.
        metrics: metric names, ``module:function`` or ``fn(output, row) -> float``
            (default: what the task declares, else defaults by output type).
        field: the output field scored (dotted, e.g. ``labels.0``; default: the task's
            declaration, else the output's only field).
        backend: one backend, or several to compare on the same rows.
        variants: tasks to compare with ``task``: Task objects, or YAML files (a whole
            task, or only the options changed, see :func:`load_variant`).
        constants: inputs given to every row (a row's own field wins).
        limit: evaluate only the first ``limit`` rows.
        strict: fail on a bad row (missing input or reference) instead of skipping it.
        cache: the cache mode; results are cached as usual, so a rerun is quick.
        progress: show a progress line per variant on ``log`` (standard error).
        seed, resamples: the bootstrap's seed and number of resamples.

    Every variant uses the task's metrics, so paired differences compare like with
    like; bad rows and metric errors are listed in ``report.problems``.
    """
    log = log if log is not None else sys.stderr
    started = time.perf_counter()
    settings = eval_settings(task, metrics=metrics, field=field, reference=reference)
    problems: list[str] = []
    rows, skipped = _rows(task, data, settings.reference, constants, limit, strict, problems)
    backends: list[Backend | str | None] = (
        list(backend) if isinstance(backend, (list, tuple)) else [backend]  # type: ignore[list-item]
    )
    chosen = _variants(task, variants)
    runs: list[tuple[str, Variant, Backend | str | None]] = []
    for b in backends:
        for v in chosen:
            runs.append((v.name if len(backends) == 1 else f"{v.name} @ {_backend_name(b)}", v, b))

    reports: list[VariantReport] = []
    records: list[ItemRecord] = []
    all_stats: dict[str, dict[str, list[tuple[Any, ...] | None]]] = {}
    for label, variant, b in runs:
        outcomes = _run_variant(variant, rows, b, label=label, cache=cache, concurrency=concurrency,
                                batch_size=batch_size, progress=progress, log=log)  # fmt: skip
        stats, pairs, variant_records = _score(label, variant, rows, outcomes, settings, problems)
        all_stats[label] = stats
        records += variant_records
        summary = _summary(label, variant, b, outcomes, stats, pairs, settings, resamples, seed,
                           main=variant is chosen[0])  # fmt: skip
        reports.append(replace(summary, calibration=_calibration(variant_records, settings)))
    comparisons = _comparisons(runs, all_stats, settings, resamples, seed)
    return EvalReport(
        task=task.name,
        data=str(data) if isinstance(data, (str, os.PathLike)) else None,
        field=settings.field,
        reference=settings.reference,
        metrics=[m.name for m in settings.metrics],
        metric_descriptions={m.name: m.description for m in settings.metrics},
        variants=reports,
        comparisons=comparisons,
        records=records,
        problems=problems,
        skipped=skipped,
        seed=seed,
        resamples=resamples,
        seconds=time.perf_counter() - started,
    )


def _score(
    label: str,
    variant: Variant,
    rows: list[_Row],
    outcomes: list[TaskResult[Any] | PromptaskError],
    settings: EvalSettings,
    problems: list[str],
) -> tuple[dict[str, list[tuple[Any, ...] | None]], list[tuple[Any, ...]], list[ItemRecord]]:
    stats: dict[str, list[tuple[Any, ...] | None]] = {m.name: [] for m in settings.metrics}
    pairs: list[tuple[Any, ...]] = []
    records = []
    first = settings.metrics[0]
    for row, outcome in zip(rows, outcomes, strict=True):
        ok = isinstance(outcome, TaskResult)
        output = outcome.output if isinstance(outcome, TaskResult) else None
        data = output_data(variant.task, output) if isinstance(outcome, TaskResult) else None
        prediction = select(data, settings.field) if ok else None
        reference = row.fields.get(settings.reference)
        pairs.append((label_of(reference), label_of(prediction) if ok else None))
        scores: dict[str, float | None] = {}
        for metric in settings.metrics:
            try:
                item = metric.item(prediction, reference, output, row.fields)
            except (UserError, ImportError):
                raise
            except Exception as exc:
                problem = f"{type(exc).__name__}: {exc}"
                problems.append(f"{label}: metric {metric.name} failed on row id {row.id!r}: {problem}")
                stats[metric.name].append(None)
                scores[metric.name] = None
                continue
            stats[metric.name].append(item)
            scores[metric.name] = metric.combine([item]) if metric.per_item else None
        primary = scores.get(first.name)
        failed = not ok or (primary is not None and primary < first.pass_at)
        if first.labels and not first.per_item:
            failed = failed or label_of(prediction) != label_of(reference)
        attempts = len(outcome.attempts) if isinstance(outcome, TaskResult) else (
            len(outcome.attempts) if isinstance(outcome, OutputValidationError) else 0)  # fmt: skip
        usage = outcome.usage if isinstance(outcome, (TaskResult, OutputValidationError)) else None
        records.append(
            ItemRecord(
                variant=label,
                id=row.id,
                line=row.line,
                inputs=row.inputs,
                reference=reference,
                output=data,
                error=None if ok else str(outcome),
                scores=scores,
                failed=failed,
                attempts=attempts,
                latency_s=outcome.latency_s if isinstance(outcome, TaskResult) else 0.0,
                cached=outcome.cached if isinstance(outcome, TaskResult) else False,
                tokens=usage.total_tokens if usage is not None else 0,
                confidence=outcome.confidence if isinstance(outcome, TaskResult) else None,
                correct=judge(first, ok, prediction, reference, primary),
            )
        )
    return stats, pairs, records


def _summary(
    label: str,
    variant: Variant,
    backend: Backend | str | None,
    outcomes: list[TaskResult[Any] | PromptaskError],
    stats: dict[str, list[tuple[Any, ...] | None]],
    predictions: list[tuple[Any, ...]],
    settings: EvalSettings,
    resamples: int,
    seed: int,
    *,
    main: bool,
) -> VariantReport:
    results = [o for o in outcomes if isinstance(o, TaskResult)]
    values: dict[str, MetricValue] = {}
    labels = None
    for metric in settings.metrics:
        scored = [s for s in stats[metric.name] if s is not None]
        value, low, high = interval(metric.combine, scored, resamples=resamples, seed=seed)
        values[metric.name] = MetricValue(value, low, high, len(scored), metric.scale)
    if any(m.labels for m in settings.metrics):
        labels = label_report(predictions)
    usage_prompt = sum(o.usage.prompt_tokens for o in outcomes if isinstance(o, (TaskResult, OutputValidationError)))
    usage_completion = sum(
        o.usage.completion_tokens for o in outcomes if isinstance(o, (TaskResult, OutputValidationError))
    )
    return VariantReport(
        name=label,
        task=variant.task.name,
        backend=_backend_name(backend),
        main=main,
        items=len(outcomes),
        valid=len(results),
        cached=sum(r.cached for r in results),
        mean_latency_s=sum(r.latency_s for r in results) / len(results) if results else 0.0,
        prompt_tokens=usage_prompt,
        completion_tokens=usage_completion,
        metrics=values,
        labels=labels,
    )


def _calibration(records: list[ItemRecord], settings: EvalSettings) -> Calibration | None:
    """Calibration over the items the primary metric judges right or wrong; ``None`` when it judges none."""
    first = settings.metrics[0]
    if not (first.labels or first.binary):
        return None
    return calibrate([(r.confidence, r.correct) for r in records if r.correct is not None])


def _comparisons(
    runs: list[tuple[str, Variant, Backend | str | None]],
    all_stats: dict[str, dict[str, list[tuple[Any, ...] | None]]],
    settings: EvalSettings,
    resamples: int,
    seed: int,
) -> list[Comparison]:
    comparisons = []
    baseline = runs[0][0]
    for label, _, _ in runs[1:]:
        for metric in settings.metrics:
            first, second = all_stats[baseline][metric.name], all_stats[label][metric.name]
            both = [(a, b) for a, b in zip(first, second, strict=True) if a is not None and b is not None]
            value, low, high = paired_difference(
                metric.combine, [a for a, _ in both], [b for _, b in both], resamples=resamples, seed=seed
            )
            comparisons.append(Comparison(metric.name, baseline, label, value, low, high, len(both), metric.scale))
    return comparisons
