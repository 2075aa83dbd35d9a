"""Evaluation metrics, each computed from per-item statistics so a bootstrap can resample items.

A :class:`Metric` turns one item (the scored output field and the reference)
into a tuple of statistics, and turns a list of such tuples into a value.
Item means (exact match, token F1, ROUGE) keep ``(score,)``; micro F1 keeps
``(true positives, predicted, expected)``; BLEU and chrF keep sacrebleu's own
sufficient statistics, so a resampled corpus score is exact and cheap.  An item
with no valid output is scored as a miss: ``prediction`` is ``None``.

>>> METRICS["token_f1"].score([("The red door", "red door")])
1.0
>>> round(METRICS["macro_f1"].score([("a", "a"), ("b", "a"), ("b", "b")]), 3)
0.667

Label metrics follow scikit-learn's definitions (macro F1 over the labels seen
in the references or predictions; a label never predicted has precision 0).
They are written here rather than imported: scikit-learn would be a large
dependency for a few lines, and ``tests/test_eval.py`` checks them against
hand-computed confusion matrices.
"""

from __future__ import annotations

import importlib
import re
import string
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from promptask.errors import ConfigurationError, UserError

__all__ = [
    "METRICS",
    "Metric",
    "custom_metric",
    "label_of",
    "label_report",
    "normalize_answer",
    "resolve_metric",
    "token_f1",
]

Stats = tuple[Any, ...]
EXTRA_HINT = "pip install 'promptask[eval]'"


@dataclass(frozen=True)
class Metric:
    """One metric: per-item statistics, and the value of a list of them.

    Attributes:
        name: how tasks, ``--metric`` and ``--min`` name it.
        description: one line for listings and reports.
        item: ``(prediction, reference, output, row) -> statistics``; ``prediction`` is
            the scored output field as JSON data (``None`` when there is no valid output).
        combine: statistics of many items -> the metric's value.
        per_item: whether one item's value means something (macro F1 of one item does not).
        labels: a label metric: reports get per-label precision/recall/F1 and a confusion matrix.
        pass_at: an item scoring below this counts as a failure in reports.
        binary: one item scores 0 or 1, right or wrong (calibration needs that; label metrics judge by the label).
    """

    name: str
    description: str
    item: Callable[[Any, Any, Any, Mapping[str, Any]], Stats]
    combine: Callable[[Sequence[Stats]], float]
    per_item: bool = True
    labels: bool = False
    pass_at: float = 1.0
    scale: str = "0-1"
    extra: str | None = field(default=None, compare=False)
    binary: bool = False

    def score(self, pairs: Sequence[tuple[Any, Any]]) -> float:
        """The metric over ``(prediction, reference)`` pairs (a convenience for tests and notebooks).

        Custom metrics see each prediction as the output and an empty row.
        """
        return self.combine([self.item(p, r, p, {}) for p, r in pairs])


# ---------------------------------------------------------------------------- text normalisation

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_QUOTES_AND_DASHES = "\u00bf\u00a1\u00ab\u00bb\u201c\u201d\u2018\u2019\u2026\u2013\u2014"
_PUNCTUATION = str.maketrans("", "", string.punctuation + _QUOTES_AND_DASHES)


