"""Evaluation: score a task on labelled rows, with bootstrap intervals, paired comparisons and reports.

>>> import promptask
>>> rows = [{"text": "Great!", "expected": "positive"}, {"text": "Awful.", "expected": "negative"}]
>>> backend = promptask.ScriptedBackend(['{"label": "negative"}'], repeat=True)
>>> report = promptask.evaluate(promptask.tasks.sentiment, rows, backend=backend, cache=False)
>>> print(report.comparisons, report.value("accuracy"), report.below({"accuracy": 0.8}))
[] 0.5 ['accuracy 0.500 < 0.8 (sentiment)']

The CLI is ``promptask eval TASK --data FILE``; see the README's "Evaluation" section.
"""

from promptask.evaluate.bootstrap import interval, paired_difference
from promptask.evaluate.calibrate import Calibration
from promptask.evaluate.metrics import METRICS, Metric, custom_metric, label_report, resolve_metric
from promptask.evaluate.report import Comparison, EvalReport, ItemRecord, MetricValue, VariantReport
from promptask.evaluate.run import EvalSettings, Variant, eval_settings, evaluate, load_variant

__all__ = [
    "METRICS",
    "Calibration",
    "Comparison",
    "EvalReport",
    "EvalSettings",
    "ItemRecord",
    "Metric",
    "MetricValue",
    "Variant",
    "VariantReport",
    "custom_metric",
    "eval_settings",
    "evaluate",
    "interval",
    "label_report",
    "load_variant",
    "paired_difference",
    "resolve_metric",
]
