"""Calibration on rows held back from the gradient steps: a temperature, then a decision threshold.

Temperature scaling divides the label logits by T, chosen to minimise the negative
log-likelihood on the calibration slice (NLL is convex in 1/T, so a golden-section search on
1/T finds the optimum). The threshold (binary metrics) is then chosen on the calibrated
P(positive) of the same slice for an objective: ``f1`` (macro F1), ``kappa``,
``precision`` / ``recall`` (reach ``threshold_target`` with the best other side), ``none`` (0.5).

Label shift: the calibration slice has the training rows' label mix (often balanced, or
generated to a target), while the rows the evaluator will score look like the labeled test set.
Given that target prior (by default the seed rows' label frequencies), the calibrated
probabilities are re-weighted by target / calibration prior (Saerens et al., 2002): a per-label
``label_shift`` = log(target) - log(calibration) added to the scaled logits, and the threshold is
chosen on calibration rows weighted the same way.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

from ..evaluator._contract import FEW_ROWS, Calibration, calibrated_probs, decide_rows
from ..evaluator._risk import DELTA, TARGET, control_risk
from ..stats import kappa_of_confusion

MIN_ROWS = 10  # fewer calibration rows than this: keep T = 1 and threshold 0.5
# FEW_ROWS (assay.evaluator): fewer calibration rows than this: a warning, small_sample (and out-of-fold
# scores where there are any)
T_BOUNDS = (1e-2, 1e2)  # the temperature search range; a fit at either end is reported as a warning
_PN = ("positive", "negative")  # choose_threshold decides on [P(positive), 1 - P(positive)] columns


def _nll(logits: np.ndarray, y: np.ndarray, beta: float) -> float:
    z = logits * beta
    z = z - z.max(axis=1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    return float(-logp[np.arange(len(y)), y].mean())


def fit_temperature(logits: Any, y: Sequence[int], lo: float = 1e-2, hi: float = 1e2) -> dict[str, float]:
    """The temperature T minimising NLL of softmax(logits / T); returns T and NLL before/after."""
    logits = np.asarray(logits, dtype=np.float64)
    y = np.asarray(y, dtype=int)
    a, b = math.log(1 / hi), math.log(1 / lo)  # search log(1/T)
    g = (math.sqrt(5) - 1) / 2
    c, d = b - g * (b - a), a + g * (b - a)
    fc, fd = _nll(logits, y, math.exp(c)), _nll(logits, y, math.exp(d))
    for _ in range(80):
        if fc < fd:
            b, d, fd = d, c, fc
            c = b - g * (b - a)
            fc = _nll(logits, y, math.exp(c))
        else:
            a, c, fc = c, d, fd
            d = a + g * (b - a)
            fd = _nll(logits, y, math.exp(d))
    beta = math.exp((a + b) / 2)
    before, after = _nll(logits, y, 1.0), _nll(logits, y, beta)
    if after > before:  # never worse than no scaling
        beta, after = 1.0, before
    return {"temperature": 1.0 / beta, "nll_before": before, "nll_after": after}


def _counts(p2: np.ndarray, pos: np.ndarray, t: float, w: np.ndarray) -> tuple[float, float, float, float]:
    """Weighted (tp, fp, fn, tn) when rows ``p2`` [P(positive), 1 - P(positive)] are decided at ``t``
    by the one rule (:func:`assay.evaluator.decide_rows`)."""
    pred = decide_rows(p2, _PN, _PN[0], t) == 0
    return (float(w[pred & pos].sum()), float(w[pred & ~pos].sum()), float(w[~pred & pos].sum()),
            float(w[~pred & ~pos].sum()))


def _objective(name: str, tp: float, fp: float, fn: float, tn: float) -> float:
    if name == "kappa":

        return kappa_of_confusion([[tn, fp], [fn, tp]]) or 0.0
    f_pos = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0
    f_neg = 2 * tn / (2 * tn + fn + fp) if tn + fn + fp else 0.0
    return (f_pos + f_neg) / 2


def choose_threshold(p_pos: Any, is_pos: Any, objective: str = "f1", target: float | None = None,
                     weights: Any = None) -> dict[str, Any]:
    """A threshold on P(positive): the midpoint between the calibration scores that best meets ``objective``
    (rows count with ``weights``, default 1 each)."""
    p = np.asarray(p_pos, dtype=float)
    pos = np.asarray(is_pos, dtype=bool)
    w = np.ones(len(p)) if weights is None else np.asarray(weights, dtype=float)
    if objective == "none" or len(p) == 0:
        return {"threshold": 0.5, "method": "fixed at 0.5"}
    u = np.unique(p)
    cuts = np.concatenate([[0.0], (u[:-1] + u[1:]) / 2, [min(1.0, u[-1] + 1e-9)]]) if len(u) > 1 else np.array([0.5])
    p2 = np.column_stack([p, 1.0 - p])
    stats = [(float(t), *_counts(p2, pos, t, w)) for t in cuts]
    if objective in ("f1", "kappa"):
        scored = [(_objective(objective, *s[1:]), -abs(s[0] - 0.5), s[0]) for s in stats]
        best = max(scored)
        name = "macro F1" if objective == "f1" else "Cohen's kappa"
        return {"threshold": best[2], "method": f"max {name} on the calibration rows", "value": best[0]}
    goal = target if target is not None else 0.9
    prec = [(tp / (tp + fp) if tp + fp else 1.0, tp / (tp + fn) if tp + fn else 0.0, t)
            for t, tp, fp, fn, tn in stats]
    if objective == "precision":
        ok = [(r, pr, t) for pr, r, t in prec if pr >= goal and r > 0]
        if ok:
            r, pr, t = max(ok)
            return {"threshold": t, "method": f"precision >= {goal} with the best recall", "value": pr,
                    "recall": r, "reached": True}
        pr, r, t = max(prec, key=lambda x: (x[0], x[1]))
        return {"threshold": t, "method": f"highest precision (target {goal} not reached)", "value": pr,
                "recall": r, "reached": False}
    ok = [(pr, t, r) for pr, r, t in prec if r >= goal]
    pr, t, r = max(ok)  # recall 1 is always reachable at threshold 0
    return {"threshold": t, "method": f"recall >= {goal} with the best precision", "value": r, "precision": pr,
            "reached": True}


def smoothed_prior(label_values: Sequence[str], labels: Sequence[str]) -> dict[str, float]:
    """Label frequencies with add-one smoothing (a label with no rows keeps a small share)."""
    counts = np.array([sum(v == lab for v in label_values) + 1.0 for lab in labels])
    return {lab: float(c) for lab, c in zip(labels, counts / counts.sum())}


def calibrate(evaluator: Any, rows: Sequence[dict[str, Any]], objective: str = "f1",
              target: float | None = None, batch_size: int | None = None,
              target_prior: dict[str, float] | None = None, logits: Any = None,
              source: str = "a calibration slice of the training rows", method: str | None = None,
              review_target: float = TARGET, review_delta: float = DELTA) -> Calibration:
    """Fit temperature, the label shift towards ``target_prior`` (if given) and the threshold (binary
    metrics) on ``rows``; returns them as a :class:`~assay.evaluator.Calibration` and leaves
    ``evaluator`` as it was (apply it with ``evaluator.calibration = cal``).

    ``logits``: the rows' logits when they are already known (e.g. out-of-fold logits of a
    cross-validated linear model), else the evaluator computes them. ``source`` names where the
    rows come from in the report; ``method`` is ``slice`` or ``out-of-fold`` (default: ``out-of-fold``
    when ``logits`` are given). Warnings (fewer than ``FEW_ROWS`` rows, a temperature at a bound of its
    search range) are listed in ``warnings``. The review region (``routing``) is chosen on the same
    rows so that auto-accepted verdicts disagree with people at most ``review_target`` of the time
    with confidence ``1 - review_delta`` (:func:`assay.evaluator._risk.control_risk`).
    ``Calibration.to_dict()`` is what ``evaluator.json`` keeps under ``calibration``.
    """
    labels = list(evaluator.labels)
    metric = evaluator.metric
    y = np.array([labels.index(r["label"]) for r in rows], dtype=int)
    warnings: list[str] = []
    if len(rows) < FEW_ROWS:
        warnings.append(f"calibration fitted on only {len(rows)} rows ({source}; fewer than {FEW_ROWS}): "
                        "temperature and threshold are rough")
    common: dict[str, Any] = {"objective": objective, "target": target, "source": source, "n_rows": len(rows),
                              "small_sample": len(rows) < FEW_ROWS,
                              "method": method or ("out-of-fold" if logits is not None else "slice")}
    if len(rows) < MIN_ROWS or len(set(y.tolist())) < 2:
        return Calibration(**{**common, "method": "none"}, temperature=1.0,
                           threshold=0.5 if metric.is_binary else None, warnings=tuple(warnings),
                           threshold_method=f"not calibrated: {len(rows)} calibration rows of "
                                            f"{len(set(y.tolist()))} label(s) (need {MIN_ROWS}+ rows of 2+ labels)")
    logits = evaluator.predict_logits(rows, batch_size) if logits is None else np.asarray(logits, dtype=np.float64)
    fit = fit_temperature(logits, y, *T_BOUNDS)
    lo, hi = T_BOUNDS
    if fit["temperature"] <= lo * 1.02 or fit["temperature"] >= hi / 1.02:
        warnings.append(f"the calibration temperature {fit['temperature']:.4g} is at a bound of its search "
                        f"range [{lo:g}, {hi:g}]: the model's scores barely separate the labels on the "
                        "calibration rows; treat its probabilities with care")
    shift, prior = _label_shift(metric, labels, rows, target_prior)
    probs = calibrated_probs(logits, fit["temperature"], shift)
    positive = metric.positive if metric.is_binary else None
    threshold, threshold_method, details = None, "argmax (categorical)", None
    if metric.is_binary:
        t = choose_threshold(probs[:, labels.index(positive)], y == labels.index(positive), objective, target,
                             None if shift is None else np.exp(shift)[y])
        threshold, threshold_method, details = t.pop("threshold"), t.pop("method"), t
    routing = control_risk(probs, y, labels, positive, threshold, review_target, review_delta)
    if not routing.met:
        warnings.append(f"no review region certifies at most {review_target:.0%} disagreement among "
                        f"auto-accepted verdicts (confidence {1 - review_delta:.0%}) on {len(rows)} "
                        "calibration rows: the monitor keeps its default band; add rows or raise "
                        "train.review_target")
    return Calibration(**common, temperature=fit["temperature"], nll_before=fit["nll_before"],
                       nll_after=fit["nll_after"], threshold=threshold, threshold_method=threshold_method,
                       threshold_details=details, warnings=tuple(warnings), routing=routing.to_dict(),
                       label_shift=None if prior is None else prior["label_shift"], prior=prior)


def _label_shift(metric: Any, labels: list[str], rows: Sequence[dict[str, Any]],
                 target_prior: dict[str, float] | None) -> tuple[np.ndarray | None, dict[str, Any] | None]:
    """The per-label shift log(target) - log(calibration prior) and its ``prior`` record (None, None
    without a target prior)."""
    if not target_prior:
        return None, None
    have = smoothed_prior([r["label"] for r in rows], labels)
    want = np.array([max(float(target_prior.get(lab, 0.0)), 1e-6) for lab in labels])
    want = want / want.sum()
    shift = np.log(want) - np.log([have[lab] for lab in labels])
    perm = metric.swap_permutation()
    if perm is not None:  # pairwise: which response came first carries no prior, so a and b shift alike
        shift = (shift + shift[perm]) / 2.0
    return shift, {"calibration": have, "target": {lab: float(v) for lab, v in zip(labels, want)},
                   "label_shift": {lab: float(v) for lab, v in zip(labels, shift)}}
