"""YAML task files.

::

    name: triage
    description: Route a support ticket.
    inputs:
      ticket: str
      teams: list[str]
      priority_hint: {type: string, enum: [low, high], default: low}
    output:                     # JSON Schema (or a simple type name such as `str`)
      type: object
      properties:
        team: {type: string}
        urgent: {type: boolean}
      required: [team, urgent]
    template: |                 # or template_file: triage.j2
      Ticket: {{ ticket }}
      Teams: {{ teams | join(", ") }}
    examples:
      - input: {ticket: "Site down", teams: [web, billing]}
        output: {team: web, urgent: true}
    retries: 2
    temperature: 0
    max_tokens: 200

Template files are found next to the YAML file, in ``../prompts`` beside the
folder holding it, in ``./prompts``, then among the built-in prompts.  Every
error names the file and line.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import ConfigDict, Field, create_model

from promptask.errors import TaskDefinitionError
from promptask.tasks.definition_checks import check_default, check_input_name, check_schema
from promptask.tasks.schema import camel_case, parse_type, type_from_schema
from promptask.tasks.spec import YAML_OPTIONS, TaskSpec
from promptask.tasks.task import Task
from promptask.tasks.yaml_safe import load_yaml

__all__ = ["load_task", "load_tasks", "task_from_mapping"]

# YAML_OPTIONS are handed to the spec unchanged; these need reading first.
_KEYS = {*YAML_OPTIONS, "name", "version", "inputs", "output", "template", "template_file", "examples", "checks",
         "eval"}  # fmt: skip
_JSON_TYPE_NAMES = {"string", "integer", "number", "boolean", "array", "object", "null"}


class _Lines:
    """Line numbers (1-based) of the nodes of a YAML document, by key path."""

    def __init__(self, node: yaml.Node | None) -> None:
        self.lines: dict[tuple[Any, ...], int] = {}
        self.block_scalars: set[tuple[Any, ...]] = set()
        if node is not None:
            self._walk(node, ())

    def _walk(self, node: yaml.Node, path: tuple[Any, ...]) -> None:
        self.lines[path] = node.start_mark.line + 1
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                child = (*path, key.value)
                self._walk(value, child)
                self.lines[child] = key.start_mark.line + 1
                if isinstance(value, yaml.ScalarNode) and value.style in ("|", ">"):
                    self.block_scalars.add(child)
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                self._walk(item, (*path, i))

    def of(self, *path: Any) -> int | None:
        while path not in self.lines and path:
            path = path[:-1]
        return self.lines.get(path)


def load_task(path: str | Path) -> Task[..., Any]:
    """Load one YAML task file.

    >>> import promptask
    >>> promptask.load_task(promptask.tasks.BUILTIN_TASKS / "sentiment.yaml")
    <Task sentiment(text) -> SentimentOutput>
    """
    file = Path(path)
    source = str(file)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise TaskDefinitionError(f"cannot read task file: {exc.strerror or exc}", source=source) from None
    except UnicodeDecodeError as exc:
        line = exc.object[: exc.start].count(b"\n") + 1
        raise TaskDefinitionError("not UTF-8 text (save the file as UTF-8)", source=source, line=line) from None
    try:
        data, node = load_yaml(text, source=source)  # refuses alias bombs and duplicate keys
        lines = _Lines(node)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        raise TaskDefinitionError(
            f"invalid YAML: {exc.problem or exc}", source=source, line=mark.line + 1 if mark else None
        ) from None
    except yaml.YAMLError as exc:
        raise TaskDefinitionError(f"invalid YAML: {exc}", source=source) from None
    return task_from_mapping(data, source=source, base_dir=file.parent, lines=lines)


def load_tasks(directory: str | Path) -> dict[str, Task[..., Any]]:
    """Load every ``*.yaml`` / ``*.yml`` task in a directory, by task name."""
    folder = Path(directory)
    if not folder.is_dir():
        raise TaskDefinitionError(f"task directory {str(folder)!r} does not exist")
    tasks: dict[str, Task[..., Any]] = {}
    origins: dict[str, Path] = {}
    for file in sorted([*folder.glob("*.yaml"), *folder.glob("*.yml")]):
        loaded = load_task(file)
        if loaded.name in tasks:
            raise TaskDefinitionError(
                f"task name {loaded.name!r} is also defined in {origins[loaded.name]}", source=str(file)
            )
        tasks[loaded.name], origins[loaded.name] = loaded, file
    return tasks


def task_from_mapping(
    data: Any,
    *,
    source: str = "<mapping>",
    base_dir: Path | None = None,
    lines: _Lines | None = None,
) -> Task[..., Any]:
    """Build a task from an already-parsed YAML mapping."""
    lines = lines or _Lines(None)

    def fail(message: str, *path: Any) -> TaskDefinitionError:
        return TaskDefinitionError(message, source=source, line=lines.of(*path))

    if not isinstance(data, Mapping):
        raise fail("a task file must be a mapping of keys such as name, inputs, output, template")
    unknown = sorted((key for key in data if key not in _KEYS), key=str)
    if unknown:
        raise fail(f"unknown key {unknown[0]!r}; allowed keys: {', '.join(sorted(_KEYS))}", unknown[0])
    for key in ("name", "output"):
        if key not in data:
            raise fail(f"missing required key {key!r}")
    if "template" in data and "template_file" in data:
        raise fail("give either template or template_file, not both", "template_file")
    name = data["name"]
    if not isinstance(name, str):
        raise fail("name must be a string", "name")
    camel = camel_case(name, suffix="")

    inputs = data.get("inputs") or {}
    if not isinstance(inputs, Mapping):
        raise fail("inputs must be a mapping of input name to type", "inputs")
    for field in inputs:
        problem = check_input_name(field)
        if problem:
            raise fail(f"inputs: {problem}", "inputs", field)
    fields = {
        str(field): _input_field(spec, f"{camel}{camel_case(str(field), suffix='')}", fail, ("inputs", field))
        for field, spec in inputs.items()
    }
    input_model = create_model(  # type: ignore[call-overload]
        f"{camel}Input", __config__=ConfigDict(extra="forbid"), **fields
    )

    output = data["output"]
    output_type: Any = None
    if isinstance(output, str):
        try:
            output_type = parse_type(output, where="output")
        except TaskDefinitionError as exc:
            raise fail(str(exc), "output") from None
    elif not isinstance(output, (Mapping, bool)):
        raise fail("output must be a JSON Schema (a mapping) or a type name such as str", "output")

    template_file = data.get("template_file")
    template_line = _block_offset(lines, "template") if "template" in data else 0
    search_path: list[Path] = []
    if base_dir is not None:
        search_path = [base_dir, base_dir.parent / "prompts"]
    options: dict[str, Any] = {k: data[k] for k in YAML_OPTIONS if k in data}
    if "checks" in data:
        options["checks"] = data["checks"]
        options["checks_line"] = _block_offset(lines, "checks")
    if "version" in data:
        options["version"] = str(data["version"])
    if "eval" in data:  # how `promptask eval` scores it: read by promptask.evaluate
        options["metrics"] = data["eval"]
    try:
        spec = TaskSpec(
            name=name,
            input_model=input_model,
            output_type=output_type,
            template=data.get("template"),
            template_file=template_file,
            examples=data.get("examples") or (),
            output_schema=output if not isinstance(output, str) else None,
            search_path=search_path,
            source=source,
            template_line=template_line,
            **options,
        )
        return Task.from_spec(spec)
    except TaskDefinitionError as exc:
        if exc.line is not None:
            raise
        raise fail(exc.message, *exc.path) from None


def _block_offset(lines: _Lines, key: str) -> int:
    """How many lines before a key's text starts: error lines inside it then point into the file."""
    line = lines.of(key) or 1
    return line if (key,) in lines.block_scalars else line - 1


def _input_field(spec: Any, model_name: str, fail: Any, path: tuple[Any, ...]) -> tuple[Any, Any]:
    """One input: a simple type name, or a JSON Schema (with optional default and description)."""
    where = ".".join(str(p) for p in path)
    try:
        if isinstance(spec, str):
            return parse_type(spec, where=where), ...
        if not isinstance(spec, Mapping):
            raise TaskDefinitionError(f"{where}: give a type name such as str, or a JSON Schema")
        kind = spec.get("type")
        if isinstance(kind, str) and kind not in _JSON_TYPE_NAMES:
            tp = parse_type(kind, where=where)  # `{type: int, default: 3}` reads naturally too
        else:
            check_schema({k: v for k, v in spec.items() if k != "default"}, path)
            tp = type_from_schema(spec, name=model_name, where=where)
    except TaskDefinitionError as exc:
        raise fail(exc.message if exc.path else str(exc), *(exc.path or path)) from None
    default = spec.get("default", ...)
    problem = check_default(tp, default) if default is not ... else None
    if problem:
        raise fail(f"{where}: {problem}", *path, "default")
    return tp, Field(default, description=spec.get("description"))
