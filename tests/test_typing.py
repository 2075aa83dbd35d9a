"""User code that calls promptask type-checks under mypy --strict, and mistakes in it are caught."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# A task stub's body never runs; mypy --strict reports such bodies unless told they are meant to be empty.
STUBS_OK = '# mypy: disable-error-code="empty-body"\n'

USER_CODE = STUBS_OK + textwrap.dedent(
    """
    from typing import Literal

    from pydantic import BaseModel

    import promptask
    from promptask import ScriptedBackend, TaskResult
    from promptask.tasks.library import Classification, Sentiment


    class Ticket(BaseModel):
        team: Literal["web", "billing"]
        urgent: bool


    @promptask.task
    def sentiment(text: str) -> Literal["positive", "negative", "neutral"]:
        '''Classify the sentiment of the text.'''


    @promptask.task(
        template_file="triage.j2",
        description="Route a ticket.",
        checks="{% if output.team == 'web' and not output.urgent %}web tickets are urgent{% endif %}",
        retries=1,
        max_tokens=64,
        validators=[lambda output, inputs: None],
    )
    def triage(ticket: str, teams: list[str] = ["web", "billing"]) -> Ticket: ...


    backend = ScriptedBackend(['{"answer": "positive"}'])
    label: Literal["positive", "negative", "neutral"] = sentiment("great")
    with_options: str = sentiment("great", backend=backend, cache=False)
    cached_only: str = sentiment(text="great", cache="refresh")
    by_uri: str = sentiment("great", backend="scripted:{}")
    ticket: Ticket = triage("The site is down")
    results: list[TaskResult[Ticket]] = triage.map([{"ticket": "x"}], batch_size=8, concurrency=2)
    mixed = triage.map([{"ticket": "x"}], batch_size=8, on_error="return")
    one: TaskResult[Ticket] = triage.run("x", backend=backend)
    classified: Classification = promptask.tasks.classify("A goal.", ["sport", "politics"], backend=backend)
    felt: Sentiment = promptask.tasks.sentiment("great", cache=False)
    first: str = classified.label
    """
)

MISTAKES = STUBS_OK + textwrap.dedent(
    """
    import promptask

    @promptask.task
    def sentiment(text: str) -> str: ...

    sentiment(3)  # wrong input type
    sentiment("great", backnd="b")  # misspelt option
    wrong: int = sentiment("great", backend="scripted:{}")  # the output type holds with call options
    promptask.task(retries="two")  # wrong option type
    promptask.tasks.summarize(text="x", max_words="many")  # a built-in's input type
    """
)


def test_user_code_type_checks_and_its_mistakes_are_caught(tmp_path: Path) -> None:
    (tmp_path / "user_code.py").write_text(USER_CODE)
    (tmp_path / "mistakes.py").write_text(MISTAKES)
    out = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", str(tmp_path / "user_code.py"), str(tmp_path / "mistakes.py")],
        capture_output=True, text=True, cwd=ROOT, timeout=300,
    )  # fmt: skip
    report = out.stdout + out.stderr
    errors = [line for line in report.splitlines() if ": error:" in line]
    assert not [line for line in errors if "user_code.py" in line], report
    flagged = {int(line.split(":")[1]) for line in errors if "mistakes.py" in line}
    expected = {n for n, line in enumerate(MISTAKES.splitlines(), 1) if "  # " in line}
    assert flagged == expected, report
    assert 'Incompatible types in assignment (expression has type "str", variable has type "int")' in report
