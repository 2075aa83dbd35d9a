"""Batch runs on a Ray cluster with Ray Data: the same tasks, backends and output rows as local batch runs.

>>> import promptask.ray  # doctest: +SKIP
>>> summary = promptask.ray.run(promptask.tasks.sentiment, "reviews.jsonl", "labels/", workers=2)  # doctest: +SKIP
>>> summary.done, summary.failed  # doctest: +SKIP
(1000, 0)

How a run goes:

* **Reading.** The input (a ``.jsonl``, ``.csv`` or ``.parquet`` file, or a
  folder of them, at any path Ray Data reads) is parsed in Ray read tasks by
  the same row reader as local batch runs (:func:`promptask.batch.parse_rows`),
  so rows, ids and malformed-row messages (``file:line: ...``) are the same.
  A first pass takes only ids and problems: malformed rows are reported
  (``strict`` refuses them), repeated ids are refused, and ids already in
  the output are counted.  The driver never holds the rows: it reads files
  on a local disk (or a shared filesystem) itself, a few rows at a time, and
  has Ray read tasks stream it the ids of files elsewhere (object storage).
* **Start-up.** Ray's own start (or joining a cluster) includes Ray Data's
  detached service actors, which a cluster keeps for every later run; it
  is timed apart from the run, as is stopping a Ray the run started.
* **Workers.** ``map_batches`` with a callable class: each actor rebuilds the
  task and its backend once (llama.cpp with ``n_threads`` equal to its CPUs,
  transformers on its GPU, the OpenAI-compatible backend as it is) and runs
  each batch through :meth:`promptask.Task.stream`, which uses the backend's
  own batching where it has one.
* **Output.** Each actor writes the records of a batch to one part file in
  ``output_dir``, under a temporary name, then renames it.  The part's name
  is a digest of its ids, so a batch that Ray redoes after losing a worker
  replaces its own part instead of adding a second copy.  At the end the
  driver checks every id is in the output exactly once (and drops any
  duplicate a differently-split retry could leave).
* **Resume.** A rerun reads the part files first: ids with an output are
  skipped, error rows are dropped and run again, temporary files (a part cut
  off by a crash) are deleted, and a part that does not parse is set aside
  as ``*.incomplete`` and its rows are run again.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import io
import json
import logging
import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TextIO, cast

from promptask import config
from promptask.backends.base import Backend
from promptask.batch import BatchSummary, InputRow, _key, _record, id_of, parse_rows, row_inputs
from promptask.config import DEFAULT_BACKEND, CacheSetting
from promptask.errors import ConfigurationError, ExecutionError, PromptaskError, TaskDefinitionError, UserError
from promptask.progress import Progress
from promptask.tasks.result import TaskResult
from promptask.tasks.task import Task
from promptask.types import Usage

if TYPE_CHECKING:
    import pyarrow as pa
    import ray.data

__all__ = ["BATCH_SIZE", "RaySummary", "map_dataset", "run"]

EXTENSIONS = ("jsonl", "json", "ndjson", "csv", "parquet")
OutputFormat = Literal["jsonl", "parquet"]
BackendSpec = Backend | str | Callable[[], Backend]

# Environment the workers need to behave like this process (cache place and mode, default backend).
_ENV = ("PROMPTASK_CACHE_DIR", "PROMPTASK_CACHE", "PROMPTASK_BACKEND", "PROMPTASK_DEBUG")
# A local Ray's shared-memory object store: rows of text need little, and a small store fits small machines.
LOCAL_OBJECT_STORE_BYTES = 512 * 1024**2
# Rows per Ray batch, one part file each; a cut-off run loses at most one batch per worker.  A backend that
# decodes rows together (transformers) or keeps requests in flight (OpenAI-compatible) does so within a Ray
# batch, and runs down at the end of each, so larger batches suit it; llama.cpp decodes one row at a time.
BATCH_SIZE = 128


def _ray() -> Any:
    try:
        import ray
        import ray.data
    except ImportError:
        raise ConfigurationError(
            "batch runs on Ray need Ray, which is not installed; install it with: pip install 'promptask[ray]'"
        ) from None
    return ray


@dataclass
class RaySummary(BatchSummary):
    """What a Ray run did: :class:`~promptask.batch.BatchSummary` plus where it went and Ray's own fixed times.

    ``seconds`` is the whole call; ``startup_s`` and ``shutdown_s`` are the
    parts of it spent starting (or joining) Ray and stopping a Ray the run
    started itself (0 on a cluster it joined).
    """

    output_dir: str = ""
    parts: int = 0
    startup_s: float = 0.0
    shutdown_s: float = 0.0

    def line(self, task: str) -> str:
        return (
            f"{super().line(task)}; {self.parts} part files in {self.output_dir} "
            f"(Ray start {self.startup_s:.1f} s, stop {self.shutdown_s:.1f} s)"
        )


# ---------------------------------------------------------------------------------------------- reading


def _source_class() -> type:
    """A Ray Data file datasource whose rows are promptask input rows (built lazily: Ray is optional)."""
    import pyarrow as pa
    from ray.data.datasource import FileBasedDatasource

    class _RowSource(FileBasedDatasource):
        def __init__(self, paths: str, *, id_field: str | None, root: str | None) -> None:
            super().__init__(paths, file_extensions=list(EXTENSIONS))
            self.id_field = id_field
            self.root = root  # a folder: ids default to "file:row" so they stay unique across files

        def _read_stream(self, f: Any, path: str) -> Iterator[pa.Table]:
            name = os.path.relpath(path, self.root) if self.root else None
            columns: dict[str, list[Any]] = {c: [] for c in _SOURCE_COLUMNS}
            for row in _file_rows(f, path):
                problem, fatal, fields_text, row_id = row.problem, False, None, None
                if row.fields is not None:
                    if self.id_field is not None and self.id_field not in row.fields:
                        problem, fatal = f"no {self.id_field!r} field (given by --id-field)", True
                    else:
                        default = f"{name}:{row.number}" if name is not None else row.number
                        row_id = id_of(row.fields, default, self.id_field)  # type: ignore[arg-type]
                        try:
                            fields_text = json.dumps(row.fields, ensure_ascii=False, default=str)
                            fields_text.encode("utf-8")
                        except UnicodeEncodeError:
                            problem, fields_text = "not valid UTF-8", None
                for column, value in zip(
                    _SOURCE_COLUMNS,
                    (
                        _key(row_id) if fields_text is not None else None,
                        json.dumps(row_id, ensure_ascii=False) if fields_text is not None else None,
                        row.number,
                        row.line,
                        path,
                        fields_text,
                        _printable(problem) if problem else None,
                        fatal,
                    ),
                    strict=True,
                ):
                    columns[column].append(value)
                if len(columns["_row"]) >= 1024:
                    yield pa.table(columns)
                    columns = {c: [] for c in _SOURCE_COLUMNS}
            if columns["_row"]:
                yield pa.table(columns)

    return _RowSource


_SOURCE_COLUMNS = ("_key", "_id", "_row", "_line", "_file", "_fields", "_problem", "_fatal")


def _printable(text: str) -> str:
    return text.encode("utf-8", "replace").decode("utf-8")


def _file_rows(f: Any, path: str) -> Iterator[Any]:
    """Rows of one file; bytes that are not UTF-8 survive decoding so the row holding them can be named.

    ``f`` is a Ray read task's Arrow input stream (read whole) or a local binary file (read as it goes).
    """
    import pyarrow as pa

    suffix = Path(path).suffix.lower()
    local = not isinstance(f, pa.NativeFile)
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        number = 0
        for batch in pq.ParquetFile(f if local else pa.BufferReader(f.readall())).iter_batches(batch_size=1024):
            for fields in batch.to_pylist():
                number += 1
                yield InputRow(number, number, fields)
        return
    # Each read task reports its own undecodable rows (the driver names them); a run is not stopped by one.
    yield from parse_rows(f if local else io.BytesIO(f.readall()), suffix, name=path, keep_undecodable=True)


def _input_root(path: str) -> str | None:
    """The folder whose files are read, or None for a single file (so ids default to row numbers as locally)."""
    import pyarrow.fs

    try:
        filesystem, resolved = pyarrow.fs.FileSystem.from_uri(path)
    except (pyarrow.lib.ArrowInvalid, ValueError):
        filesystem, resolved = pyarrow.fs.LocalFileSystem(), os.path.abspath(path)
    info = filesystem.get_file_info(resolved)
    if info.type == pyarrow.fs.FileType.NotFound:
        raise UserError(f"{path}: no such file or folder")
    if info.type == pyarrow.fs.FileType.Directory:
        return str(resolved)
    if Path(resolved).suffix.lower().lstrip(".") not in EXTENSIONS:
        raise UserError(f"{path}: give a .jsonl, .csv or .parquet file, or a folder of them")
    return None


def read_input(path: str | os.PathLike[str], *, id_field: str | None = None) -> ray.data.Dataset:
    """The rows of a file or folder as a Ray dataset (one promptask input row per dataset row)."""
    return _dataset(_datasource(path, id_field))


def _datasource(path: str | os.PathLike[str], id_field: str | None) -> Any:
    """The input's Ray datasource (its files are listed here, once, for both passes of a run)."""
    _ray()
    text = os.fspath(path)
    root = _input_root(text)
    if "://" not in text:
        text = os.path.abspath(text)
        root = os.path.abspath(root) if root else None
    try:
        return _source_class()(text, id_field=id_field, root=root)
    except ValueError as exc:
        raise UserError(f"{path}: {exc}") from None


