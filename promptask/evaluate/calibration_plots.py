"""The HTML report's calibration section: figures per variant, a reliability diagram and an accuracy-vs-coverage curve.

It reads :meth:`EvalReport.to_dict` data: each variant's ``calibration`` (see
:mod:`promptask.evaluate.calibrate`) and the records' ``confidence`` and
``correct``, from which the curve is drawn.  Plots are matplotlib SVG, inline.
"""

from __future__ import annotations

import html
from typing import Any

from promptask.calibration import coverage_curve
from promptask.evaluate.calibrate import figure_text
from promptask.evaluate.svg import margins, svg

__all__ = ["calibration_section"]

CURVE_POINTS = 400  # at most this many points on a curve: thousands of items would only make the page heavy


def reliability_plot(figure: Any, calibration: dict[str, Any], title: str, salt: str) -> str:
    """Accuracy per confidence bin (bars, the item count above each), the diagonal of perfect calibration,
    and each bin's mean confidence (dots)."""
    bins = calibration["bins"]
    fig = figure.Figure(figsize=(3.6, 2.4))
    ax = fig.add_subplot()
    ax.plot([0, 1], [0, 1], linestyle="--", linewidth=1, color="#8a93a3", label="perfect calibration")
    ax.bar([b["low"] for b in bins], [b["accuracy"] for b in bins], width=[b["high"] - b["low"] for b in bins],
           align="edge", color="#3b6fb6", edgecolor="white", alpha=0.85, label="accuracy")  # fmt: skip
    ax.plot([b["confidence"] for b in bins], [b["accuracy"] for b in bins], "o", markersize=3, color="#b3261e",
            label="mean confidence")  # fmt: skip
    for b in bins:
        ax.text((b["low"] + b["high"]) / 2, b["accuracy"] + 0.02, str(b["items"]), ha="center", va="bottom",
                fontsize=7)  # fmt: skip
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.12)
    ax.set_xlabel("confidence (10 bins; items above each bar)")
    ax.set_ylabel("accuracy")
    ax.set_title(f"Reliability: {title} (ECE {figure_text(calibration['ece'])})", fontsize=10)
    ax.legend(fontsize=7, loc="upper left")
    margins(fig, below=["0"], beside=["0.00"])
    return svg(fig, salt)


def coverage_plot(figure: Any, curve: list[tuple[float, float]], calibration: dict[str, Any], title: str,
                  salt: str) -> str:  # fmt: skip
    """Accuracy of the most confident items against the share kept, with the 50/80/100% figures marked."""
    step = max(1, len(curve) // CURVE_POINTS)
    shown = curve[::step]
    if shown[-1] != curve[-1]:
        shown.append(curve[-1])  # the curve ends at full coverage, whatever the step
    fig = figure.Figure(figsize=(3.6, 2.4))
    ax = fig.add_subplot()
    ax.plot([c for c, _ in shown], [a for _, a in shown], color="#3b6fb6", linewidth=1.5)
    for share, accuracy in calibration["accuracy_at_coverage"].items():
        if accuracy is not None:
            coverage = float(share.rstrip("%")) / 100
            ax.plot([coverage], [accuracy], "o", markersize=4, color="#b3261e")
            ax.annotate(f"{accuracy:.2f}", (coverage, accuracy), textcoords="offset points", xytext=(0, 5),
                        ha="center", fontsize=7)  # fmt: skip
    ax.set_xlim(0, 1.02)
    ax.set_ylim(0, 1.12)
    ax.set_xlabel("coverage (most confident first)")
    ax.set_ylabel("accuracy")
    ax.set_title(f"Accuracy vs coverage: {title} (AUROC {figure_text(calibration['auroc'])})", fontsize=10)
    margins(fig, below=["0"], beside=["0.00"])
    return svg(fig, salt)


def _table(report: dict[str, Any]) -> str:
    rows = []
    shares: list[str] = []
    for v in report["variants"]:
        c = v.get("calibration")
        if c is None:
            continue
        shares = list(c["accuracy_at_coverage"])
        at = "".join(f'<td class="num">{figure_text(a)}</td>' for a in c["accuracy_at_coverage"].values())
        rows.append(
            f'<tr><td>{html.escape(v["name"])}</td><td class="num">{c["scored"]}/{c["items"]}</td>'
            f'<td class="num">{figure_text(c["ece"])}</td><td class="num">{figure_text(c["auroc"])}</td>{at}</tr>'
        )
    heads = "".join(f"<th>accuracy @ {html.escape(s)}</th>" for s in shares)
    return (
        f'<table id="calibration"><thead><tr><th>variant</th><th>with confidence</th><th>ECE</th>'
        f"<th>AUROC</th>{heads}</tr></thead><tbody>{''.join(rows)}</tbody></table>"
    )


def calibration_section(figure: Any, report: dict[str, Any]) -> str:
    """The section's HTML: a table of the figures, then each variant's two plots (or why it has none);
    empty when no variant's primary metric judges items right or wrong."""
    judged = [v for v in report["variants"] if v.get("calibration") is not None]
    if not judged:
        return ""
    parts = []
    for index, v in enumerate(judged):
        name, c = v["name"], v["calibration"]
        if not c["scored"]:
            parts.append(f"<p class='no-confidence'>{html.escape(name)}: no item had a confidence (the backend "
                         "cannot score, or the output has no field with a finite set of values).</p>")  # fmt: skip
            continue
        items = [(r["confidence"], r["correct"]) for r in report["records"]
                 if r["variant"] == name and r["confidence"] is not None and r["correct"] is not None]  # fmt: skip
        curve = coverage_curve([conf for conf, _ in items], [ok for _, ok in items])
        reliability = reliability_plot(figure, c, name, f"reliability-{index}")
        coverage = coverage_plot(figure, curve, c, name, f"coverage-{index}")
        parts.append(
            f"<h3>{html.escape(name)}</h3><div class='plots'><figure class='reliability-plot'>{reliability}</figure>"
            f"<figure class='coverage-plot'>{coverage}</figure></div>"
        )
    return (
        "<div id='calibration-section'><h2>Calibration</h2><p class='meta'>Confidence against right answers, "
        "by the primary metric (a label metric: the label equals the reference; a 0/1 metric: the item scores "
        "1), over the items with a confidence. ECE: the item-weighted gap between confidence and accuracy over "
        "10 equal-width bins. AUROC: the chance a right item is more confident than a wrong one (ties one "
        "half). Accuracy @ 50%: accuracy of the most confident 50% of the items (the coverage).</p>"
        f"{_table(report)}{''.join(parts)}</div>"
    )
