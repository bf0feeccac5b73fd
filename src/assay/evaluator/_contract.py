"""The evaluator contract: what every evaluator offers, its verdict record, its calibration record,
and the one decision rule.

- :class:`EvaluatorLike`: the interface the registry, server, monitor and reports rely on. The real
  :class:`~assay.evaluator.Evaluator` and :class:`assay.testing.MockEvaluator` (the one test double)
  satisfy it; a test checks both.
- :class:`Score`: one row's verdict (label, score, confidence, probabilities, tokens, truncation).
- :class:`Calibration`: the one home of an evaluator's temperature, label shift, threshold and operator,
  and how they were fitted (objective, rows, warnings, routing); ``evaluator.json`` keeps it under
  ``calibration`` (:meth:`Calibration.to_dict` / :meth:`Calibration.from_dict`) and its decision at the
  top level. ``assay.train.calibrate`` returns one; a registered version moves its decision with
  :meth:`Calibration.with_decision`.
- :func:`decide`: the label index of one row's probabilities. Binary metrics: the positive label
  when P(positive) >= threshold (``operator`` ``>`` for a strict comparison), else the other one;
  categorical metrics: the most probable label. The evaluator, the registry's per-version
  threshold and the test double all decide with it; there is no other threshold rule
  (:func:`decide_rows` applies it to many rows at once).
- :func:`calibrated_probs`: softmax(logits / temperature + label shift), every evaluator's calibration.
- :func:`band_around`: a P(positive) band of a log-odds half-width around a threshold, the shape of
  every review band (certified at training time, or the monitor's default).
- :func:`scores_from_probs`: a :class:`Score` per row from calibrated probabilities.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Mapping, Protocol, Sequence, runtime_checkable

FEW_ROWS = 50  # calibration fitted on fewer rows than this is flagged small_sample (a warning)


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


_OWN: Any = object()  # review_region(): "this calibration's own decision threshold"
_ENTRY_KEYS = ("rows", "source", "method", "threshold_objective", "threshold_target", "small_sample", "warnings",
               "temperature", "nll_before", "nll_after", "prior", "threshold", "threshold_method",
               "threshold_details", "routing")  # the evaluator.json ``calibration`` entry, in its order


@dataclass(frozen=True)
class Calibration:
    """How an evaluator turns logits into a verdict, and how that was fitted: the one home of its
    temperature, label shift, decision threshold and operator, and its risk-controlled routing.

    ``assay.train.calibrate`` fits it and returns it; the evaluator holds one (``ev.calibration``;
    ``ev.threshold`` / ``ev.temperature`` read it). ``evaluator.json`` keeps :meth:`to_dict` under
    ``calibration`` and the decision (``temperature``, ``label_shift``, ``threshold``) at its top level.
    ``method``: ``"slice"`` (rows held back from the gradient steps), ``"out-of-fold"`` (the
    cross-validated scores of every training row, linear / hybrid families) or ``"none"`` (too few
    rows or labels: temperature 1, threshold 0.5). ``small_sample``: fitted on fewer than
    :data:`FEW_ROWS` rows, so temperature and threshold are rough (``warnings`` says so too).
    A registered version may decide at another threshold / operator (:meth:`with_decision`); the
    fitted threshold is then kept as ``calibrated_threshold``, the one routing was certified at.
    """

    temperature: float = 1.0
    threshold: float | None = None  # binary: decide on calibrated P(positive); None: argmax (categorical)
    operator: str = ">="  # positive when P(positive) >= threshold (">": strictly above; a registered version's)
    label_shift: Mapping[str, float] | None = None  # per label, added to the scaled logits (None: no shift)
    calibrated_threshold: float | None = None  # set only once ``threshold`` was moved: the fitted one
    objective: str | None = None  # train.threshold_objective: f1, kappa, precision, recall, none
    target: float | None = None  # train.threshold_target (precision / recall objectives)
    threshold_method: str | None = None  # how the threshold was chosen, in words
    method: str = "none"  # slice | out-of-fold | none
    source: str | None = None  # where the calibration rows came from, in words
    n_rows: int = 0
    small_sample: bool = False
    warnings: tuple[str, ...] = ()
    nll_before: float | None = None  # temperature fit: NLL at T = 1 and at the fitted T
    nll_after: float | None = None
    prior: Mapping[str, Any] | None = None  # label shift: calibration / target priors and the per-label shift
    threshold_details: Mapping[str, Any] | None = None  # the objective's value (and precision / recall)
    # risk-controlled routing (assay.evaluator._risk.RiskControl.to_dict): the region of scores sent to people
    routing: Mapping[str, Any] | None = None
    extra: Mapping[str, Any] | None = None  # keys of a read ``calibration`` entry this class does not model
    keys: frozenset[str] | None = field(default=None, compare=False, repr=False)  # the entry's keys, as read

    @property
    def fitted_threshold(self) -> float | None:
        """The threshold calibration chose (routing was certified around it)."""
        return self.threshold if self.calibrated_threshold is None else self.calibrated_threshold

    def to_dict(self) -> dict[str, Any]:
        """The ``calibration`` entry of ``evaluator.json`` (an entry read by :meth:`from_dict` keeps
        exactly its keys, unknown ones included)."""
        values = {"rows": self.n_rows, "source": self.source, "method": self.method,
                  "threshold_objective": self.objective, "threshold_target": self.target,
                  "small_sample": self.small_sample, "warnings": list(self.warnings),
                  "temperature": self.temperature, "nll_before": self.nll_before, "nll_after": self.nll_after,
                  "prior": self.prior, "threshold": self.fitted_threshold, "threshold_method": self.threshold_method,
                  "threshold_details": self.threshold_details,
                  "routing": dict(self.routing) if self.routing is not None else None}
        optional = ("nll_before", "nll_after", "prior", "threshold_details", "routing")  # written when set
        if self.keys is None:
            out = {k: v for k, v in values.items() if k not in optional or v is not None}
        else:
            out = {k: v for k, v in values.items() if k in self.keys}
        return {**out, **dict(self.extra or {})}

    def with_decision(self, threshold: float | None = None, operator: str | None = None) -> "Calibration":
        """This calibration deciding at ``threshold`` with ``operator`` (a registered version's; None:
        unchanged); the fitted threshold stays recorded (``calibrated_threshold``)."""
        t = self.threshold if threshold is None else float(threshold)
        fitted = self.fitted_threshold
        return replace(self, threshold=t, operator=operator or self.operator,
                       calibrated_threshold=None if t == fitted else fitted)

    def for_labels(self, binary: bool) -> "Calibration":
        """As an evaluator of a binary (threshold, 0.5 when unset) or categorical (argmax) metric holds it."""
        if not binary:
            return replace(self, threshold=None, calibrated_threshold=None)
        return self if self.threshold is not None else replace(self, threshold=0.5)

    def review_region(self, threshold: float | None = _OWN) -> Mapping[str, Any] | None:
        """The certified review region (``band`` or ``min_confidence``) when routing met its target
        and the evaluator still decides at the threshold it was certified for (``threshold``, by default
        this calibration's own decision threshold); else None."""
        r = self.routing
        if not r or not r.get("met"):
            return None
        t = self.threshold if threshold is _OWN else threshold
        fitted = self.fitted_threshold
        if r.get("band") is not None and (t is None or fitted is None or abs(float(t) - float(fitted)) > 1e-9):
            return None  # a registered version moved the threshold: the band was certified around another one
        return r

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None) -> "Calibration":
        """From an ``evaluator.json`` ``calibration`` entry (artifacts written before ``method`` and
        ``small_sample`` were recorded get them inferred from ``source`` and ``rows``)."""
        keys = frozenset(d) if d is not None else None
        d = dict(d or {})
        n_rows = int(d.get("rows") or 0)
        source = d.get("source")
        method = d.get("method")
        if method is None:
            if str(d.get("threshold_method") or "").startswith("not calibrated") or not n_rows:
                method = "none"
            else:
                method = "out-of-fold" if "out-of-fold" in str(source or "") else "slice"
        temperature = d.get("temperature")
        prior = d.get("prior")
        extra = {k: v for k, v in d.items() if k not in _ENTRY_KEYS}
        return cls(temperature=float(temperature) if temperature is not None else 1.0,
                   threshold=d.get("threshold"), objective=d.get("threshold_objective"),
                   target=d.get("threshold_target"), threshold_method=d.get("threshold_method"), method=method,
                   source=source, n_rows=n_rows, small_sample=bool(d.get("small_sample", n_rows < FEW_ROWS)),
                   warnings=tuple(d.get("warnings") or ()), nll_before=d.get("nll_before"),
                   nll_after=d.get("nll_after"), prior=prior, threshold_details=d.get("threshold_details"),
                   routing=d.get("routing"), extra=extra or None, keys=keys,
                   label_shift=(prior or {}).get("label_shift") if isinstance(prior, Mapping) else None)


