"""The built-in tasks, typed.

Each built-in is a YAML file under ``promptask/tasks/builtin/`` with its
templates under ``promptask/prompts/builtin/``; this module gives each one a
typed signature and a pydantic output class, so editors and type checkers
know what ``promptask.tasks.<name>`` takes and returns.  (A test keeps each
class's schema equal to the YAML file's.)

>>> import promptask
>>> backend = promptask.ScriptedBackend([{"labels": ["sport"]}])
>>> promptask.tasks.classify("A late goal won the cup.", ["sport", "politics"], backend=backend, cache=False).label
'sport'
"""

# The functions below are signatures: their YAML tasks answer, their bodies never run.
# mypy: disable-error-code="empty-body"

from __future__ import annotations

import typing
from collections.abc import Callable
from typing import Literal, ParamSpec, TypeVar, cast

from pydantic import BaseModel, ConfigDict, Field

from promptask.tasks.catalog import BUILTIN_TASKS
from promptask.tasks.loader import load_task
from promptask.tasks.task import Task

__all__ = [
    "Answer",
    "Classification",
    "Entities",
    "Entity",
    "Generated",
    "Keywords",
    "Sentiment",
    "Summary",
    "Translation",
    "answer_question",
    "classify",
    "extract_entities",
    "extract_keywords",
    "generate",
    "sentiment",
    "summarize",
    "translate",
]

P = ParamSpec("P")
R = TypeVar("R")

_CLOSED = ConfigDict(extra="forbid")


class Sentiment(BaseModel):
    model_config = _CLOSED
    label: Literal["positive", "negative", "neutral"]


class Classification(BaseModel):
    model_config = _CLOSED
    labels: list[str] = Field(min_length=1, json_schema_extra={"uniqueItems": True})

    @property
    def label(self) -> str:
        """The (first) label chosen."""
        return self.labels[0]


class Summary(BaseModel):
    model_config = _CLOSED
    summary: str = Field(min_length=1)


class Entity(BaseModel):
    model_config = _CLOSED
    text: str
    type: str
    start: int = Field(ge=0)
    end: int = Field(ge=0)


class Entities(BaseModel):
    model_config = _CLOSED
    entities: list[Entity] = Field(max_length=10)


class Answer(BaseModel):
    model_config = _CLOSED
    answer: str = Field(min_length=1, description='A span copied from the context, or "unanswerable".')

    @property
    def answerable(self) -> bool:
        return self.answer != "unanswerable"


class Translation(BaseModel):
    model_config = _CLOSED
    translation: str = Field(min_length=1)


class Keywords(BaseModel):
    model_config = _CLOSED
    keywords: list[str] = Field(min_length=1)


class Generated(BaseModel):
    model_config = _CLOSED
    text: str = Field(min_length=1)


def _builtin(signature: Callable[P, R]) -> Task[P, R]:
    """The YAML task of the same name, answering in the signature's return type."""
    task = load_task(BUILTIN_TASKS / f"{signature.__name__}.yaml")
    output = typing.get_type_hints(signature)["return"]
    return cast("Task[P, R]", task.with_options(output_type=output))


@_builtin
def sentiment(text: str) -> Sentiment:
    """Classify the sentiment of a text as positive, negative or neutral."""


@_builtin
def classify(text: str, labels: list[str], multi_label: bool = False) -> Classification:
    """Classify a text into one of the labels given (or several, with multi_label)."""


@_builtin
def summarize(text: str, max_words: int = 25) -> Summary:
    """Summarize a text in one or two sentences, within a word limit."""


@_builtin
def extract_entities(text: str, entity_types: list[str] = ["PERSON", "ORGANIZATION", "LOCATION"]) -> Entities:  # noqa: B006
    """Find named entities in a text, with their type and character offsets."""


@_builtin
def answer_question(question: str, context: str) -> Answer:
    """Answer a question with a span copied from a context, or say it is unanswerable."""


@_builtin
def translate(text: str, target_language: str, source_language: str = "") -> Translation:
    """Translate a text into a target language."""


@_builtin
def extract_keywords(text: str, count: int = 5) -> Keywords:
    """Pick the keywords of a text, each copied from the text."""


@_builtin
def generate(instruction: str, max_words: int | None = None) -> Generated:
    """Follow an instruction and write free text, optionally within a word limit."""
