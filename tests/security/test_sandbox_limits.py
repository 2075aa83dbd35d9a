"""The template sandbox: escapes stay refused, inputs stay data, and every bomb ends as a TemplateError
within a bounded time and memory (checked in a child process with hard limits)."""

from __future__ import annotations

import json
import subprocess
import textwrap
from pathlib import Path
from typing import Any

import pytest
from bounded import run_bounded

import promptask
from promptask import PromptaskError, ScriptedBackend, TemplateError
from promptask.prompts import PromptTemplate
from promptask.prompts.environment import MAX_RENDER_SECONDS

ESCAPES = [
    "{{ ''.__class__.__mro__ }}",
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ ().__class__.__bases__[0].__subclasses__() }}",
    "{{ [].__class__.__base__.__subclasses__() }}",
    "{{ ''|attr('__class__') }}",
    "{{ (''|attr('__class__'))|attr('__mro__') }}",
    "{{ ''['__class__'] }}",
    "{{ cycler.__init__.__globals__ }}",
    "{{ joiner.__init__.__globals__ }}",
    "{{ namespace.__init__.__globals__ }}",
    "{{ lipsum.__globals__ }}",
    "{{ range.__self__ }}",
    "{{ self.__init__.__globals__ }}",
    "{{ self._TemplateReference__context }}",
    "{{ config }}",
    "{{ request }}",
    "{{ getattr }}",
    "{{ __builtins__ }}",
    "{{ ''.format.__globals__ }}",
    "{{ '{0.__class__.__mro__}'.format('') }}",
    "{{ '{0.__globals__}'.format(cycler.__init__) }}",
    "{{ ''.join.__self__.__class__ }}",
    "{{ (1).__class__.__subclasses__() }}",
    "{% for x in [1] %}{{ loop.__class__.__init__.__globals__ }}{% endfor %}",
    "{{ [].append(1) }}",
    "{{ {}.update(a=1) }}",
    "{{ {}.setdefault('a', 1) }}",
    "{% set d = {} %}{{ d.__setitem__('a', 1) }}",
    "{{ [].pop() }}",
    "{% include '/etc/passwd' %}",
    "{% include '../../../../etc/passwd' %}",
    "{% extends '/etc/hostname' %}",
    "{% import 'os' as os %}",
    "{{ 'x'.__reduce_ex__(2) }}",
    "{{ [1]|map('attr', '__class__')|list }}",
    "{{ ''.encode.__self__.__class__ }}",
    "{% macro m() %}{% endmacro %}{{ m.__globals__ }}",
    "{% macro m() %}{% endmacro %}{{ m._func.__globals__ }}",
    "{{ namespace().__class__.__init__.__globals__ }}",
    "{{ dict.__subclasses__() }}",
    "{{ ''.__class__.__base__.__subclasses__()[0] }}",
    "{{ '%s' % ''.__class__.__mro__ }}",
    "{{ ''|format.__globals__ }}",
    "{{ x.__class__ if x is defined else ''.__doc__.__class__.__mro__ }}",
    "{{ lipsum(10) }}",
]


@pytest.mark.parametrize("payload", ESCAPES)
def test_escapes_stay_refused(payload: str) -> None:
    try:
        text = PromptTemplate.from_string(payload).render_text({"x": "data"})
    except PromptaskError as exc:
        message = str(exc)
        assert "Traceback" not in message
        return
    # A few render harmlessly (the sandbox answers Undefined): nothing of Python's internals shows.
    assert not any(leak in text for leak in ("<class", "<function", "<module", "<built-in", "<bound", "__")), text


def test_inputs_render_as_data() -> None:
    hostile = "{{ ''.__class__ }}{% for i in range(9**9) %}x{% endfor %}"
    text = PromptTemplate.from_string("Text: {{ text }}").render_text({"text": hostile})
    assert text == f"Text: {hostile}"


# Each bomb from the report, with what it used to do.
BOMBS = {
    "concat doubling": "{% set s = 'a' * 999999 %}" + "{% set s = s ~ s %}" * 8 + "{{ s|length }}",
    "plus doubling": "{% set s = 'a' * 999999 %}" + "{% set s = s + s %}" * 8 + "{{ s|length }}",
    "join of repeats": "{{ (['a' * 999999] * 300)|join|length }}",
    "str.join of repeats": "{{ ''.join(['a' * 999999] * 300)|length }}",
    "replace filter": "{{ ('a' * 300)|replace('a', 'a' * 999999)|length }}",
    "replace method": "{{ ('a' * 300).replace('a', 'a' * 999999)|length }}",
    "wordwrap": "{{ ('a ' * 1000)|wordwrap(2, wrapstring='b' * 999999)|length }}",
    "translate": "{{ ('a' * 999).translate({97: 'b' * 99999})|length }}",
    "sum of lists": "{{ ([['a'] * 999999] * 300)|sum(start=[])|length }}",
    "list doubled in a namespace": (
        "{% set ns = namespace(l=[1]) %}{% for i in range(40) %}{% set ns.l = ns.l + ns.l %}{% endfor %}"
        "{{ ns.l|length }}"
    ),
    "list repeated in a namespace": (
        "{% set ns = namespace(l=[1]) %}{% for i in range(40) %}{% set ns.l = ns.l * 2 %}{% endfor %}"
    ),
    "nested ranges": "{% for i in range(999999) %}{% for j in range(999999) %}{% endfor %}{% endfor %}",
    "nested loops without a call": (
        "{% set r = range(999999) %}{% for i in r %}{% for j in r %}{% endfor %}{% endfor %}"
    ),
    "self-calling macro": "{% macro m(n) %}{{ m(n + 1) }}{% endmacro %}{{ m(0) }}",
    "macro body of repeats": (
        "{% macro m() %}{% for i in range(999999) %}{{ 'a' * 999 }}{% endfor %}{% endmacro %}{{ m()|length }}"
    ),
    "block set of constant text": (
        "{% set x %}{% for i in range(999999) %}" + "a" * 200 + "{% endfor %}{% endset %}{{ x|length }}"
    ),
    "many in-cap steps": "{{ (['a' * 999999] * 999)|map('upper')|list|length }}",
    "recursive loop": "{% for x in range(100) recursive %}{{ loop(range(100)) }}{% endfor %}",
    "recursive loop kept shallow": (
        "{% for x in range(100) recursive %}{% if loop.depth < 60 %}{{ loop(range(100)) }}{% endif %}{% endfor %}"
    ),
    "bytes repeat": "{{ ('a' * 999999).encode() * 999 }}",
    "padding": "{{ 'a'.center(10 ** 9) }}",
    "power": "{{ 10 ** 99999999 }}",
    "format width": "{{ '%999999999s' % 'a' }}",
    "self-include by a longer name": "{% include 'loop.j2' %}",
}