def normalize_answer(text: Any) -> str:
    """SQuAD's normalisation: lower case, no punctuation, no articles, single spaces.

    >>> normalize_answer("The  Eiffel Tower!")
    'eiffel tower'
    """
    lowered = str(text).lower().translate(_PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", lowered).split())


def token_f1(prediction: str, reference: str) -> float:
    """SQuAD's token F1 of two answers after :func:`normalize_answer`."""
    pred, ref = normalize_answer(prediction).split(), normalize_answer(reference).split()
    if not pred or not ref:
        return float(pred == ref)
    overlap = sum((Counter(pred) & Counter(ref)).values())
    if not overlap:
        return 0.0
    precision, recall = overlap / len(pred), overlap / len(ref)
    return 2 * precision * recall / (precision + recall)


def _text(value: Any) -> str:
    return "" if value is None else value if isinstance(value, str) else str(value)


def _mean(stats: Sequence[Stats]) -> float:
    return sum(s[0] for s in stats) / len(stats) if stats else 0.0


def _f1(tp: float, predicted: float, expected: float) -> float:
    if tp == 0:
        return 1.0 if predicted == expected == 0 else 0.0
    precision, recall = tp / predicted, tp / expected
    return 2 * precision * recall / (precision + recall)


def _micro_f1(stats: Sequence[Stats]) -> float:
    return _f1(sum(s[0] for s in stats), sum(s[1] for s in stats), sum(s[2] for s in stats))


def label_of(value: Any) -> str | None:
    """A value as a label: strings as they are, booleans as ``true``/``false``, ``None`` for no output."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    return value if isinstance(value, str) else str(value)


# ---------------------------------------------------------------------------- labels


def _accuracy_item(prediction: Any, reference: Any, output: Any, row: Mapping[str, Any]) -> Stats:
    return (float(prediction is not None and label_of(prediction) == label_of(reference)),)


def _pair_item(prediction: Any, reference: Any, output: Any, row: Mapping[str, Any]) -> Stats:
    return (label_of(reference), label_of(prediction))


def label_report(pairs: Sequence[Stats]) -> dict[str, Any]:
    """Per-label precision, recall, F1 and support, and the confusion matrix, from ``(reference, prediction)``.

    Labels are those of the references, then any others predicted, in first-seen order;
    no valid output shows as the column ``(invalid)``.

    >>> report = label_report([("a", "a"), ("a", "b"), ("b", "b")])
    >>> report["labels"], report["confusion"], report["per_label"]["b"]["precision"]
    (['a', 'b'], [[1, 1], [0, 1]], 0.5)
    """
    labels: list[str] = []
    for label in [r for r, _ in pairs] + [p for _, p in pairs]:  # references first, then labels only predicted
        if label is not None and label not in labels:
            labels.append(label)
    columns = [*labels, "(invalid)"] if any(p is None for _, p in pairs) else list(labels)
    index = {label: i for i, label in enumerate(labels)}
    confusion = [[0] * len(columns) for _ in labels]
    for reference, prediction in pairs:
        if reference is None:
            continue
        column = index[prediction] if prediction is not None else len(columns) - 1
        confusion[index[reference]][column] += 1
    per_label: dict[str, dict[str, float]] = {}
    for i, label in enumerate(labels):
        tp = confusion[i][i]
        predicted = sum(row[i] for row in confusion)
        support = sum(confusion[i])
        precision = tp / predicted if predicted else 0.0
        recall = tp / support if support else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_label[label] = {"precision": precision, "recall": recall, "f1": f1, "support": support}
    return {"labels": labels, "columns": columns, "confusion": confusion, "per_label": per_label}


def _macro_f1(stats: Sequence[Stats]) -> float:
    """The mean of :func:`label_report`'s per-label F1, counted directly: it runs once per bootstrap resample."""
    labels = dict.fromkeys(label for pair in stats for label in pair if label is not None)
    if not labels:
        return 0.0
    hits: Counter[Any] = Counter()
    predicted: Counter[Any] = Counter()
    support: Counter[Any] = Counter()
    for reference, prediction in stats:
        if reference is None:
            continue
        support[reference] += 1
        predicted[prediction] += 1
        hits[reference] += prediction == reference
    total = 0.0
    for label in labels:
        precision = hits[label] / predicted[label] if predicted[label] else 0.0
        recall = hits[label] / support[label] if support[label] else 0.0
        total += 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return total / len(labels)


# ---------------------------------------------------------------------------- strings, sets, spans


def _exact_item(prediction: Any, reference: Any, output: Any, row: Mapping[str, Any]) -> Stats:
    return (float(prediction is not None and normalize_answer(prediction) == normalize_answer(reference)),)


def _token_f1_item(prediction: Any, reference: Any, output: Any, row: Mapping[str, Any]) -> Stats:
    return (token_f1(_text(prediction), _text(reference)) if prediction is not None else 0.0,)


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple, set)) else [value]


def _set_item(prediction: Any, reference: Any, output: Any, row: Mapping[str, Any]) -> Stats:
    predicted = {normalize_answer(v) if isinstance(v, str) else repr(v) for v in _as_list(prediction)}
    expected = {normalize_answer(v) if isinstance(v, str) else repr(v) for v in _as_list(reference)}
    return (len(predicted & expected), len(predicted), len(expected))


def _span(value: Any) -> tuple[Any, ...]:
    if isinstance(value, Mapping):
        return (value.get("text"), value.get("type"), value.get("start"), value.get("end"))
    return (value,)


def _span_item(prediction: Any, reference: Any, output: Any, row: Mapping[str, Any]) -> Stats:
    predicted = {_span(v) for v in _as_list(prediction)}
    expected = {_span(v) for v in _as_list(reference)}
    return (len(predicted & expected), len(predicted), len(expected))


def _contains_any_item(prediction: Any, reference: Any, output: Any, row: Mapping[str, Any]) -> Stats:
    text = _text(prediction).lower()
    return (float(prediction is not None and any(str(word).lower() in text for word in _as_list(reference))),)


# ---------------------------------------------------------------------------- sacrebleu and rouge-score


def _library(module: str, metric: str) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError:
        raise ConfigurationError(
            f"the {metric} metric needs the {module.split('.')[0]} package: {EXTRA_HINT}"
        ) from None


