"""The shape of the code: no import cycles, one declaration of every task option, a typed wheel."""

from __future__ import annotations

import ast
import dataclasses
import subprocess
import sys
import typing
import zipfile
from pathlib import Path

import promptask
from promptask.tasks.loader import _KEYS
from promptask.tasks.spec import YAML_OPTIONS, TaskOptions, TaskSpec

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "promptask"


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path, modules: set[str]) -> tuple[set[str], list[str]]:
    """Modules of the package that ``path`` imports at module level (TYPE_CHECKING included), and local ones."""
    tree = ast.parse(path.read_text())
    top: set[str] = set()
    local: list[str] = []

    def targets(node: ast.Import | ast.ImportFrom) -> set[str]:
        if isinstance(node, ast.Import):
            return {alias.name for alias in node.names if alias.name in modules}
        base = node.module or ""
        found = {f"{base}.{alias.name}" for alias in node.names if f"{base}.{alias.name}" in modules}
        return found or ({base} if base in modules else set())

    def walk(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                names = targets(child)
                if in_function and names:
                    local.append(f"{module_name(path)}:{child.lineno} imports {', '.join(sorted(names))}")
                top.update(() if in_function else names)
            walk(child, in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)))

    walk(tree, False)
    return top, local


def test_no_module_imports_a_module_that_imports_it() -> None:
    files = sorted(PACKAGE.rglob("*.py"))
    modules = {module_name(f) for f in files}
    graph: dict[str, set[str]] = {}
    local: list[str] = []
    for file in files:
        graph[module_name(file)], found = imports(file, modules)
        local += found
    assert local == [], "imports inside functions (to dodge a cycle?)"

    cycles: list[list[str]] = []
    state: dict[str, int] = {}

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for target in sorted(graph.get(node, ())):
            if state.get(target) == 1:
                cycles.append([*stack[stack.index(target) :], target])
            elif target not in state:
                visit(target, [*stack, target])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    assert cycles == []


def test_every_task_option_is_declared_once_and_typed_alike_for_the_decorator() -> None:
    spec_fields = {f.name: f for f in dataclasses.fields(TaskSpec)}
    construction = {"name", "input_model", "output_type", "output_schema", "search_path", "source",
                    "template_line", "checks_line"}  # fmt: skip
    options = typing.get_type_hints(TaskOptions)
    assert set(options) == set(spec_fields) - construction
    spec_types = typing.get_type_hints(TaskSpec)
    for name, hint in options.items():
        assert hint == spec_types[name], name
    doc = promptask.Task.__doc__ or ""
    assert [f for f in spec_fields if f not in doc] == [], "options missing from Task's docstring"
    assert set(YAML_OPTIONS) <= _KEYS


def test_the_built_wheel_carries_its_type_marker_templates_and_task_files(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation", "-w", str(tmp_path),
         str(ROOT)],
        check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    (wheel,) = tmp_path.glob("promptask-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "promptask/py.typed" in names
    for folder, pattern in ((PACKAGE / "tasks" / "builtin", "*.yaml"), (PACKAGE / "prompts" / "builtin", "*.j2")):
        shipped = {str(p.relative_to(ROOT)) for p in folder.glob(pattern)}
        assert shipped and shipped <= names