def _dataset(source: Any) -> ray.data.Dataset:
    # Reading is light next to the model: let read tasks share a CPU with the actors' bookkeeping.
    dataset: ray.data.Dataset = _ray().data.read_datasource(source, num_cpus=0.25)
    return dataset


_PLAN_COLUMNS = ["_key", "_id", "_line", "_file", "_problem", "_fatal"]


def _plan_tables(source: Any, dataset: ray.data.Dataset, *, here: bool | None = None) -> Iterator[pa.Table]:
    """The id pass's columns: read ``here`` (default: when the files are on a local disk), else by Ray read tasks.

    Both read the same files (the datasource's list) with the same row reader,
    so they give the same rows and messages.  Read here, the pass is one more
    read of a local file instead of one more Ray Data execution (its read
    tasks in worker processes that import Ray Data and promptask first: about
    3 s of a run on 2 cores).  At most 1,024 rows are held at a time.
    """
    import pyarrow.fs

    if here is None:
        here = isinstance(source._filesystem.unwrap(), pyarrow.fs.LocalFileSystem)
    if here:
        for path in source._paths():
            with open(path, "rb") as handle:
                for table in source._read_stream(handle, path):
                    yield table.select(_PLAN_COLUMNS)
        return
    for batch in dataset.select_columns(_PLAN_COLUMNS).iter_batches(batch_format="pyarrow", batch_size=None):
        yield cast("pa.Table", batch)


