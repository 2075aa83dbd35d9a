"""Every task option, declared once: its type, default, meaning and check.

:class:`TaskSpec` is the frozen record a :class:`~promptask.Task` is built
from.  The ``@task`` decorator, the YAML loader and ``Task.with_options`` all
go through it, so an option is added in exactly one place (plus its typing in
:class:`TaskOptions`, which a test keeps equal to the spec).

>>> from pydantic import create_model
>>> spec = TaskSpec(name="echo", input_model=create_model("EchoInput", text=(str, ...)), output_type=str, retries=0)
>>> spec.retries, spec.sampling.max_tokens
(0, 512)
>>> TaskSpec(name="echo", input_model=spec.input_model, output_type=str, top_p=0)
Traceback (most recent call last):
...
promptask.errors.TaskDefinitionError: top_p must be a number in (0, 1], got 0
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from typing_extensions import TypedDict

from promptask.backends.base import Backend
from promptask.errors import TaskDefinitionError
from promptask.types import Sampling

__all__ = ["RESERVED_NAMES", "YAML_OPTIONS", "EvalMetric", "TaskOptions", "TaskSpec", "Validator"]

Validator = Callable[[Any, Mapping[str, Any]], object]
"""``validator(output, inputs)``: raise ``ValueError`` (or ``AssertionError``) to reject an output;
the message is shown to the model, which tries again."""

EvalMetric = Callable[[Any, Mapping[str, Any]], float]
"""``metric(output, row) -> float``: a custom evaluation metric (see :mod:`promptask.evaluate`)."""

RESERVED_NAMES = frozenset({"backend", "cache", "choose_by_score", "task", "output_schema", "format_instructions"})
"""Names no input may have: call options and the variables every template gets."""

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_\-]*$")
_DEFAULT_SAMPLING = Sampling()
REPEAT_PENALTY = 1.1
"""A task's default ``repeat_penalty``: tokens an answer already used inside its string values weigh less."""
RETRY_TEMPERATURE = 0.7
"""A task's default ``retry_temperature``: attempts after the first are sampled, each with a fresh seed."""


def _option(default: Any, doc: str, *, yaml: bool = False) -> Any:
    """A spec field; ``yaml`` marks options a task file sets under the same key, unchanged."""
    return field(default=default, metadata={"doc": doc, "yaml": yaml})


