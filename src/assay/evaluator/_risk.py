"""Risk-controlled routing: which verdicts go to people so that the ones accepted automatically
disagree with people at most ``target`` of the time, with confidence ``1 - delta``.

The evaluator's calibration rows (their calibrated probabilities and human labels) are the evidence.
A fixed grid of candidate review regions, set before looking at any data: binary metrics route a band
of P(positive) around the decision threshold (log-odds half-widths ``HALF_WIDTHS``); categorical
metrics route verdicts whose confidence is below a cut (``CONFIDENCE_CUTS``). For each candidate,
the verdicts outside the region are the accepted ones; ``e`` of ``n`` of them disagree with the
human label. The hypothesis "the disagreement among accepted verdicts is above ``target``" is
rejected when the binomial tail P(Binomial(n, target) <= e) is at most ``delta / m`` (Bonferroni over
the ``m`` candidates, one of Learn-then-Test's family-wise procedures: Angelopoulos et al. 2021), so
the chance that any chosen region's true disagreement exceeds ``target`` is at most ``delta``, for new
verdicts exchangeable with the calibration rows. Of the rejected candidates the one that sends the
fewest verdicts to people is chosen; when none is rejected, ``met`` is False and the monitor keeps its
default band (the report and the calibration warnings say so).

(A fixed-sequence test from the widest region was tried first: its first hypotheses accept few rows,
so one unlucky error among the most confident verdicts stopped it; Bonferroni over a short grid is
less fragile at the same guarantee.)
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Sequence

import numpy as np

from ._contract import band_around, decide_rows

TARGET = 0.05  # disagreement allowed among auto-accepted verdicts
DELTA = 0.1  # 1 - confidence
HALF_WIDTHS = (0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0)  # log-odds, around the threshold
CONFIDENCE_CUTS = (0.0, 0.5, 0.6, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95, 0.975, 0.99)  # categorical: route below
METHOD = "Learn-then-Test: binomial tail p-values, Bonferroni over a fixed grid of regions"


@dataclass(frozen=True)
class RiskControl:
    """The chosen review region and what it does on the calibration rows."""

    target: float
    delta: float
    met: bool  # a region was certified; False: too few rows or too weak a model for the target
    n_rows: int
    band: tuple[float, float] | None = None  # binary: P(positive) in [lo, hi] goes to people
    margin: float | None = None  # binary: the band's log-odds half-width around the threshold
    min_confidence: float | None = None  # categorical: confidence below it goes to people
    routed_share: float | None = None  # share of calibration rows routed to people
    accepted_disagreement: float | None = None  # disagreement among the accepted calibration rows
    p_value: float | None = None
    method: str = METHOD

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["band"] = list(self.band) if self.band is not None else None
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> "RiskControl | None":
        if not d:
            return None
        fields = {k: d.get(k) for k in cls.__dataclass_fields__ if k in d}
        if fields.get("band") is not None:
            fields["band"] = tuple(fields["band"])
        return cls(**fields)


def binomial_tail(e: int, n: int, p: float) -> float:
    """P(Binomial(n, p) <= e)."""
    from scipy.stats import binom

    return float(binom.cdf(e, n, p))


def _certify(candidates: list[tuple[Any, np.ndarray]], wrong: np.ndarray, target: float, delta: float
             ) -> tuple[int | None, list[float]]:
    """Index of the certified candidate that accepts the most rows, and every candidate's p-value."""
    level = delta / len(candidates)
    chosen, best, pvals = None, -1, []
    for i, (_, accepted) in enumerate(candidates):
        n = int(accepted.sum())
        p = binomial_tail(int(wrong[accepted].sum()), n, target) if n else float("nan")
        pvals.append(p)
        if n and p <= level and n > best:
            chosen, best = i, n
    return chosen, pvals


def control_risk(probs: Any, y: Sequence[int], labels: Sequence[str], positive: str | None,
                 threshold: float | None, target: float = TARGET, delta: float = DELTA) -> RiskControl:
    """The review region for calibrated probabilities ``probs`` [n, k] and human label indices ``y``."""
    p = np.asarray(probs, dtype=float)
    y = np.asarray(y, dtype=int)
    n = len(y)
    binary = len(labels) == 2 and positive in labels and threshold is not None
    if binary:
        pos = list(labels).index(positive)
        score = p[:, pos]
        pred = decide_rows(p, labels, positive, threshold)
        wrong = pred != y
        candidates = []
        for h in HALF_WIDTHS:
            lo, hi = band_around(threshold, h)
            routed = (score >= lo) & (score <= hi) if h > 0 else np.zeros(n, dtype=bool)
            candidates.append(((h, lo, hi), ~routed))
    else:
        pred = decide_rows(p, labels, None, None)
        wrong = pred != y
        conf = p.max(axis=1)
        candidates = [((float(c),), conf >= c) for c in CONFIDENCE_CUTS]
    chosen, pvals = _certify(candidates, wrong, target, delta)
    if chosen is None:
        return RiskControl(target=target, delta=delta, met=False, n_rows=n)
    params, accepted = candidates[chosen]
    n_acc = int(accepted.sum())
    common = dict(target=target, delta=delta, met=True, n_rows=n, routed_share=round(1 - n_acc / n, 6),
                  accepted_disagreement=round(float(wrong[accepted].mean()), 6) if n_acc else None,
                  p_value=round(pvals[chosen], 6))
    if binary:
        h, lo, hi = params
        return RiskControl(band=(round(lo, 6), round(hi, 6)), margin=h, **common)
    return RiskControl(min_confidence=round(params[0], 6), **common)


def realised(control: RiskControl, probs: Any, y: Sequence[int], labels: Sequence[str], positive: str | None,
             threshold: float | None) -> dict[str, Any]:
    """What the region does on other labeled rows (the held-out ones): the share routed to people and
    the disagreement among the verdicts accepted automatically."""
    p = np.asarray(probs, dtype=float)
    y = np.asarray(y, dtype=int)
    if control.band is not None and positive in labels and threshold is not None:
        pos = list(labels).index(positive)
        score = p[:, pos]
        routed = (score >= control.band[0]) & (score <= control.band[1])
        pred = decide_rows(p, labels, positive, threshold)
    elif control.min_confidence is not None:
        routed = p.max(axis=1) < control.min_confidence
        pred = decide_rows(p, labels, None, None)
    else:
        return {"rows": len(y), "routed_share": None, "accepted_disagreement": None, "within_target": None}
    accepted = ~routed
    dis = float((pred[accepted] != y[accepted]).mean()) if accepted.any() else None
    return {"rows": len(y), "routed_share": round(float(routed.mean()), 6) if len(y) else None,
            "accepted_disagreement": round(dis, 6) if dis is not None else None,
            "within_target": dis is not None and dis <= control.target}