CHILD = """
import json, sys, time, tempfile, pathlib
from promptask.errors import TemplateError
from promptask.prompts import PromptTemplate
folder = pathlib.Path(tempfile.mkdtemp())
(folder / "loop.j2").write_text("x{% include 'loop2.j2' %}")
(folder / "loop2.j2").write_text("y{% include 'loop.j2' %}")
results = {}
for name, source in json.loads(sys.argv[1] if len(sys.argv) > 1 else BOMBS).items():
    started = time.monotonic()
    try:
        out = PromptTemplate.from_string(source, search_path=[folder]).render_text({})
        outcome = f"rendered {len(out)} characters"
    except TemplateError as exc:
        outcome = "TemplateError: " + str(exc)
    except BaseException as exc:
        outcome = f"{type(exc).__name__}: {exc}"[:300]
    results[name] = [outcome, time.monotonic() - started]
print(json.dumps(results))
"""


@pytest.fixture(scope="module")
def bomb_results() -> dict[str, Any]:
    code = f"BOMBS = {json.dumps(json.dumps(BOMBS))}\n{CHILD}"
    # Every bomb in one child: its limits bound them all together.  A child past its time limit fails
    # every bomb test once, rather than being started again for each.
    try:
        results: dict[str, Any] = run_bounded(code, seconds=120)
    except subprocess.TimeoutExpired:
        return {name: ["the child process ran past its 120 s limit", 120.0] for name in BOMBS}
    return results


@pytest.mark.parametrize("name", sorted(BOMBS))
def test_bombs_end_as_template_errors_in_bounded_time_and_memory(bomb_results: dict[str, Any], name: str) -> None:
    outcome, seconds = bomb_results[name]
    assert outcome.startswith("TemplateError: "), outcome
    assert seconds < MAX_RENDER_SECONDS + 1.5


def test_eval_values_are_bounded(tmp_path: Path) -> None:
    task = tmp_path / "t.yaml"
    task.write_text(
        textwrap.dedent("""
        name: t
        inputs: {text: str}
        output:
          type: object
          properties:
            label: {type: string, enum: {$eval: "['a' * 999999] * 300"}}
          required: [label]
        template: "{{ text }}"
        """)
    )
    code = f"""
import json, promptask
from promptask import ScriptedBackend, TemplateError
task = promptask.load_task({str(task)!r})
try:
    task.run(text="x", backend=ScriptedBackend([{{"label": "a"}}]), cache=False)
    print(json.dumps("ran"))
except TemplateError as exc:
    print(json.dumps("TemplateError: " + str(exc)))
"""
    outcome = run_bounded(code, seconds=60)
    assert outcome.startswith("TemplateError: ") and "$eval" in outcome


def test_eval_in_the_cap_still_works() -> None:
    task = promptask.tasks.classify
    backend = ScriptedBackend([{"labels": ["sport"]}])
    result = task.run("A late goal won the cup.", ["sport", "politics"], backend=backend)
    assert result.output.label == "sport"


def test_a_template_that_extends_or_includes_its_own_name_reaches_the_next_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "prompts").mkdir()
    (tmp_path / "prompts" / "sentiment.j2").write_text('{% extends "sentiment.j2" %}')
    (tmp_path / "prompts" / "framed.j2").write_text('Framed. {% include "framed.j2" %}')
    (tmp_path / "tasks").mkdir()
    builtin = promptask.tasks.sentiment.render(text="nice")

    # The built-in task reads its own template first: the file in ./prompts does not replace it.
    (tmp_path / "prompts" / "sentiment.j2").write_text("REPLACED {{ text }}")
    assert promptask.load_task(promptask.tasks.BUILTIN_TASKS / "sentiment.yaml").render(text="nice") == builtin
    (tmp_path / "prompts" / "sentiment.j2").write_text('{% extends "sentiment.j2" %}')

    mine = tmp_path / "tasks" / "mine.yaml"
    mine.write_text("name: mine\ninputs: {text: str}\noutput: str\ntemplate_file: sentiment.j2\n")
    user = promptask.load_task(mine).render(text="nice")  # used to recurse until RecursionError
    assert user[-1].content == builtin[-1].content == "Text: nice"

    (tmp_path / "framed.j2").write_text("outer {{ text }}")  # after ./prompts on no path: never found
    framed = tmp_path / "tasks" / "framed.yaml"
    framed.write_text("name: framed\ninputs: {text: str}\noutput: str\ntemplate_file: framed.j2\n")
    with pytest.raises(TemplateError, match=r"framed\.j2.* not found on the search path"):
        promptask.load_task(framed).render(text="nice")