def decide(p: Sequence[float], labels: Sequence[str], positive: str | None, threshold: float | None,
           operator: str = ">=") -> int:
    """The label index for one row's probabilities ``p`` (ordered as ``labels``)."""
    if len(labels) == 2 and positive in labels and threshold is not None:
        pos = list(labels).index(positive)
        hit = p[pos] >= threshold if operator == ">=" else p[pos] > threshold
        return pos if hit else 1 - pos
    return max(range(len(labels)), key=lambda i: (p[i], -i))


def decide_rows(probs: Any, labels: Sequence[str], positive: str | None, threshold: float | None,
                operator: str = ">=") -> Any:
    """:func:`decide` for every row of ``probs`` [n_rows, n_labels] at once: label indices (numpy)."""
    import numpy as np

    p = np.asarray(probs, dtype=float)
    if len(labels) == 2 and positive in labels and threshold is not None:
        pos = list(labels).index(positive)
        hit = p[:, pos] >= threshold if operator == ">=" else p[:, pos] > threshold
        return np.where(hit, pos, 1 - pos)
    return p.argmax(axis=1)  # ties: the first label, as decide()


def calibrated_probs(logits: Any, temperature: float = 1.0, label_shift: Any = None) -> Any:
    """softmax(logits / temperature + label_shift) per row: the calibration every evaluator applies."""
    import numpy as np

    z = np.asarray(logits, dtype=np.float64) / temperature
    if label_shift is not None:
        z = z + label_shift
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def band_around(threshold: float | None, half_width: float) -> tuple[float, float]:
    """The P(positive) interval within ``half_width`` in log-odds of ``threshold`` (0.5 when None):
    the shape of every review band, certified at training time or the monitor's default."""
    t = min(max(0.5 if threshold is None else float(threshold), 1e-9), 1 - 1e-9)
    centre = math.log(t / (1 - t))
    return 1 / (1 + math.exp(-(centre - half_width))), 1 / (1 + math.exp(-(centre + half_width)))