class _Sacrebleu:
    """BLEU or chrF from sacrebleu's sufficient statistics (summed over items, as ``corpus_score`` does)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._metric: Any = None

    def metric(self) -> Any:
        if self._metric is None:
            sacrebleu = _library("sacrebleu", self.kind)
            self._metric = sacrebleu.metrics.BLEU() if self.kind == "bleu" else sacrebleu.metrics.CHRF()
        return self._metric

    def item(self, prediction: Any, reference: Any, output: Any, row: Mapping[str, Any]) -> Stats:
        references = [_text(r) for r in _as_list(reference)] or [""]
        stats = self.metric()._extract_corpus_statistics([_text(prediction)], [[r] for r in references])
        return tuple(stats[0])

    def combine(self, stats: Sequence[Stats]) -> float:
        if not stats:
            return 0.0
        summed = [sum(column) for column in zip(*stats, strict=True)]
        return float(self.metric()._compute_score_from_stats(summed).score)


class _Rouge:
    """Mean ROUGE F-measure over items, as rouge-score computes it (Porter stemming on)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._scorer: Any = None

    def item(self, prediction: Any, reference: Any, output: Any, row: Mapping[str, Any]) -> Stats:
        if self._scorer is None:
            scorer = _library("rouge_score.rouge_scorer", self.kind)
            self._scorer = scorer.RougeScorer([self.kind], use_stemmer=True)
        if prediction is None:
            return (0.0,)
        return (float(self._scorer.score(_text(reference), _text(prediction))[self.kind].fmeasure),)


_BLEU, _CHRF = _Sacrebleu("bleu"), _Sacrebleu("chrf")

METRICS: dict[str, Metric] = {
    metric.name: metric
    for metric in [
        Metric("accuracy", "share of items whose label equals the reference", _accuracy_item, _mean, labels=True,
               binary=True),
        Metric("macro_f1", "F1 averaged over labels (scikit-learn's macro average)", _pair_item, _macro_f1,
               per_item=False, labels=True),
        Metric("exact_match", "SQuAD exact match after normalisation", _exact_item, _mean, binary=True),
        Metric("token_f1", "SQuAD token F1 after normalisation", _token_f1_item, _mean, pass_at=0.5),
        Metric("set_f1", "micro F1 of predicted against expected items (normalised strings)", _set_item,
               _micro_f1, pass_at=0.5),
        Metric("span_f1", "strict span F1: text, type, start and end must all match (micro)", _span_item,
               _micro_f1, pass_at=0.5),
        Metric("contains_any", "share of outputs containing any of the reference words", _contains_any_item,
               _mean, binary=True),
        Metric("bleu", "sacrebleu corpus BLEU (0-100)", _BLEU.item, _BLEU.combine, pass_at=30.0, scale="0-100",
               extra="eval"),
        Metric("chrf", "sacrebleu corpus chrF (0-100)", _CHRF.item, _CHRF.combine, pass_at=50.0, scale="0-100",
               extra="eval"),
        *(
            Metric(name, f"mean {name} F-measure (rouge-score, stemmed)", _Rouge(name).item, _mean, pass_at=0.5,
                   extra="eval")
            for name in ("rouge1", "rouge2", "rougeL")
        ),
    ]
}  # fmt: skip
"""The metrics known by name."""


def custom_metric(fn: Callable[[Any, Mapping[str, Any]], float], name: str | None = None) -> Metric:
    """A metric from ``fn(output, row) -> float``: its mean over items.

    ``output`` is the task's output as a call returns it (``None`` when the item has
    no valid output); ``row`` is the whole data row, reference included.

    >>> def short(output, row):
    ...     return float(len(output) < 10)
    >>> custom_metric(short).score([("ok", None), ("far too long", None)])
    0.5
    """

    def item(prediction: Any, reference: Any, output: Any, row: Mapping[str, Any]) -> Stats:
        value = fn(output, row)
        if isinstance(value, bool):
            value = float(value)
        if not isinstance(value, (int, float)):
            raise TypeError(f"returned {type(value).__name__}, not a number")
        return (float(value),)

    label = str(name or getattr(fn, "__name__", "metric"))
    return Metric(label, (fn.__doc__ or "custom metric").strip().splitlines()[0], item, _mean, pass_at=0.5)


def resolve_metric(spec: str | Metric | Callable[[Any, Mapping[str, Any]], float]) -> Metric:
    """A metric by name, ``module:function``, a :class:`Metric`, or a function ``(output, row) -> float``."""
    if isinstance(spec, Metric):
        return spec
    if callable(spec):
        return custom_metric(spec)
    if not isinstance(spec, str):
        raise UserError(f"a metric is a name, 'module:function' or a function, not {type(spec).__name__}")
    if spec in METRICS:
        return METRICS[spec]
    module_name, sep, attribute = spec.partition(":")
    if sep and module_name and attribute:
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise UserError(f"metric {spec!r}: cannot import {module_name!r} ({exc})") from None
        fn = getattr(module, attribute, None)
        if isinstance(fn, Metric):
            return fn
        if not callable(fn):
            raise UserError(f"metric {spec!r}: {module_name!r} has no function {attribute!r}")
        return custom_metric(fn, name=attribute)
    raise UserError(f"unknown metric {spec!r}; available: {', '.join(METRICS)}, or 'module:function' for your own")
