"""What an evaluation found: per-variant metrics with intervals, paired comparisons and per-item records."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from dataclasses import field as dataclass_field
from pathlib import Path
from typing import Any

from promptask.errors import UserError
from promptask.evaluate.calibrate import Calibration, calibration_lines
from promptask.evaluate.html import render_html

__all__ = ["Comparison", "EvalReport", "ItemRecord", "MetricValue", "VariantReport", "write_whole"]


@dataclass(frozen=True)
class MetricValue:
    """A metric's point estimate and its seeded bootstrap 95% interval, over ``n`` items."""

    value: float
    low: float
    high: float
    n: int
    scale: str = "0-1"

    def text(self) -> str:
        digits = 1 if self.scale == "0-100" else 3
        return f"{self.value:.{digits}f} [{self.low:.{digits}f}, {self.high:.{digits}f}]"


@dataclass(frozen=True)
class Comparison:
    """``variant - baseline`` on one metric, over the items both were scored on, with a paired bootstrap interval."""

    metric: str
    baseline: str
    variant: str
    difference: float
    low: float
    high: float
    n: int
    scale: str = "0-1"

    def line(self) -> str:
        """One plain line, e.g. ``zero-shot - sentiment: accuracy +0.070 [+0.020, +0.120]``."""
        digits = 1 if self.scale == "0-100" else 3
        verdict = "better" if self.low > 0 else "worse" if self.high < 0 else "no clear difference"
        return (
            f"{self.variant} - {self.baseline}: {self.metric} {self.difference:+.{digits}f} "
            f"[{self.low:+.{digits}f}, {self.high:+.{digits}f}] ({verdict}, {self.n} paired items)"
        )


@dataclass(frozen=True)
class ItemRecord:
    """One item under one variant: what went in, what came out and how it scored.

    ``correct`` is the item judged right or wrong by the primary metric, as calibration counts it
    (``None`` where that metric judges no single item; see :mod:`promptask.evaluate.calibrate`).
    """

    variant: str
    id: Any
    line: int
    inputs: dict[str, Any]
    reference: Any
    output: Any
    error: str | None
    scores: dict[str, float | None]
    failed: bool
    attempts: int
    latency_s: float
    cached: bool
    tokens: int
    confidence: float | None = None
    correct: bool | None = None


@dataclass(frozen=True)
class VariantReport:
    """One variant (a task on a backend): its metrics, valid-output rate, latency, tokens and calibration.

    ``calibration`` is ``None`` where the primary metric judges no single item right or wrong; its figures
    are ``None`` where no item had a confidence.
    """

    name: str
    task: str
    backend: str
    main: bool
    items: int
    valid: int
    cached: int
    mean_latency_s: float
    prompt_tokens: int
    completion_tokens: int
    metrics: dict[str, MetricValue]
    labels: dict[str, Any] | None = None
    calibration: Calibration | None = None

    @property
    def valid_rate(self) -> float:
        return self.valid / self.items if self.items else 0.0


@dataclass
class EvalReport:
    """The result of :func:`promptask.evaluate`.

    ``variants[0]`` is the task under evaluation (on the first backend); the
    others are the variants and backends it is compared with, on the same rows.
    Write it with :meth:`write_json` and :meth:`write_html`; check it with
    :meth:`below`, which is what ``--min`` and :mod:`promptask.testing` use.
    """

    task: str
    data: str | None
    field: str | None
    reference: str
    metrics: list[str]
    metric_descriptions: dict[str, str]
    variants: list[VariantReport]
    comparisons: list[Comparison]
    records: list[ItemRecord]
    problems: list[str] = dataclass_field(default_factory=list)
    skipped: int = 0
    seed: int = 0
    resamples: int = 1000
    seconds: float = 0.0

    @property
    def main(self) -> VariantReport:
        return self.variants[0]

    def value(self, metric: str, variant: str | None = None) -> float:
        """A metric's point estimate (``valid`` is the valid-output rate) for a variant (default: the task itself)."""
        chosen = self.main if variant is None else next((v for v in self.variants if v.name == variant), None)
        if chosen is None:
            raise UserError(f"no variant {variant!r}; variants: {', '.join(v.name for v in self.variants)}")
        if metric == "valid":
            return chosen.valid_rate
        if metric not in chosen.metrics:
            raise UserError(f"no metric {metric!r} in this evaluation; measured: {', '.join(['valid', *self.metrics])}")
        return chosen.metrics[metric].value

    def below(self, minimums: Mapping[str, float]) -> list[str]:
        """One line per minimum the task misses, e.g. ``accuracy 0.712 < 0.8 (sentiment)``; empty when all hold.

        Minimums apply to the task itself (on every backend evaluated), not to the variants compared with it.
        """
        lines = []
        for variant in (v for v in self.variants if v.main):
            for metric, minimum in minimums.items():
                value = self.value(metric, variant.name)
                if value < minimum:
                    lines.append(f"{metric} {value:.3f} < {minimum:g} ({variant.name})")
        return lines

    def table(self) -> str:
        """The terminal summary: one row per variant, each metric with its 95% interval, the comparisons, then
        calibration where the primary metric judges items right or wrong."""
        header = ["variant", *self.metrics, "valid", "latency", "tokens"]
        rows = []
        for v in self.variants:
            cells = [v.name, *(v.metrics[m].text() if m in v.metrics else "-" for m in self.metrics)]
            tokens = v.prompt_tokens + v.completion_tokens
            cells += [f"{v.valid}/{v.items} ({v.valid_rate:.0%})", f"{v.mean_latency_s:.2f} s", f"{tokens:,}"]
            rows.append(cells)
        widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
        lines = [
            f"{self.task}: {self.main.items} items"
            + (f" ({self.skipped} skipped)" if self.skipped else "")
            + f" from {self.data or 'rows given'}; 95% bootstrap intervals"
            f" ({self.resamples} resamples, seed {self.seed})",
            "  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)).rstrip(),
        ]
        lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
        lines += [c.line() for c in self.comparisons]
        lines += calibration_lines([(v.name, v.calibration) for v in self.variants])
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready data: everything in the report."""
        data = asdict(self)
        for variant, original in zip(data["variants"], self.variants, strict=True):
            variant["valid_rate"] = original.valid_rate
            if original.calibration is not None:
                variant["calibration"]["bins"] = [b._asdict() for b in original.calibration.bins]
        return data

    def write_json(self, path: str | os.PathLike[str]) -> Path:
        """Write :meth:`to_dict` as JSON, whole or not at all (a temporary file, then a rename)."""
        return write_whole(path, json.dumps(self.to_dict(), indent=2, ensure_ascii=False, default=str) + "\n")

    def write_html(self, path: str | os.PathLike[str]) -> Path:
        """Write the self-contained HTML report (needs matplotlib: ``promptask[eval]``), whole or not at all."""
        return write_whole(path, render_html(self.to_dict()))


def write_whole(path: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` to ``path`` through a temporary file in the same folder, then rename it into place."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target
