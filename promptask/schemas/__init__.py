"""JSON Schema helpers: example instances (and, alongside, the schema work tasks rely on)."""

from promptask.schemas.examples import example_for

__all__ = ["example_for"]
