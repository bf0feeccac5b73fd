"""Classification figures with numpy only: agreement, ranking, calibration, bootstrap intervals.

Conventions (also in the report):

- Binary metrics predict the positive label when P(positive) >= threshold (default 0.5);
  categorical metrics predict the argmax.
- Undefined figures are ``None`` (JSON null), never NaN: Cohen's kappa when truth and
  predictions are all one and the same label (chance agreement is 1); AUROC/AUPRC when a
  needed class is missing from the truth.
- Macro precision/recall/F1 average the labels that occur in the truth or the predictions;
  a label absent from both does not drag the average to 0.
- Brier score: binary, mean (P(positive) - 1[true = positive])^2; categorical, mean over rows
  of sum_k (p_k - 1[true = k])^2 (Brier's original multi-class form).
- ECE: 15 equal-width bins of the predicted label's probability, sum of bin weight times
  |accuracy - mean confidence|; for binary metrics also ``ece_positive``, of P(positive)
  against the observed positive rate.
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Any, Sequence

import numpy as np

from ..errors import AssayError
from ..evaluator._contract import decide_rows
from ..stats import (_confusion, agreement_kappa, bootstrap_ci, cohen_kappa, judge_agreement,  # noqa: F401
                     kappa_of_confusion)

ECE_BINS = 15


def classification_metrics(
    y_true: Sequence[Any],
    probs: Any,
    labels: Sequence[str],
    positive: str | None = None,
    threshold: float | None = None,
    bootstrap: int = 1000,
    seed: int = 0,
) -> dict[str, Any]:
    """Every figure of the report for one system; ``probs`` is [n, len(labels)] in label order."""
    labels = [str(x) for x in labels]
    k = len(labels)
    if k < 2:
        raise AssayError("at least two labels", f"{labels}", "pass the metric's labels", code="invalid_input")
    y = _label_indices(y_true, labels)
    p = _check_probs(probs, len(y), k)
    binary = k == 2
    pos_i = None
    if binary:
        positive = labels[0] if positive is None else str(positive)
        if positive not in labels:
            raise AssayError(f"a positive label among {labels}", f"'{positive}'",
                             "pass the metric's positive label", code="invalid_input")
        pos_i = labels.index(positive)
        threshold = 0.5 if threshold is None else float(threshold)
        pred = decide_rows(p, labels, positive, threshold)
    else:
        threshold = None
        pred = decide_rows(p, labels, None, None)
    n = len(y)
    cm = _confusion(y, pred, k)
    per_class, macro = _prf(cm, labels)
    conf = p[np.arange(n), pred]
    correct = (pred == y).astype(float)
    out: dict[str, Any] = {
        "n": n,
        "labels": labels,
        "positive": positive if binary else None,
        "threshold": threshold,
        "accuracy": float(correct.mean()),
        "kappa": kappa_of_confusion(cm),
        "precision_macro": macro[0],
        "recall_macro": macro[1],
        "f1_macro": macro[2],
        "per_class": per_class,
        "auroc": None,
        "auprc": None,
        "ece": _ece(conf, correct),
        "ece_positive": None,
        "brier": None,
        "confusion": cm.tolist(),
        "label_counts": {lab: int(c) for lab, c in zip(labels, cm.sum(axis=1))},
        "predicted_counts": {lab: int(c) for lab, c in zip(labels, cm.sum(axis=0))},
        "reliability": reliability_bins(conf, correct),
        "reliability_positive": None,
    }
    onehot = np.eye(k)[y]
    if binary:
        is_pos = (y == pos_i).astype(float)
        pp = p[:, pos_i]
        out["auroc"] = auroc(is_pos, pp)
        out["auprc"] = average_precision(is_pos, pp)
        out["ece_positive"] = _ece(pp, is_pos)
        out["brier"] = float(np.mean((pp - is_pos) ** 2))
        out["reliability_positive"] = reliability_bins(pp, is_pos)
        out["f1_positive"] = per_class[positive]["f1"]
    else:
        out["brier"] = float(np.mean(np.sum((p - onehot) ** 2, axis=1)))
        if all(cm[i].sum() > 0 for i in range(k)):
            aucs = [auroc(onehot[:, i], p[:, i]) for i in range(k)]
            aps = [average_precision(onehot[:, i], p[:, i]) for i in range(k)]
            out["auroc"] = _mean_or_none(aucs)
            out["auprc"] = _mean_or_none(aps)
    out["ci"] = bootstrap_ci(y, pred, k, bootstrap, seed)
    return _clean(out)


def verdict_metrics(y_true: Sequence[Any], verdicts: Sequence[str | None], labels: Sequence[str],
                    positive: str | None = None, probs: Any = None, bootstrap: int = 1000, seed: int = 0
                    ) -> dict[str, Any]:
    """The figures of a system that answers with labels and may not answer (the LLM judge).

    ``n``, ``kappa`` (and its interval under ``ci``) and ``accuracy`` are over every row, by the one rule
    for rows it did not answer (:func:`assay.stats.judge_agreement`: a disagreement), with ``answered`` and
    ``unanswered`` counted; the other figures (F1, AUROC, calibration, confusion) are
    :func:`classification_metrics` of the answered rows, from ``probs`` (theirs, in order) or else one-hot verdicts.
    """
    labels = [str(x) for x in labels]
    agreement = judge_agreement([str(t) for t in y_true], verdicts, labels, bootstrap=bootstrap, seed=seed)
    keep = [i for i, v in enumerate(verdicts) if v in labels]
    m: dict[str, Any] = {}
    if keep:
        p = np.eye(len(labels))[[labels.index(verdicts[i]) for i in keep]] if probs is None else probs
        m = classification_metrics([y_true[i] for i in keep], p, labels, positive=positive,
                                   threshold=0.5 if positive else None, bootstrap=bootstrap, seed=seed)
        m["ci"]["kappa"] = agreement["interval"]
    m.update(_clean({k: agreement[k] for k in ("n", "answered", "unanswered", "kappa", "accuracy")}))
    return m


# --- inputs ---------------------------------------------------------------------------------

def _label_indices(y_true: Sequence[Any], labels: list[str]) -> np.ndarray:
    index = {lab: i for i, lab in enumerate(labels)}
    out, missing, unknown = [], 0, Counter()
    for v in y_true:
        if v is None or v == "":
            missing += 1
        elif str(v) in index:
            out.append(index[str(v)])
        else:
            unknown[str(v)] += 1
    if missing or unknown:
        found = []
        if missing:
            found.append(f"{missing} rows without a label")
        if unknown:
            found.append(f"{sum(unknown.values())} rows with unknown labels {sorted(unknown)[:5]}")
        raise AssayError(f"every evaluation row labeled with one of {labels}", "; ".join(found),
                         "label those rows or map their labels with label_map", code="invalid_rows")
    if not out:
        raise AssayError("at least one labeled row to evaluate", "no rows", "pass labeled rows",
                         code="invalid_rows")
    return np.asarray(out, dtype=int)


def _check_probs(probs: Any, n: int, k: int) -> np.ndarray:
    p = np.asarray(probs, dtype=float)
    if p.ndim != 2 or p.shape != (n, k):
        raise AssayError(f"probabilities of shape [{n}, {k}] (rows x labels)", f"shape {list(p.shape)}",
                         "pass one probability per label for every row, in label order", code="invalid_input")
    bad = int(np.sum(~np.isfinite(p).all(axis=1)))
    if bad:
        raise AssayError("finite probabilities", f"{bad} rows with NaN or infinite values",
                         "check the scorer's output", code="invalid_input")
    return p


# --- precision, recall, F1 ------------------------------------------------------------------

def _prf(cm: np.ndarray, labels: list[str]) -> tuple[dict[str, dict[str, Any]], tuple[float, float, float]]:
    tp = np.diag(cm).astype(float)
    fp = cm.sum(axis=0) - tp
    fn = cm.sum(axis=1) - tp
    prec = np.divide(tp, tp + fp, out=np.zeros_like(tp), where=(tp + fp) > 0)
    rec = np.divide(tp, tp + fn, out=np.zeros_like(tp), where=(tp + fn) > 0)
    f1 = np.divide(2 * tp, 2 * tp + fp + fn, out=np.zeros_like(tp), where=(2 * tp + fp + fn) > 0)
    per = {lab: {"precision": float(prec[i]), "recall": float(rec[i]), "f1": float(f1[i]),
                 "support": int(tp[i] + fn[i])} for i, lab in enumerate(labels)}
    seen = (tp + fp + fn) > 0
    if not seen.any():
        return per, (0.0, 0.0, 0.0)
    return per, (float(prec[seen].mean()), float(rec[seen].mean()), float(f1[seen].mean()))


# --- ranking ---------------------------------------------------------------------------------

def _rankdata(x: np.ndarray) -> np.ndarray:
    """Average ranks (1-based), ties sharing the mean of their ranks."""
    order = np.argsort(x, kind="mergesort")
    xs = x[order]
    ranks = np.empty(len(x), dtype=float)
    starts = np.r_[0, np.flatnonzero(np.diff(xs)) + 1]
    ends = np.r_[starts[1:], len(x)]
    for s, e in zip(starts, ends):
        ranks[order[s:e]] = (s + e + 1) / 2.0
    return ranks


def auroc(is_pos: np.ndarray, score: np.ndarray) -> float | None:
    """Area under the ROC curve (Mann-Whitney U); None when one class is missing."""
    is_pos = np.asarray(is_pos, dtype=bool)
    n_pos, n_neg = int(is_pos.sum()), int((~is_pos).sum())
    if n_pos == 0 or n_neg == 0:
        return None
    r = _rankdata(np.asarray(score, dtype=float))
    return float((r[is_pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def average_precision(is_pos: np.ndarray, score: np.ndarray) -> float | None:
    """Area under the precision-recall curve as average precision (step-wise, like sklearn)."""
    is_pos = np.asarray(is_pos, dtype=float)
    if is_pos.sum() == 0 or is_pos.sum() == len(is_pos):
        return None
    order = np.argsort(-np.asarray(score, dtype=float), kind="mergesort")
    s, t = np.asarray(score, dtype=float)[order], is_pos[order]
    last = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]  # end of each run of tied scores
    tps = np.cumsum(t)[last]
    fps = (last + 1) - tps
    precision = tps / (tps + fps)
    recall = tps / tps[-1]
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def _mean_or_none(values: list[float | None]) -> float | None:
    vals = [v for v in values if v is not None]
    return float(np.mean(vals)) if len(vals) == len(values) and vals else None


# --- calibration -----------------------------------------------------------------------------

def _bin_index(conf: np.ndarray, n_bins: int) -> np.ndarray:
    return np.minimum((np.clip(conf, 0, 1) * n_bins).astype(int), n_bins - 1)


def _ece(conf: np.ndarray, hit: np.ndarray, n_bins: int = ECE_BINS) -> float:
    b = _bin_index(conf, n_bins)
    total = 0.0
    for i in range(n_bins):
        m = b == i
        if m.any():
            total += m.mean() * abs(hit[m].mean() - conf[m].mean())
    return float(total)


def expected_calibration_error(conf: Any, hit: Any, n_bins: int = ECE_BINS) -> float:
    """ECE of probabilities ``conf`` against outcomes ``hit`` (1 = the event happened)."""
    return _ece(np.asarray(conf, dtype=float), np.asarray(hit, dtype=float), n_bins)


def reliability_bins(conf: np.ndarray, hit: np.ndarray, n_bins: int = ECE_BINS) -> list[dict[str, Any]]:
    """Non-empty bins for a reliability diagram: edges, mean confidence, observed rate, count."""
    b = _bin_index(conf, n_bins)
    out = []
    for i in range(n_bins):
        m = b == i
        if m.any():
            out.append({"lo": i / n_bins, "hi": (i + 1) / n_bins, "confidence": float(conf[m].mean()),
                        "accuracy": float(hit[m].mean()), "count": int(m.sum())})
    return out


# --- output ----------------------------------------------------------------------------------

def _clean(v: Any, digits: int = 6) -> Any:
    """Plain JSON types: numpy scalars to Python, NaN/inf to None, floats rounded."""
    if isinstance(v, dict):
        return {str(k): _clean(x, digits) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_clean(x, digits) for x in v]
    if isinstance(v, np.ndarray):
        return _clean(v.tolist(), digits)
    if isinstance(v, (bool, np.bool_)):
        return bool(v)
    if isinstance(v, (int, np.integer)):
        return int(v)
    if isinstance(v, (float, np.floating)):
        f = float(v)
        return round(f, digits) if math.isfinite(f) else None
    return v


to_jsonable = _clean
