"""The Task: a prompt template plus an output type, callable like a function.

Build one with the :func:`promptask.task` decorator or :func:`promptask.load_task`;
this constructor is the low-level route both of them take.

>>> from typing import Literal
>>> from pydantic import create_model
>>> from promptask import Task
>>> from promptask.backends import ScriptedBackend
>>> sentiment = Task(
...     name="sentiment",
...     template="Sentiment of: {{ text }}",
...     input_model=create_model("SentimentInput", text=(str, ...)),
...     output_type=Literal["positive", "negative"],
... )
>>> sentiment("I love it", backend=ScriptedBackend(['{"answer": "positive"}']), cache=False)
'positive'

A task is a definition: it checks inputs, renders messages and checks answers,
and hands each call to :mod:`promptask.tasks.runner` as a
:class:`~promptask.tasks.prepared.PreparedCall`.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Generator, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Generic, Literal, ParamSpec, TypeVar, cast, overload

from pydantic import BaseModel, ValidationError
from typing_extensions import Unpack

from promptask.backends.base import Backend, BackendInfo, BaseBackend
from promptask.backends.registry import resolve_backend
from promptask.config import CacheSetting, resolve_default_backend
from promptask.errors import InputValidationError, PromptaskError, TaskDefinitionError, TemplateError
from promptask.progress import Progress
from promptask.prompts.environment import task_search_path
from promptask.prompts.template import PromptTemplate
from promptask.schemas.describe import outline
from promptask.tasks import runner
from promptask.tasks.dynamic import DynamicSchema, has_evals, schema_digest, static_part
from promptask.tasks.output import Checked, ModelOutput, SchemaOutput, TaskOutput
from promptask.tasks.prepared import PreparedCall
from promptask.tasks.result import TaskResult, to_jsonable
from promptask.tasks.schema import ANSWER_FIELD
from promptask.tasks.spec import RESERVED_NAMES, TaskOptions, TaskSpec, Validator
from promptask.types import Message, Sampling, SchemaEnforcement

__all__ = ["RESERVED_NAMES", "Task", "Validator"]

P = ParamSpec("P")
R = TypeVar("R")

_TEMPLATE_FILE = re.compile(r"^[^\n{}]+\.(j2|jinja|jinja2|txt)$")

FORMAT_INSTRUCTIONS = "Reply with one JSON object and nothing else. It must match this JSON Schema:\n{schema}"
COMPACT_FORMAT_INSTRUCTIONS = "Reply with one JSON object and nothing else, shaped like this:\n{outline}"
COMPACT_SHARE = 0.25
"""Above this share of a backend's context, the schema text in the prompt gives way to a compact outline
(for backends that enforce the schema while decoding), estimating three characters a token."""


def is_template_file(template: str) -> bool:
    """A single line ending in .j2, .jinja, .jinja2 or .txt (and no braces) names a file."""
    return bool(_TEMPLATE_FILE.match(template.strip()))


class Task(Generic[P, R]):
    """A declarative NLP task.

    Call it like a function to get the validated output, or use :meth:`run`
    for a :class:`~promptask.TaskResult` with attempts, usage and timing.

    Args:
        name: identifier used in cache keys, the CLI and errors.
        input_model: pydantic model of the inputs (field order = positional order).
        output_type: a pydantic model, or a plain type (``str``, ``Literal[...]``,
            ``list[int]``...) that is wrapped as ``{"answer": ...}`` for the model.
            With ``output_schema``, a pydantic model to return instead of the
            generated typed view (optional).
        template: inline Jinja text, or a file name on the search path (a single
            line ending in ``.j2``); ``template_file`` forces a file.  Without
            either, a default template lists the description and each input.
        description: what the task does; the default template shows it.
        system: text placed first in the system message.
        examples: few-shot pairs, each ``{"input": {...}, "output": ...}``;
            they become earlier user/assistant turns.
        retries: how many more generations to try after an invalid output.
        version: bump it to invalidate cached results by hand.
        backend: this task's default backend (object or URI).
        temperature, max_tokens, seed, top_p: sampling defaults.
        repeat_penalty, frequency_penalty: discourage tokens an answer already
            used inside its strings (see :class:`~promptask.Sampling`).
        retry_temperature: the temperature of attempts after the first, each
            with a fresh seed; ``None`` keeps the first attempt's sampling.
        confidence: ask backends that can score for the probability of every
            field with a finite set of allowed values (``TaskResult.confidence``
            and ``scores``, see :mod:`promptask.scoring`); on by default.
        choose_by_score: return each such field's most probable value by
            whole-sequence score instead of the greedily decoded one (also a
            call option: ``task.run(..., choose_by_score=True)``).
        validators: ``fn(output, inputs)`` checks beyond the schema.
        checks: a Jinja template rendered with the inputs and ``output`` (as JSON
            data) after validation; any text it renders is an error, shown to the
            model, which tries again.
        output_schema: the output as a JSON Schema, which is then the contract:
            every answer is validated against it with a standard validator (see
            :mod:`promptask.tasks.output`); it may hold per-call values (``$eval``,
            see :mod:`promptask.tasks.dynamic`).
        format_instructions: append the output schema to the system message;
            by default on, unless the template uses ``output_schema`` or
            ``format_instructions`` itself.
        metrics: how :func:`promptask.evaluate` scores the task: metric names
            and ``metric(output, row) -> float`` functions, or a mapping
            ``{metrics, field, reference}`` (the YAML ``eval:`` key); scoring
            only, it never changes an answer or a cache key.
        search_path: directories searched for template files, before
            ``./prompts`` and the built-in prompts.
        source, template_line, checks_line: where the task was defined, so
            errors can name the file and line.

    Every option is declared once, in :class:`~promptask.tasks.spec.TaskSpec`.
    """

    def __init__(
        self,
        *,
        name: str,
        input_model: type[BaseModel],
        output_type: Any = None,
        output_schema: Mapping[str, Any] | bool | None = None,
        search_path: Sequence[str | Path] = (),
        source: str | None = None,
        template_line: int = 0,
        checks_line: int = 0,
        **options: Unpack[TaskOptions],
    ) -> None:
        spec = TaskSpec(
            name=name,
            input_model=input_model,
            output_type=output_type,
            output_schema=output_schema,
            search_path=search_path,
            source=source,
            template_line=template_line,
            checks_line=checks_line,
            **options,
        )
        self._build(spec)

    @classmethod
    def from_spec(cls, spec: TaskSpec) -> Task[..., Any]:
        """The task a checked :class:`TaskSpec` describes."""
        task: Task[..., Any] = cls.__new__(cls)
        task._build(spec)
        return task

    def _build(self, spec: TaskSpec) -> None:
        self.spec = spec
        self.name = spec.name
        self.description = spec.description.strip()
        self.system = spec.system
        self.retries = spec.retries
        self.version = spec.version
        self.backend = spec.backend
        self.sampling: Sampling = spec.sampling
        self.validators = tuple(spec.validators)
        self.input_model = spec.input_model
        self.output = self._output(spec)
        self.output_type = self.output.output_type
        self.output_model = self.output.model
        """The pydantic model of the output, or ``None`` when outputs are plain JSON values."""
        self._schema = self.output.schema
        self.schema: Mapping[str, Any] = self._schema
        """The output JSON Schema, shared with every request: treat it as read-only
        (:meth:`json_schema` returns a copy you may change)."""
        self._schema_text = json.dumps(self._schema, ensure_ascii=False)
        self._format_text = FORMAT_INSTRUCTIONS.format(schema=self._schema_text)
        self.template = self._template(spec)
        self.format_instructions = (
            spec.format_instructions
            if spec.format_instructions is not None
            else not ({"output_schema", "format_instructions"} & self.template.variables)
        )
        dirs = self.template.search_path
        origin = spec.source or "<checks>"
        self._checks = (
            PromptTemplate.from_string(spec.checks, search_path=dirs, origin=origin, line_offset=spec.checks_line)
            if spec.checks
            else None
        )
        self._dynamic = None
        if isinstance(spec.output_schema, Mapping) and has_evals(spec.output_schema):
            try:
                self._dynamic = DynamicSchema(spec.output_schema, search_path=dirs)
            except TaskDefinitionError as exc:
                raise spec.error(exc.message, "output") from None
        self._example_turns = tuple(self._example_messages(spec.examples))
        self.digest = self._compute_digest()

    @staticmethod
    def _output(spec: TaskSpec) -> TaskOutput:
        if spec.output_schema is None:
            return ModelOutput(spec.output_type, name=spec.name)
        try:
            return SchemaOutput(static_part(spec.output_schema), name=spec.name, view=spec.output_type)
        except TaskDefinitionError as exc:
            raise spec.error(f"output.{exc.message}" if exc.path else f"output: {exc.message}",
                             "output", *exc.path) from None  # fmt: skip

    def _template(self, spec: TaskSpec) -> PromptTemplate:
        dirs = task_search_path(spec.search_path)  # ./prompts, after the built-ins' own for built-in tasks
        named = spec.template_file or (spec.template if spec.template and is_template_file(spec.template) else None)
        if named is not None:
            try:
                return PromptTemplate.from_file(named.strip(), search_path=dirs)
            except TaskDefinitionError as exc:
                raise spec.error(exc.message, "template_file" if spec.template_file else "template") from None
        text = spec.template if spec.template is not None else self._default_template()
        return PromptTemplate.from_string(
            text, search_path=dirs, origin=spec.source or "<inline>", line_offset=spec.template_line
        )

    # ------------------------------------------------------------------ inspection

    def json_schema(self) -> dict[str, Any]:
        """The JSON Schema the model's answer must match (a fresh copy)."""
        copy: dict[str, Any] = json.loads(self._schema_text)
        return copy

    def render(self, *args: Any, **inputs: Any) -> list[Message]:
        """The chat messages a call with these inputs would send.

        >>> import promptask
        >>> [m.role for m in promptask.tasks.sentiment.render(text="great")][-3:]
        ['user', 'assistant', 'user']
        """
        return list(self.messages_for(self.validate_inputs(args, inputs)))

    def with_options(self, **changes: Any) -> Task[P, R]:
        """A copy of this task with some options changed.

        >>> import promptask
        >>> creative = promptask.tasks.sentiment.with_options(temperature=0.8, retries=0)
        >>> creative.sampling.temperature, creative.retries
        (0.8, 0)
        """
        try:
            spec = self.spec.replace(**changes)
        except TypeError as exc:
            raise TaskDefinitionError(f"with_options: {exc}", source=self.spec.source) from None
        return cast("Task[P, R]", Task.from_spec(spec))

    def __repr__(self) -> str:
        fields = ", ".join(self.input_model.model_fields)
        return f"<Task {self.name}({fields}) -> {_type_name(self.output_type)}>"

    # ------------------------------------------------------------------ calling

    @overload
    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R: ...

    @overload
    def __call__(
        self,
        *args: Any,
        backend: Backend | str | None,
        cache: CacheSetting | None = ...,
        choose_by_score: bool | None = ...,
        **inputs: Any,
    ) -> R: ...

    @overload
    def __call__(
        self, *args: Any, cache: CacheSetting | None, choose_by_score: bool | None = ..., **inputs: Any
    ) -> R: ...

    @overload
    def __call__(self, *args: Any, choose_by_score: bool | None, **inputs: Any) -> R: ...

    # The overloads give the task's own signature, and the same call with the call options
    # (`backend=`, `cache=`, `choose_by_score=`: names no input may take) for type checkers; a ParamSpec cannot
    # carry extra keyword arguments.
    def __call__(  # type: ignore[misc]
        self,
        *args: Any,
        backend: Backend | str | None = None,
        cache: CacheSetting | None = None,
        choose_by_score: bool | None = None,
        **inputs: Any,
    ) -> R:
        """Run the task and return its validated output."""
        return self.run(*args, backend=backend, cache=cache, choose_by_score=choose_by_score, **inputs).output

    def run(
        self,
        *args: Any,
        backend: Backend | str | None = None,
        cache: CacheSetting | None = None,
        choose_by_score: bool | None = None,
        **inputs: Any,
    ) -> TaskResult[R]:
        """Run the task; the result has the output, raw text, attempts, usage, timing and confidence.

        ``choose_by_score`` overrides the task's own setting for this call.

        >>> import promptask
        >>> result = promptask.tasks.sentiment.run("Great!", backend="llamacpp:")  # doctest: +SKIP
        >>> result.output.label, result.confidence, result.scores["label"]  # doctest: +SKIP
        ('positive', 0.93, {'positive': 0.93, 'negative': 0.02, 'neutral': 0.05})
        """
        validated = self.validate_inputs(args, inputs)
        chosen = self.resolve_backend(backend)
        return runner.run(self.prepare(validated, chosen.info(), choose_by_score=choose_by_score), chosen, cache)

    async def arun(
        self,
        *args: Any,
        backend: Backend | str | None = None,
        cache: CacheSetting | None = None,
        choose_by_score: bool | None = None,
        **inputs: Any,
    ) -> TaskResult[R]:
        """Async :meth:`run`: awaits the backend's ``agenerate`` (a worker thread for backends without async I/O)."""
        validated = self.validate_inputs(args, inputs)
        chosen = self.resolve_backend(backend)
        call = self.prepare(validated, chosen.info(), choose_by_score=choose_by_score)
        return await runner.arun(call, chosen, cache)

    @overload
    def map(
        self,
        inputs: Iterable[Mapping[str, Any]],
        *,
        backend: Backend | str | None = ...,
        concurrency: int | None = ...,
        batch_size: int | None = ...,
        progress: bool = ...,
        cache: CacheSetting | None = ...,
        on_error: Literal["raise"] = ...,
    ) -> list[TaskResult[R]]: ...

    @overload
    def map(
        self,
        inputs: Iterable[Mapping[str, Any]],
        *,
        backend: Backend | str | None = ...,
        concurrency: int | None = ...,
        batch_size: int | None = ...,
        progress: bool = ...,
        cache: CacheSetting | None = ...,
        on_error: Literal["return"],
    ) -> list[TaskResult[R] | PromptaskError]: ...

    def map(
        self,
        inputs: Iterable[Mapping[str, Any]],
        *,
        backend: Backend | str | None = None,
        concurrency: int | None = None,
        batch_size: int | None = None,
        progress: bool = False,
        cache: CacheSetting | None = None,
        on_error: Literal["raise", "return"] = "raise",
    ) -> list[TaskResult[R]] | list[TaskResult[R] | PromptaskError]:
        """Run the task over many inputs; results come back in input order.

        Args:
            inputs: one mapping of input name to value per call.
            concurrency: calls in flight at once (default: what the backend suggests).
            batch_size: rows decoded together, for backends that batch (default:
                the backend's ``batch_size``); other backends get plain calls.
            progress: show progress on standard error.
            on_error: ``"raise"`` validates every row first, then raises the
                first failure; ``"return"`` puts the error in that row's place.

        Results are cached as they finish, so a batch that failed part-way
        recomputes only what is missing when run again.
        """
        rows = [dict(row) for row in inputs]
        if on_error == "raise":
            for i, row in enumerate(rows):  # every input error before any backend call
                self.validate_inputs((), row, row_label=f"row {i}")
        results: list[TaskResult[R] | PromptaskError | None] = [None] * len(rows)
        meter = Progress(len(rows), label=self.name, enabled=progress)
        try:
            outcomes = self.stream(rows, backend=backend, concurrency=concurrency, batch_size=batch_size, cache=cache)
            for i, outcome in outcomes:
                meter.advance(ok=isinstance(outcome, TaskResult))
                if isinstance(outcome, PromptaskError) and on_error == "raise":
                    raise outcome
                results[i] = outcome
        finally:
            meter.close()
        return [r for r in results if r is not None]

    def stream(
        self,
        inputs: Iterable[Mapping[str, Any]],
        *,
        backend: Backend | str | None = None,
        concurrency: int | None = None,
        batch_size: int | None = None,
        cache: CacheSetting | None = None,
    ) -> Generator[tuple[int, TaskResult[R] | PromptaskError], None, None]:
        """Run the task over an iterable of inputs, yielding ``(index, result or error)`` as each finishes.

        Use it to write results out as they come, so an interrupted run loses
        nothing; the cache makes a rerun skip finished work.  Errors are yielded,
        not raised: one bad row never stops the others.

        >>> import promptask
        >>> backend = promptask.ScriptedBackend(['{"label": "positive"}'], repeat=True)
        >>> rows = ({"text": text} for text in ["great", "lovely"])
        >>> for i, result in promptask.tasks.sentiment.stream(rows, backend=backend, cache=False):
        ...     print(i, result.output.label)
        0 positive
        1 positive

        :func:`promptask.batch.run_file` does this for a JSONL or CSV file, with resume.
        """
        chosen = self.resolve_backend(backend)
        return runner.stream(
            self, enumerate(inputs), chosen, concurrency=concurrency, batch_size=batch_size, cache=cache
        )

    # ------------------------------------------------------------------ preparing a call

    def resolve_backend(self, backend: Backend | str | None) -> BaseBackend:
        """The backend a call uses: the argument, else the task's own, else the process default."""
        if backend is not None:
            return resolve_backend(backend)
        if self.backend is not None:
            return resolve_backend(self.backend)
        return resolve_default_backend()

    def validate_inputs(self, args: Sequence[Any], kwargs: Mapping[str, Any], *, row_label: str = "") -> BaseModel:
        """Check and convert inputs; errors name each field (raised before any backend call)."""
        names = list(self.input_model.model_fields)
        prefix = f"{row_label}: " if row_label else ""
        if len(args) > len(names):
            raise InputValidationError(
                self.name, [(f"{prefix}arguments", f"takes {len(names)} positional inputs, got {len(args)}")]
            )
        values = dict(kwargs)
        for name, value in zip(names, args, strict=False):
            if name in values:
                raise InputValidationError(self.name, [(f"{prefix}{name}", "given both by position and by name")])
            values[name] = value
        try:
            return self.input_model.model_validate(values)
        except ValidationError as exc:
            problems = []
            for err in exc.errors(include_url=False):
                field = ".".join(str(part) for part in err["loc"]) or "inputs"
                message = err["msg"]
                if err["type"] == "missing":
                    message = "missing required input"
                elif err["type"] == "extra_forbidden":
                    message = f"unknown input (this task takes: {', '.join(names) or 'no inputs'})"
                problems.append((f"{prefix}{field}", message))
            raise InputValidationError(self.name, problems) from None

    def prepare(
        self, inputs: BaseModel, backend: BackendInfo | None = None, *, choose_by_score: bool | None = None
    ) -> PreparedCall[R]:
        """The call for validated inputs: messages, this call's schema, sampling, digest and output check."""
        schema = self.request_schema(inputs)
        digest = self.digest if schema is self.schema else f"{self.digest}:{schema_digest(schema)}"
        choose = self.spec.choose_by_score if choose_by_score is None else bool(choose_by_score)
        if choose:
            digest += ":choose-by-score"  # it can change the answer
        return PreparedCall(
            task=self.name,
            messages=self.messages_for(inputs, backend),
            schema=schema,
            sampling=self.sampling,
            retries=self.retries,
            digest=digest,
            check=self._checker(inputs),
            retry_temperature=self.spec.retry_temperature,
            confidence=self.spec.confidence or choose,
            choose_by_score=choose,
        )

    def prepare_row(self, row: Mapping[str, Any], *, label: str, backend: BackendInfo) -> PreparedCall[R]:
        """:meth:`prepare` for one row of a batch (input errors name ``label``)."""
        return self.prepare(self.validate_inputs((), dict(row), row_label=label), backend)

    def messages_for(self, inputs: BaseModel, backend: BackendInfo | None = None) -> tuple[Message, ...]:
        """Render the messages for validated inputs: system, few-shot turns, then the request.

        For a backend that enforces the schema while decoding, a schema whose
        text would take more than :data:`COMPACT_SHARE` of the context is
        shown as a compact outline instead.
        """
        instructions = self.format_text(backend)
        rendered = self.template.render(self._variables(inputs, instructions))
        turns = [m for m in rendered if m.role != "system"]
        if not turns:
            raise TemplateError(f"task {self.name!r}: the template rendered no user message")
        return (*self._system(rendered, instructions), *self._example_turns, *turns)

    def format_text(self, backend: BackendInfo | None = None) -> str:
        """The format instructions for ``backend``: the full schema, or an outline where it would crowd the context."""
        context = backend.context_tokens if backend is not None else None
        if (
            context
            and backend is not None
            and backend.schema_enforcement is SchemaEnforcement.TOKENS
            and len(self._format_text) / 3 > COMPACT_SHARE * context
        ):
            return COMPACT_FORMAT_INSTRUCTIONS.format(outline=outline(self._schema, max_chars=int(context * 0.25)))
        return self._format_text

    def request_schema(self, inputs: BaseModel) -> Mapping[str, Any]:
        """The JSON Schema decoding must follow for these inputs (per call when it has ``$eval`` values)."""
        if self._dynamic is None:
            return self.schema
        return self.output.request_schema(self._dynamic.resolve(self._variables(inputs)))

    def check_output(self, data: Any, inputs: BaseModel) -> Checked:
        """Validate parsed JSON against the output's contract, the task's validators and its checks.

        Raises ``ValueError`` with a message meant for the model.
        """
        checked = self.output.check(data)
        if self.validators:
            values = dict(inputs)
            for validator in self.validators:
                try:
                    validator(checked.value, values)
                except (ValueError, AssertionError) as exc:
                    raise ValueError(str(exc) or f"rejected by {_qualname(validator)}") from None
        if self._checks is not None:
            problem = self._checks.render_text({**self._variables(inputs), "output": checked.data}).strip()
            if problem:
                raise ValueError(" ".join(problem.split()))
        return checked

    def _checker(self, inputs: BaseModel) -> Callable[[Any], tuple[Any, R]]:
        def check(data: Any) -> tuple[Any, R]:
            checked = self.check_output(data, inputs)
            return checked.stored, cast(R, checked.value)

        return check

    def _variables(self, inputs: BaseModel, instructions: str | None = None) -> dict[str, Any]:
        return {
            **dict(inputs),
            "task": {"name": self.name, "description": self.description},
            "output_schema": self._schema_text,
            "format_instructions": instructions or self._format_text,
        }

    def _system(self, rendered: Sequence[Message], instructions: str) -> list[Message]:
        parts = [self.system or ""]
        parts += [m.content for m in rendered if m.role == "system"]
        if self.format_instructions:
            parts.append(instructions)
        text = "\n\n".join(p.strip() for p in parts if p and p.strip())
        return [Message("system", text)] if text else []

    def _default_template(self) -> str:
        lines = ["{{ task.description }}\n"] if self.description else []
        for field in self.input_model.model_fields:
            lines.append(f"{field}: {{{{ {field} | text }}}}")
        if not self.input_model.model_fields:
            lines.append("Answer.")
        return "\n".join(lines)

    def _example_messages(self, examples: Sequence[Mapping[str, Any]]) -> list[Message]:
        where = self.spec.source or f"task {self.name!r}"
        turns: list[Message] = []
        for i, example in enumerate(examples):

            def bad(message: str, i: int = i) -> TaskDefinitionError:
                return TaskDefinitionError(f"example {i} {message}", source=where, path=("examples", i))

            if not isinstance(example, Mapping) or set(example) - {"input", "output"} or "output" not in example:
                raise bad("must be a mapping with 'input' and 'output'")
            try:
                inputs = self.validate_inputs((), dict(example.get("input") or {}))
            except InputValidationError as exc:
                raise bad(f"input: {exc}") from None
            output = to_jsonable(example["output"])
            data = {ANSWER_FIELD: output} if self.output.wrapped else output
            try:
                checked = self.check_output(data, inputs)
            except ValueError as exc:
                raise bad(f"output does not validate: {exc}") from None
            rendered = self.template.render(self._variables(inputs))
            turns += [m for m in rendered if m.role != "system"]
            turns.append(Message("assistant", json.dumps(checked.stored, ensure_ascii=False, separators=(",", ":"))))
        return turns

    def _compute_digest(self) -> str:
        payload = json.dumps(
            {
                "name": self.name,
                "version": self.version,
                "template": self.template.digest,
                "system": self.system,
                "schema": self._schema,
                "contract": self.output.contract,
                "examples": [m.to_dict() for m in self._example_turns],
                "format_instructions": self.format_instructions,
                "retry_temperature": self.spec.retry_temperature,  # retries can change which answer is kept
                "validators": [_qualname(v) for v in self.validators],
                "checks": self._checks.digest if self._checks is not None else None,
                "dynamic": self._dynamic.source if self._dynamic is not None else None,
            },
            sort_keys=True,
            ensure_ascii=False,
        )
        return hashlib.sha256(payload.encode()).hexdigest()


def _qualname(fn: Callable[..., Any]) -> str:
    return f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', type(fn).__name__)}"


def _type_name(tp: Any) -> str:
    if isinstance(tp, type):
        return tp.__name__
    return str(tp).replace("typing.", "")
