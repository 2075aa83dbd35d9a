"""A small application: triage product reviews with typed built-in tasks and a task of its own.

Run it with:  python examples/review_app.py
It uses the default backend (llama.cpp with the bundled SmolLM2 model); no network needed.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

import promptask


class Reply(BaseModel):
    """A short answer to a customer."""

    tone: Literal["thankful", "apologetic", "informative"]
    message: str = Field(max_length=160)


@promptask.task(
    system="You write short, polite replies to customer reviews for an online shop.",
    template="Review ({{ sentiment }}): {{ review }}\nWrite a one-sentence reply.",
    examples=[
        {
            "input": {"review": "The blender broke after a week.", "sentiment": "negative"},
            "output": {"tone": "apologetic", "message": "We are sorry about your blender; we will replace it."},
        }
    ],
    max_tokens=80,
)
def reply_to(review: str, sentiment: str) -> Reply:
    """Draft a reply to a customer review."""


REVIEWS = [
    "Fast delivery and the headphones sound great.",
    "The charger stopped working after two days.",
]


def main() -> None:
    for review in REVIEWS:
        mood = promptask.tasks.sentiment(text=review)  # typed: Sentiment
        topics = promptask.tasks.extract_keywords(text=review, count=2)  # typed: Keywords
        reply = reply_to(review=review, sentiment=mood.label)  # typed: Reply
        print(f"{review}\n  sentiment: {mood.label}\n  keywords: {', '.join(topics.keywords)}")
        print(f"  reply ({reply.tone}): {reply.message}\n")


if __name__ == "__main__":
    main()
