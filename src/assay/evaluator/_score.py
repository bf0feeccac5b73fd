"""The scoring contract: a verdict record, the one decision rule, and what every evaluator offers.

- :class:`Score`: one row's verdict (label, score, confidence, probabilities, tokens, truncation).
- :func:`decide`: the label index of one row's probabilities. Binary metrics: the positive label
  when P(positive) >= threshold (``operator`` ``>`` for a strict comparison), else the other one;
  categorical metrics: the most probable label. The evaluator, the registry's per-version
  threshold and the test doubles all decide with it.
- :func:`scores_from_probs`: a :class:`Score` per row from calibrated probabilities.
- :class:`Scorer`: the interface the registry, server, monitor and reports rely on; the real
  :class:`~assay.evaluator.Evaluator` and every double in the tests satisfy it (a test checks).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Mapping, Protocol, Sequence, runtime_checkable


@dataclass
class Score:
    """One row's verdict."""

    label: str
    score: float  # binary: calibrated P(positive label); categorical: P(label)
    confidence: float  # probability of the returned label
    probabilities: dict[str, float] = field(default_factory=dict)
    tokens: int = 0  # model input length
    truncated: bool = False  # a field was cut to fit max_length

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def decide(p: Sequence[float], labels: Sequence[str], positive: str | None, threshold: float | None,
           operator: str = ">=") -> int:
    """The label index for one row's probabilities ``p`` (ordered as ``labels``)."""
    if len(labels) == 2 and positive in labels and threshold is not None:
        pos = list(labels).index(positive)
        hit = p[pos] >= threshold if operator == ">=" else p[pos] > threshold
        return pos if hit else 1 - pos
    return max(range(len(labels)), key=lambda i: (p[i], -i))


def scores_from_probs(probs: Any, labels: Sequence[str], positive: str | None, threshold: float | None,
                      tokens: Sequence[int] | None = None, truncated: Sequence[bool] | None = None) -> list[Score]:
    """A :class:`Score` per row of ``probs`` [n_rows, n_labels]."""
    binary = len(labels) == 2 and positive in labels
    pos = list(labels).index(positive) if binary else None
    out = []
    for i, p in enumerate(probs):
        k = decide(p, labels, positive, threshold if binary else None)
        out.append(Score(label=labels[k], score=float(p[pos] if pos is not None else p[k]), confidence=float(p[k]),
                         probabilities={lab: float(v) for lab, v in zip(labels, p)},
                         tokens=int(tokens[i]) if tokens is not None else 0,
                         truncated=bool(truncated[i]) if truncated is not None else False))
    return out


@runtime_checkable
class Scorer(Protocol):
    """What the registry, server, monitor and reports need from an evaluator."""

    metric: Any  # MetricSpec
    labels: tuple[str, ...]
    threshold: float | None
    info: dict[str, Any]

    def predict_proba(self, rows: Sequence[Mapping[str, Any]], batch_size: int | None = None) -> Any: ...

    def score(self, rows: Sequence[Mapping[str, Any]], batch_size: int | None = None) -> list[Score]: ...
