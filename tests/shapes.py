"""Output shapes every local backend must produce valid answers for (shared by the backend tests)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


class Person(BaseModel):
    name: str = Field(max_length=24)
    born: int = Field(ge=1000, le=2100)


class Team(BaseModel):
    members: list[Person] = Field(min_length=1, max_length=2)


class Book(BaseModel):
    title: str = Field(max_length=30)
    year: int | None = Field(None, ge=0, le=2100)
    subtitle: str | None = Field(None, max_length=20)


class Score(BaseModel):
    score: float = Field(ge=0, le=1)


class Headline(BaseModel):
    headline: str = Field(max_length=25)


CASES: list[tuple[str, object, str]] = [
    ("enum", Literal["positive", "negative", "neutral"], "Sentiment of: 'What a lovely day!'"),
    ("nested_object", Person, "Who wrote the first computer program, and when was she born?"),
    ("array_of_objects", Team, "Name two famous scientists and their birth years."),
    ("number_range", Score, "How sure are you that the sun is hot? 0 to 1."),
    ("string_max_length", Headline, "Write a headline about a cat rescued from a tree."),
    ("optional_fields", Book, "A famous novel by Jane Austen."),
]