# ---------------------------------------------------------------------------------------------- output


def _part_name(keys: list[str], fmt: OutputFormat) -> str:
    digest = hashlib.sha256("\n".join(sorted(keys)).encode()).hexdigest()[:24]
    return f"part-{digest}.{fmt}"


def _write_part(out: Path, name: str, records: list[dict[str, Any]], fmt: OutputFormat) -> None:
    """Write a part under a temporary name, then rename it: a reader sees all of it or none of it."""
    tmp = out / f".{name}.{os.getpid()}.tmp"
    if fmt == "parquet":
        import pyarrow.parquet as pq

        pq.write_table(_parquet_table(records), tmp)
    else:
        with tmp.open("w", encoding="utf-8") as handle:
            handle.writelines(json.dumps(record, ensure_ascii=False) + "\n" for record in records)
            handle.flush()
            os.fsync(handle.fileno())
    os.replace(tmp, out / name)


_JSON_COLUMNS = ("id", "output", "usage", "attempts")


def _parquet_table(records: list[dict[str, Any]]) -> pa.Table:
    """Parquet parts: ``id``, ``output``, ``usage`` and ``attempts`` as JSON text, since their types vary by row."""
    import pyarrow as pa

    def cell(record: dict[str, Any], column: str) -> Any:
        if column not in record:
            return None
        value = record[column]
        if column == "id":
            return _key(value)
        return json.dumps(value, ensure_ascii=False) if column in _JSON_COLUMNS else value

    columns = ("id", "row", "output", "error", "attempts", "cached", "usage", "confidence")
    return pa.table(
        {c: [cell(r, c) for r in records] for c in columns},
        schema=pa.schema(
            [
                ("id", pa.string()),
                ("row", pa.int64()),
                ("output", pa.string()),
                ("error", pa.string()),
                ("attempts", pa.string()),
                ("cached", pa.bool_()),
                ("usage", pa.string()),
                ("confidence", pa.float64()),
            ]
        ),
    )