@dataclass(frozen=True, kw_only=True)
class TaskSpec:
    """The complete, checked definition of a task (see :class:`~promptask.Task` for each option)."""

    name: str = field(metadata={"doc": "identifier used in cache keys, the CLI and errors"})
    input_model: type[BaseModel] = field(metadata={"doc": "pydantic model of the inputs"})
    output_type: Any = _option(None, "a pydantic model or a plain type (with output_schema: the typed view)")
    template: str | None = _option(None, "inline Jinja text, or a template file name")
    template_file: str | None = _option(None, "a template file on the search path")
    description: str = _option("", "what the task does", yaml=True)
    system: str | None = _option(None, "text placed first in the system message", yaml=True)
    examples: Sequence[Mapping[str, Any]] = _option((), "few-shot pairs {input, output}")
    retries: int = _option(2, "more generations to try after an invalid output", yaml=True)
    version: str = _option("1", "bump it to invalidate cached results")
    backend: Backend | str | None = _option(None, "this task's default backend")
    temperature: float = _option(_DEFAULT_SAMPLING.temperature, "sampling temperature (0: greedy)", yaml=True)
    max_tokens: int = _option(_DEFAULT_SAMPLING.max_tokens, "most tokens an answer may take", yaml=True)
    seed: int | None = _option(_DEFAULT_SAMPLING.seed, "sampling seed", yaml=True)
    top_p: float = _option(_DEFAULT_SAMPLING.top_p, "nucleus sampling mass", yaml=True)
    # The two defaults below were chosen on bench/schemas.py's tuning tickets (20 of 20 valid, against 11 of 20
    # greedy, and 11 with a retry temperature alone): see the README's "Output schemas" section.
    repeat_penalty: float = _option(REPEAT_PENALTY, "penalty on tokens repeated in strings", yaml=True)
    frequency_penalty: float = _option(_DEFAULT_SAMPLING.frequency_penalty, "penalty per earlier use", yaml=True)
    retry_temperature: float | None = _option(RETRY_TEMPERATURE, "temperature of retries (fresh seed each)", yaml=True)
    confidence: bool = _option(True, "score finite-choice fields where the backend can", yaml=True)
    choose_by_score: bool = _option(False, "return each finite field's most probable value, not greedy", yaml=True)
    validators: Sequence[Validator] = _option((), "fn(output, inputs) checks beyond the schema")
    checks: str | None = _option(None, "a Jinja template whose output is an error")
    output_schema: Mapping[str, Any] | bool | None = _option(None, "the output JSON Schema, $eval values included")
    format_instructions: bool | None = _option(None, "append the output schema to the system message", yaml=True)
    metrics: Sequence[str | EvalMetric] | Mapping[str, Any] | None = _option(
        None, "how `promptask eval` scores the task (the YAML `eval:` key)"
    )
    search_path: Sequence[str | Path] = _option((), "directories searched for template files")
    source: str | None = _option(None, "where the task was defined, for error messages")
    template_line: int = _option(0, "line of the inline template in its file")
    checks_line: int = _option(0, "line of the checks template in its file")

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _NAME.match(self.name):
            raise self.error(f"task name {self.name!r} must be letters, digits, '_' or '-'", "name")
        clash = sorted(RESERVED_NAMES & set(self.input_model.model_fields))
        if clash:
            raise self.error(f"input names {clash} are reserved; rename them", "inputs")
        if self.output_type is None and self.output_schema is None:
            raise self.error("give the output's type (output_type) or JSON Schema (output_schema)", "output")
        if self.template is not None and self.template_file is not None:
            raise self.error("give either template or template_file, not both", "template_file")
        for key, ok, expected in self._checks():
            if not ok:
                raise self.error(f"{key} must be {expected}, got {getattr(self, key)!r}", key)
        object.__setattr__(self, "version", str(self.version))

    def _checks(self) -> list[tuple[str, bool, str]]:
        def integer(value: Any) -> bool:
            return isinstance(value, int) and not isinstance(value, bool)

        def number(value: Any) -> bool:
            return integer(value) or isinstance(value, float)

        def text(value: Any, optional: bool = True) -> bool:
            return isinstance(value, str) or (optional and value is None)

        return [
            ("retries", integer(self.retries) and self.retries >= 0, "an integer >= 0"),
            ("max_tokens", integer(self.max_tokens) and self.max_tokens >= 1, "an integer >= 1"),
            ("temperature", number(self.temperature) and self.temperature >= 0, "a number >= 0"),
            ("top_p", number(self.top_p) and 0 < self.top_p <= 1, "a number in (0, 1]"),
            ("seed", self.seed is None or integer(self.seed), "an integer or null"),
            ("repeat_penalty", number(self.repeat_penalty) and self.repeat_penalty >= 1, "a number >= 1"),
            ("frequency_penalty", number(self.frequency_penalty) and self.frequency_penalty >= 0, "a number >= 0"),
            (
                "retry_temperature",
                self.retry_temperature is None or (number(self.retry_temperature) and self.retry_temperature >= 0),
                "a number >= 0 or null",
            ),
            ("description", text(self.description, optional=False), "text"),
            ("system", text(self.system), "text"),
            ("template", text(self.template), "text"),
            ("template_file", text(self.template_file), "a file name"),
            ("checks", text(self.checks), "a template (text)"),
            ("version", isinstance(self.version, (str, int, float)), "a string"),
            ("format_instructions", self.format_instructions in (None, True, False), "true, false or null"),
            ("confidence", isinstance(self.confidence, bool), "true or false"),
            ("choose_by_score", isinstance(self.choose_by_score, bool), "true or false"),
            ("examples", isinstance(self.examples, Sequence) and not isinstance(self.examples, str), "a list"),
            ("metrics", self.metrics is None or (isinstance(self.metrics, (Sequence, Mapping))
             and not isinstance(self.metrics, str)), "a list of metrics or a mapping {metrics, field, reference}"),
        ]  # fmt: skip

    def error(self, message: str, *path: str | int) -> TaskDefinitionError:
        return TaskDefinitionError(message, source=self.source, path=path)

    @property
    def sampling(self) -> Sampling:
        return Sampling(
            temperature=self.temperature,
            max_tokens=self.max_tokens,
            seed=self.seed,
            top_p=self.top_p,
            repeat_penalty=self.repeat_penalty,
            frequency_penalty=self.frequency_penalty,
        )

    def replace(self, **changes: Any) -> TaskSpec:
        """A copy with some options changed (checked again)."""
        unknown = sorted(set(changes) - {f.name for f in dataclasses.fields(self)})
        if unknown:
            raise TypeError(f"unknown task option {unknown[0]!r}")
        return dataclasses.replace(self, **changes)


YAML_OPTIONS = tuple(f.name for f in dataclasses.fields(TaskSpec) if f.metadata.get("yaml"))
"""Options a YAML task file sets under their own name, unchanged."""


class TaskOptions(TypedDict, total=False):
    """The options ``@promptask.task(...)`` takes: each is a :class:`TaskSpec` field (a test keeps them equal)."""

    template: str | None
    template_file: str | None
    description: str
    system: str | None
    examples: Sequence[Mapping[str, Any]]
    retries: int
    version: str
    backend: Backend | str | None
    temperature: float
    max_tokens: int
    seed: int | None
    top_p: float
    repeat_penalty: float
    frequency_penalty: float
    retry_temperature: float | None
    confidence: bool
    choose_by_score: bool
    validators: Sequence[Validator]
    checks: str | None
    format_instructions: bool | None
    metrics: Sequence[str | EvalMetric] | Mapping[str, Any] | None