def scores_from_probs(probs: Any, labels: Sequence[str], positive: str | None, threshold: float | None,
                      tokens: Sequence[int] | None = None, truncated: Sequence[bool] | None = None,
                      operator: str = ">=") -> list[Score]:
    """A :class:`Score` per row of ``probs`` [n_rows, n_labels], decided by :func:`decide`."""
    binary = len(labels) == 2 and positive in labels
    pos = list(labels).index(positive) if binary else None
    out = []
    for i, p in enumerate(probs):
        k = decide(p, labels, positive, threshold if binary else None, operator)
        out.append(Score(label=labels[k], score=float(p[pos] if pos is not None else p[k]), confidence=float(p[k]),
                         probabilities={lab: float(v) for lab, v in zip(labels, p)},
                         tokens=int(tokens[i]) if tokens is not None else 0,
                         truncated=bool(truncated[i]) if truncated is not None else False))
    return out


@runtime_checkable
class EvaluatorLike(Protocol):
    """What the registry, server, monitor and reports need from an evaluator."""

    metric: Any  # MetricSpec
    labels: tuple[str, ...]
    info: dict[str, Any]

    @property
    def calibration(self) -> Calibration: ...  # the one home of temperature, threshold, operator, routing

    @property
    def threshold(self) -> float | None: ...  # calibration.threshold

    def predict_proba(self, rows: Sequence[Mapping[str, Any]], batch_size: int | None = None) -> Any: ...

    def score(self, rows: Sequence[Mapping[str, Any]], batch_size: int | None = None) -> list[Score]: ...