def read_output(output_dir: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Every record in the part files of ``output_dir`` (JSONL or Parquet), as local batch runs write them."""
    records: list[dict[str, Any]] = []
    for part in _parts(Path(output_dir)):
        records.extend(_part_records(part))
    return records


def _parts(out: Path) -> list[Path]:
    if not out.is_dir():
        return []
    return sorted(p for p in out.iterdir() if p.name.startswith("part-") and p.suffix in (".jsonl", ".parquet"))


def _part_records(part: Path) -> list[dict[str, Any]]:
    """A part's records; ValueError when it does not read whole."""
    if part.suffix == ".parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        try:
            rows: list[dict[str, Any]] = pq.read_table(part).to_pylist()
        except (OSError, pa.ArrowException) as exc:
            raise ValueError(str(exc)) from None
        for row in rows:
            for column in _JSON_COLUMNS:
                if row.get(column) is not None:
                    row[column] = json.loads(row[column])
            for column in [c for c, v in row.items() if v is None]:
                del row[column]
        return rows
    records = []
    with part.open(encoding="utf-8") as handle:
        for line in handle:
            record = json.loads(line)
            if not line.endswith("\n") or not isinstance(record, dict) or "id" not in record:
                raise ValueError("cut off")
            records.append(record)
    return records


def _settle(out: Path, log: TextIO, *, keep_errors: bool) -> dict[str, str]:
    """Ids with an output, by key -> part name; leaves every id in one part at most.

    Temporary files (parts a crash cut off before their rename) are deleted,
    unreadable parts set aside (``*.incomplete``), and parts holding ids seen
    in an earlier part rewritten without them.  Error rows are dropped too
    (their rows run again) unless ``keep_errors``, and always where the id
    has an output elsewhere.
    """
    for stray in out.glob(".part-*.tmp") if out.is_dir() else ():
        stray.unlink(missing_ok=True)
    parts: list[tuple[Path, list[dict[str, Any]]]] = []
    for part in _parts(out):
        try:
            parts.append((part, _part_records(part)))
        except (ValueError, UnicodeDecodeError):
            part.rename(part.with_name(part.name + ".incomplete"))
            print(f"promptask: {part}: cut off; set aside, its rows run again", file=log)
    done: dict[str, str] = {}
    for part, records in parts:
        for record in records:
            if "output" in record:
                done.setdefault(_key(record["id"]), part.name)
    failed: set[str] = set()
    for part, records in parts:
        kept = []
        for record in records:
            key = _key(record["id"])
            if "output" in record and done[key] == part.name:
                kept.append(record)
                done[key] = ""  # the first copy is kept; any later one is dropped
            elif "output" not in record and keep_errors and key not in done and key not in failed:
                kept.append(record)
                failed.add(key)
        for record in kept:
            if "output" in record:
                done[_key(record["id"])] = part.name
        if len(kept) == len(records):
            continue
        if kept:
            _write_part(out, part.name, kept, "parquet" if part.suffix == ".parquet" else "jsonl")
        else:
            part.unlink()
    return done


# ---------------------------------------------------------------------------------------------- workers


def _backend_for(spec: BackendSpec, cpus: float) -> Backend | str:
    """The backend an actor uses: llama.cpp gets one thread per CPU the actor holds."""
    if isinstance(spec, str):
        scheme, _, rest = spec.strip().partition(":")
        if scheme == "llamacpp":
            # Imported by name, as the backend registry does: llama.cpp is an extra of its own.
            llamacpp = importlib.import_module("promptask.backends.llamacpp")
            backend: Backend = llamacpp.LlamaCppBackend(rest or None, n_threads=max(1, int(cpus)))
            return backend
        return spec
    if isinstance(spec, Backend):
        return spec
    return spec()


class _Worker:
    """One Ray actor: the task and its backend built once, then a batch of rows at a time."""

    def __init__(
        self,
        spec: Any,
        digest: str,
        backend: BackendSpec,
        cpus: float,
        cache: CacheSetting | None,
        concurrency: int | None,
        rename: Mapping[str, str],
        constants: Mapping[str, Any] | None,
        done: list[Any],
        output_dir: str | None,
        fmt: OutputFormat,
    ) -> None:
        self.task: Task[Any, Any] = Task.from_spec(spec)
        if self.task.digest != digest:
            raise TaskDefinitionError(
                f"task {self.task.name!r} differs on this Ray worker (its template files are missing or changed)"
            )
        self.backend = self.task.resolve_backend(_backend_for(backend, cpus))
        self.cache, self.concurrency = cache, concurrency
        self.rename, self.constants = dict(rename), dict(constants or {})
        ray = _ray()
        self.done: frozenset[str] = ray.get(done[0]) if done else frozenset()
        self.out = Path(output_dir) if output_dir is not None else None
        self.fmt: OutputFormat = fmt

    def _outcomes(self, fields: list[dict[str, Any]]) -> list[TaskResult[Any] | PromptaskError]:
        inputs = [row_inputs(self.task, row, self.rename, self.constants) for row in fields]
        outcomes: list[TaskResult[Any] | PromptaskError | None] = [None] * len(inputs)
        for index, outcome in self.task.stream(
            inputs, backend=self.backend, concurrency=self.concurrency, cache=self.cache
        ):
            outcomes[index] = outcome
        return [o for o in outcomes if o is not None]

    def __call__(self, batch: pa.Table) -> pa.Table:
        import pyarrow as pa

        if self.out is None:  # map_dataset: the input columns plus the outcome
            outcomes = self._outcomes(batch.to_pylist())
            records = [_record(None, 0, outcome) for outcome in outcomes]
            for column in ("output", "error", "cached", "usage", "confidence"):
                values = [r.get(column) for r in records]
                if column in ("output", "usage"):
                    values = [json.dumps(v, ensure_ascii=False) if v is not None else None for v in values]
                batch = batch.append_column(column, pa.array(values, type=_MAPPED_TYPES[column]))
            return batch
        rows = [r for r in batch.select(["_key", "_id", "_row", "_fields"]).to_pylist() if r["_fields"] is not None]
        rows = [r for r in rows if r["_key"] not in self.done]
        if not rows:
            return pa.table(_summary_columns([], [], ""))
        outcomes = self._outcomes([json.loads(r["_fields"]) for r in rows])
        records = [_record(json.loads(r["_id"]), r["_row"], o) for r, o in zip(rows, outcomes, strict=True)]
        name = _part_name([r["_key"] for r in rows], self.fmt)
        _write_part(self.out, name, records, self.fmt)
        return pa.table(_summary_columns(rows, outcomes, name))


def _map_types() -> dict[str, Any]:
    import pyarrow as pa

    return {
        "output": pa.string(),
        "error": pa.string(),
        "cached": pa.bool_(),
        "usage": pa.string(),
        "confidence": pa.float64(),
    }


class _LazyTypes(dict[str, Any]):
    def __missing__(self, key: str) -> Any:
        self.update(_map_types())
        return self[key]


_MAPPED_TYPES = _LazyTypes()


def _summary_columns(
    rows: list[dict[str, Any]], outcomes: list[TaskResult[Any] | PromptaskError], part: str
) -> dict[str, list[Any]]:
    ok = [isinstance(o, TaskResult) for o in outcomes]
    usage = [o.usage if isinstance(o, TaskResult) else getattr(o, "usage", None) for o in outcomes]
    return {
        "key": [r["_key"] for r in rows],
        "ok": ok,
        "cached": [bool(getattr(o, "cached", False)) for o in outcomes],
        "prompt_tokens": [u.prompt_tokens if u is not None else 0 for u in usage],
        "completion_tokens": [u.completion_tokens if u is not None else 0 for u in usage],
        "part": [part] * len(rows),
    }


# ---------------------------------------------------------------------------------------------- driving


def _backend_spec(task: Task[Any, Any], backend: BackendSpec | None) -> BackendSpec:
    """What the actors build: the call's backend, the task's, the configured one, $PROMPTASK_BACKEND, the default."""
    for spec in (backend, task.backend, config._settings.backend, os.environ.get("PROMPTASK_BACKEND")):
        if spec:
            return spec
    return DEFAULT_BACKEND


class _Session:
    """Ray for one run: joins ``address``, or starts a small local Ray that it stops at the end."""

    def __init__(self, address: str | None, cpus: float, object_store_bytes: int | None) -> None:
        self.ray = _ray()
        self.started = time.perf_counter()
        self.owned = False
        env = {name: os.environ[name] for name in _ENV if name in os.environ}
        options: dict[str, Any] = {
            "runtime_env": {"env_vars": env} if env else None,
            "log_to_driver": False,
            "logging_level": logging.WARNING,
            "include_dashboard": False,
        }
        if not self.ray.is_initialized():
            if address:
                options["address"] = address
            else:
                options.update(num_cpus=cpus, object_store_memory=object_store_bytes or LOCAL_OBJECT_STORE_BYTES)
            try:
                self.ray.init(**options)
            except (ConnectionError, ValueError, RuntimeError) as exc:
                raise ConfigurationError(
                    f"cannot {'join Ray at ' + address if address else 'start Ray'}: {exc}"
                ) from None
            self.owned = True
        logging.getLogger("ray.data").setLevel(logging.ERROR)  # not "progress bars disabled" and the plan
        context = self.ray.data.DataContext.get_current()
        context.enable_progress_bars = False  # promptask's own progress says rows done and failed
        context.print_on_execution_start = False
        _start_data_services(self.ray)
        self.seconds = time.perf_counter() - self.started

    def close(self) -> None:
        if self.owned:
            self.ray.shutdown()


def _start_data_services(ray: Any) -> None:
    """Start Ray Data's own cluster services, or find them running, and wait until they are up.

    Ray Data keeps three detached actors per cluster (execution statistics,
    actor locations, the autoscaling coordinator), made by the first dataset
    run on it and kept for every later one.  Joining a cluster, they are
    usually there already; on a Ray started for this run they are part of
    starting Ray, so they are made here, with the rest of Ray's start-up,
    instead of competing for the CPUs with the run's own workers (on 2 cores,
    their three processes importing Ray Data took about 4 s).  Where this Ray
    release has them elsewhere, Ray Data makes them itself on first use.  All
    three take no CPU, so they never wait for the run's workers.
    """
    makers = (
        ("ray.data._internal.stats", "get_or_create_stats_actor"),
        ("ray.data._internal.execution.node_trackers", "get_or_create_actor_location_tracker"),
        (
            "ray.data._internal.cluster_autoscaler.default_autoscaling_coordinator",
            "get_or_create_autoscaling_coordinator",
        ),
    )
    actors = []
    for module, name in makers:
        try:
            actors.append(getattr(importlib.import_module(module), name)())
        except (ImportError, AttributeError):
            continue
    # On a slow cluster the run goes on after a while, and Ray Data waits for them where it needs them.
    with contextlib.suppress(ray.exceptions.GetTimeoutError):
        ray.get([actor.__ray_ready__.remote() for actor in actors], timeout=120)


def _worker_options(workers: int, cpus_per_worker: float, gpus_per_worker: float, batch_size: int) -> dict[str, Any]:
    if workers < 1 or cpus_per_worker <= 0 or gpus_per_worker < 0 or batch_size < 1:
        raise UserError(
            "--workers, --cpus-per-worker and --batch-size must be positive, --gpus-per-worker not negative"
        )
    options: dict[str, Any] = {
        "compute": _ray().data.ActorPoolStrategy(size=workers),
        "num_cpus": cpus_per_worker,
        "batch_size": batch_size,
        "batch_format": "pyarrow",
        "zero_copy_batch": True,
    }
    if gpus_per_worker:
        options["num_gpus"] = gpus_per_worker
    return options


def map_dataset(
    task: Task[Any, Any],
    dataset: ray.data.Dataset,
    *,
    backend: BackendSpec | None = None,
    workers: int = 1,
    cpus_per_worker: float = 1,
    gpus_per_worker: float = 0,
    batch_size: int = BATCH_SIZE,
    concurrency: int | None = None,
    cache: CacheSetting | None = None,
    constants: Mapping[str, Any] | None = None,
    rename: Mapping[str, str] | None = None,
) -> ray.data.Dataset:
    """Run ``task`` over each row of a Ray dataset; returns the rows with ``output`` or ``error`` added.

    Each row's columns named like the task's inputs are its inputs (``rename``
    maps a column to an input; ``constants`` are given to every row).  The
    result has the input columns plus ``output`` and ``usage`` (JSON text, since
    their types vary from task to task), ``error`` (None when the row
    succeeded), ``cached`` and ``confidence``.  Nothing runs until the dataset
    is consumed (written, iterated or materialized), as is usual in Ray Data.

    >>> import ray, promptask, promptask.ray  # doctest: +SKIP
    >>> rows = ray.data.from_items([{"text": "Great phone"}, {"text": "Broke in a week"}])  # doctest: +SKIP
    >>> labelled = promptask.ray.map_dataset(promptask.tasks.sentiment, rows, workers=2)  # doctest: +SKIP
    >>> labelled.write_parquet("s3://bucket/labels/")  # doctest: +SKIP
    """
    _ray()
    spec = _backend_spec(task, backend)
    return dataset.map_batches(
        _Worker,
        fn_constructor_args=(task.spec, task.digest, spec, cpus_per_worker, cache, concurrency),
        fn_constructor_kwargs={
            "rename": dict(rename or {}),
            "constants": constants,
            "done": [],
            "output_dir": None,
            "fmt": "jsonl",
        },
        **_worker_options(workers, cpus_per_worker, gpus_per_worker, batch_size),
    )


def run(
    task: Task[Any, Any],
    input: str | os.PathLike[str],
    output_dir: str | os.PathLike[str],
    *,
    backend: BackendSpec | None = None,
    address: str | None = None,
    workers: int = 1,
    cpus_per_worker: float = 1,
    gpus_per_worker: float = 0,
    batch_size: int = BATCH_SIZE,
    concurrency: int | None = None,
    cache: CacheSetting | None = None,
    constants: Mapping[str, Any] | None = None,
    rename: Mapping[str, str] | None = None,
    id_field: str | None = None,
    strict: bool = False,
    output_format: OutputFormat = "jsonl",
    object_store_bytes: int | None = None,
    progress: bool | None = None,
    log: TextIO | None = None,
) -> RaySummary:
    """Run ``task`` over every row of ``input`` on Ray, writing part files to ``output_dir``; resumable.

    Args:
        input: a ``.jsonl``, ``.csv`` or ``.parquet`` file, or a folder of them (local or any path Ray Data reads).
            In a folder, a row without an id field gets ``"FILE:ROW"`` as its id.
        output_dir: the folder part files are written to and resumed from (shared by every node on a cluster).
        backend: a URI (built in each actor), a backend object (pickled to each actor) or a function
            returning a backend (called once in each actor); default: the task's, then the configured one.
        address: a Ray cluster to join (``auto``, ``ray://host:10001``); default: start a local Ray and stop it after.
        workers: actors, each with its own backend; ``cpus_per_worker`` CPUs (llama.cpp threads) and
            ``gpus_per_worker`` GPUs each.
        batch_size: rows per Ray batch: one part file each (default :data:`BATCH_SIZE`).
        concurrency: rows in flight within an actor (for server backends).
        output_format: ``jsonl`` or ``parquet`` part files.
        object_store_bytes: the object store of a local Ray (default 512 MB).
        The rest are as in :func:`promptask.batch.run_file`.
    """
    log = log if log is not None else sys.stderr
    options = _worker_options(workers, cpus_per_worker, gpus_per_worker, batch_size)
    if output_format not in ("jsonl", "parquet"):
        raise UserError(f"output format {output_format!r}: choose jsonl or parquet")
    started = time.perf_counter()
    out = Path(output_dir)
    if out.exists() and not out.is_dir():
        raise UserError(f"{out}: not a folder (--ray writes part files to a folder)")
    spec = _backend_spec(task, backend)
    session = _Session(address, workers * cpus_per_worker + 1, object_store_bytes)
    summary = RaySummary(output_dir=str(out), startup_s=session.seconds)
    try:
        files = _datasource(input, id_field)
        source = _dataset(files)
        done = _settle(out, log, keep_errors=False)
        todo = _plan(_plan_tables(files, source), summary, done, strict, log)
        out.mkdir(parents=True, exist_ok=True)
        meter = Progress(todo, label=task.name, enabled=progress is not False, stream=log)
        ray = session.ray
        mapped = source.map_batches(
            _Worker,
            fn_constructor_args=(task.spec, task.digest, spec, cpus_per_worker, cache, concurrency),
            fn_constructor_kwargs={
                "rename": dict(rename or {}),
                "constants": constants,
                "done": [ray.put(frozenset(done))],
                "output_dir": str(out.resolve()),
                "fmt": output_format,
            },
            **options,
        )
        try:
            for batch in mapped.iter_batches(batch_format="pyarrow", batch_size=None):
                for row in cast("pa.Table", batch).to_pylist():
                    meter.advance(ok=row["ok"])
                    summary.done += row["ok"]
                    summary.failed += not row["ok"]
                    summary.cached += row["cached"]
                    summary.usage += Usage(row["prompt_tokens"], row["completion_tokens"])
        except KeyboardInterrupt:
            summary.interrupted = True
        except ray.exceptions.RayError as exc:
            raise _user_error(exc) from None
        finally:
            meter.close()
        _settle(out, log, keep_errors=True)
        summary.parts = len(_parts(out))
    finally:
        stopping = time.perf_counter()
        session.close()
        summary.shutdown_s = time.perf_counter() - stopping
    summary.seconds = time.perf_counter() - started
    print(summary.line(task.name), file=log)
    return summary


def _user_error(exc: Exception) -> PromptaskError:
    """A promptask error raised inside Ray comes back wrapped: unwrap it so it reads as one line."""
    cause = getattr(exc, "cause", None)
    while cause is not None and not isinstance(cause, PromptaskError):
        cause = getattr(cause, "cause", None) or cause.__cause__
    if isinstance(cause, PromptaskError):
        return cause
    first = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
    return ExecutionError(f"the Ray job failed: {first}")


def _plan(tables: Iterable[pa.Table], summary: RaySummary, done: Mapping[str, str], strict: bool, log: TextIO) -> int:
    """The first pass: count rows, report malformed ones, refuse repeated ids; returns how many rows to run."""
    seen: dict[str, str] = {}
    malformed: list[str] = []
    for table in tables:
        for row in table.to_pylist():
            summary.total += 1
            where = f"{row['_file']}:{row['_line']}"
            if row["_fatal"]:
                raise UserError(f"{where}: {row['_problem']}")
            if row["_problem"]:
                malformed.append(f"{where}: {row['_problem']}")
                continue
            key = row["_key"]
            if key in seen:
                raise UserError(f"{where}: id {json.loads(row['_id'])!r} repeats {seen[key]}; ids must be unique")
            seen[key] = where
            summary.already_done += key in done
    if malformed and strict:
        raise UserError(f"{malformed[0]} ({len(malformed)} malformed rows; --strict)")
    for problem in malformed:
        print(f"promptask: {problem}; skipped", file=log)
    summary.malformed = len(malformed)
    return summary.total - summary.malformed - summary.already_done
