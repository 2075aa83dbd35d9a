"""Structured output on realistic JSON Schemas, on the default model (SmolLM2-135M, CPU).

Each schema in ``bench/schemas/corpus/`` (the reported set) or ``bench/schemas/tune/``
(the set the decoding defaults were chosen on) becomes a task that asks for
"a realistic example of <title>: <description>", with ``max_tokens`` 384.
Prints one JSON object:

* ``accepted``: schemas that load as tasks, out of those the constraint engine
  compiles (``compiles``);
* ``valid``: outputs returned as valid, each re-checked by the reference
  validator (``jsonschema``); ``broken``: returned outputs that fail that check
  (the goal is 0);
* ``failures``: why the others failed (the last attempt's error, by kind);
* ``mean_s`` per schema, and the attempts used.

``--tickets`` runs the support-ticket case instead: a decorated task returning
``Ticket(team, urgent, summary: str)`` over 20 short messages, ``max_tokens`` 96.
``--variant`` chooses the decoding settings compared when the defaults were set:
``defaults`` (the task defaults), ``greedy`` (greedy retries, no penalty),
``retry-temperature`` (retries at temperature 0.7 with fresh seeds),
``penalty`` (repeat_penalty 1.1), ``both``.

    python bench/schemas.py [--set corpus|tune] [--variant NAME] [--retries N] [--limit N]
    python bench/schemas.py --tickets [--set tune|test] [--variant NAME] [--retries 0]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any, Literal

import jsonschema
from pydantic import BaseModel

import promptask
from promptask.backends.llamacpp import LlamaCppBackend
from promptask.schemas.decoding import decoding_schema
from promptask.tasks.loader import task_from_mapping
from promptask.tasks.result import to_jsonable

HERE = Path(__file__).resolve().parent / "schemas"
VARIANTS: dict[str, dict[str, Any]] = {
    "defaults": {},
    "greedy": {"retry_temperature": None, "repeat_penalty": 1.0},
    "retry-temperature": {"retry_temperature": 0.7, "repeat_penalty": 1.0},
    "penalty": {"retry_temperature": None, "repeat_penalty": 1.1},
    "both": {"retry_temperature": 0.7, "repeat_penalty": 1.1},
}


def kind_of(error: str) -> str:
    if error.startswith("repetition loop"):
        return "repetition loop"
    if error.startswith("output truncated"):
        return "truncated at max_tokens"
    if "is not valid JSON" in error or "no valid JSON" in error:
        return "not JSON"
    return "schema: " + error.split(": ", 1)[-1].split(" ")[-1][:40] if ": " in error else "schema"


def reference(schema: Any) -> Any:
    cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
    return cls(schema, format_checker=cls.FORMAT_CHECKER)


def compiles(backend: LlamaCppBackend, schema: Any) -> bool:
    try:
        backend.model.constraints.start(decoding_schema(schema))
    except promptask.BackendError:
        return False
    return True


def run_schemas(args: argparse.Namespace, backend: LlamaCppBackend) -> dict[str, Any]:
    files = sorted((HERE / args.set).glob("*.json"))[: args.limit or None]
    counts: Counter[str] = Counter()
    failures: Counter[str] = Counter()
    seconds: list[float] = []
    attempts: list[int] = []
    details = []
    for file in files:
        schema = json.loads(file.read_text())
        counts["compiles"] += compiles(backend, schema)
        try:
            task = task_from_mapping({"name": "example", "inputs": {"title": "str", "description": "str"},
                                      "output": schema, "max_tokens": 384, "retries": args.retries,
                                      "template": "Write a realistic example of {{ title }}: {{ description }}",
                                      **VARIANTS[args.variant]})  # fmt: skip
        except promptask.TaskDefinitionError as exc:
            failures["refused at definition"] += 1
            details.append({"schema": file.name, "refused": str(exc)})
            continue
        counts["accepted"] += 1
        started = time.perf_counter()
        try:
            result = task.run(title=schema.get("title", file.stem), description=schema.get("description", ""),
                              backend=backend, cache=False)  # fmt: skip
        except promptask.OutputValidationError as exc:
            error = exc.attempts[-1].error or ""
            failures[kind_of(error)] += 1
            attempts.append(len(exc.attempts))
            details.append({"schema": file.name, "error": error[:200]})
        except promptask.BackendError as exc:
            failures["backend: " + str(exc)[:60]] += 1
            details.append({"schema": file.name, "backend_error": str(exc)[:200]})
        else:
            output = to_jsonable(result.output)
            ok = reference(schema).is_valid(output)
            counts["valid" if ok else "broken"] += 1
            attempts.append(len(result.attempts))
            details.append({"schema": file.name, "valid": ok, "attempts": len(result.attempts)})
        seconds.append(time.perf_counter() - started)
        print(f"{file.name}: {details[-1]}", file=sys.stderr)
    return {
        "set": args.set,
        "variant": args.variant,
        "schemas": len(files),
        "compiles": counts["compiles"],
        "accepted": counts["accepted"],
        "valid": counts["valid"],
        "valid_share": round(counts["valid"] / len(files), 3) if files else 0.0,
        "broken": counts["broken"],
        "failures": dict(failures.most_common()),
        "mean_s": round(statistics.mean(seconds), 2) if seconds else 0.0,
        "mean_attempts": round(statistics.mean(attempts), 2) if attempts else 0.0,
        "details": details if args.details else None,
    }


class Ticket(BaseModel):
    team: Literal["web", "billing", "shipping"]
    urgent: bool
    summary: str


def run_tickets(args: argparse.Namespace, backend: LlamaCppBackend) -> dict[str, Any]:
    messages = json.loads((HERE / "tickets.json").read_text())[args.set]

    @promptask.task(max_tokens=96, retries=args.retries, **VARIANTS[args.variant])
    def triage(message: str) -> Ticket:
        """Route a customer message to a team, say whether it is urgent, and summarise it."""

    outcomes: Counter[str] = Counter()
    for message in messages:
        try:
            triage.run(message, backend=backend, cache=False)
            outcomes["valid"] += 1
        except promptask.OutputValidationError as exc:
            outcomes[kind_of(exc.attempts[-1].error or "")] += 1
    return {"case": "tickets", "set": args.set, "variant": args.variant, "retries": args.retries,
            "messages": len(messages), "outcomes": dict(outcomes.most_common())}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--set", default=None, help="corpus or tune (schemas); tune or test (tickets)")
    parser.add_argument("--variant", default="defaults", choices=sorted(VARIANTS))
    parser.add_argument("--retries", type=int, default=2)
    parser.add_argument("--limit", type=int, default=0)
    parser.add_argument("--tickets", action="store_true")
    parser.add_argument("--details", action="store_true", help="include one record per schema")
    args = parser.parse_args()
    args.set = args.set or ("test" if args.tickets else "corpus")
    backend = LlamaCppBackend()
    report = run_tickets(args, backend) if args.tickets else run_schemas(args, backend)
    print(json.dumps({k: v for k, v in report.items() if v is not None}, indent=1))


if __name__ == "__main__":
    main()
