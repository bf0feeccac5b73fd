"""Agreement statistics, the one copy: Cohen's kappa (unweighted and with item weights) and its
bootstrap interval. numpy only; every stage imports it from here (the report re-exports it).

- :func:`kappa_of_confusion`: kappa of a confusion matrix (or a stack of them, for the bootstrap).
- :func:`cohen_kappa`: kappa of two label-index arrays.
- :func:`agreement_kappa`: kappa between two raters' labels (any values, optional item weights):
  the judge vs people, reviewers vs the evaluator, drift.
- :func:`bootstrap_ci`: percentile 95% intervals of kappa and macro F1.
- :func:`judge_agreement`: a rater that may not answer (the LLM judge) against people: the one rule
  for unanswered rows (they count as disagreements), used by the report, ``measure_judge`` and ``tune_judge``.

Undefined kappa (no rows, or chance agreement within ``KAPPA_EPS`` of 1) is ``None``, never NaN.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np


def _confusion(y: np.ndarray, pred: np.ndarray, k: int) -> np.ndarray:
    return np.bincount(y * k + pred, minlength=k * k).reshape(k, k)


KAPPA_EPS = 1e-12  # chance agreement within this of 1: kappa is undefined (None)


def kappa_of_confusion(cm: Any) -> Any:
    """Cohen's kappa of a confusion matrix ``[k, k]`` (counts or weights): a float, or None when it is
    undefined (no rows, or chance agreement is total). A stack ``[b, k, k]`` gives an array with NaN there."""
    cm = np.asarray(cm, dtype=float)
    n = cm.sum(axis=(-2, -1))
    with np.errstate(divide="ignore", invalid="ignore"):
        po = np.trace(cm, axis1=-2, axis2=-1) / n
        pe = (cm.sum(axis=-1) * cm.sum(axis=-2)).sum(axis=-1) / (n * n)
        kappa = np.where((n > 0) & (pe < 1 - KAPPA_EPS), (po - pe) / (1 - pe), np.nan)
    if cm.ndim == 2:
        return None if np.isnan(kappa) else float(kappa)
    return kappa


def cohen_kappa(y: np.ndarray, pred: np.ndarray, k: int) -> float | None:
    """Cohen's kappa of two label-index arrays over ``k`` labels; None when undefined."""
    return kappa_of_confusion(_confusion(np.asarray(y), np.asarray(pred), k))


def agreement_kappa(a: Sequence[Any], b: Sequence[Any], labels: Sequence[Any] | None = None,
                    weights: Sequence[float] | None = None) -> float | None:
    """Cohen's kappa between two raters' labels (any hashable values; optionally weighted items).

    ``labels``: the label set (default: every value seen); pairs with a value outside it are left
    out. None when undefined (no rows, different lengths, or chance agreement is total).
    """
    if len(a) == 0 or len(a) != len(b):
        return None
    labs = list(labels) if labels else sorted({*a, *b}, key=str)
    idx = {lab: i for i, lab in enumerate(labs)}
    w = np.ones(len(a)) if weights is None else np.asarray(weights, dtype=float)
    cm = np.zeros((len(labs), len(labs)))
    for j, (x, y) in enumerate(zip(a, b)):
        if x in idx and y in idx:
            cm[idx[x], idx[y]] += w[j]
    return kappa_of_confusion(cm)


def judge_agreement(truth: Sequence[Any], verdicts: Sequence[Any], labels: Sequence[Any], *,
                    bootstrap: int = 0, seed: int = 0) -> dict[str, Any]:
    """The judge's verdicts against people's labels (``truth``, one of ``labels`` per row).

    The one rule for a row the judge did not answer (a verdict that is None or not one of ``labels``:
    unparseable, refused, failed): it is kept, as an extra "no answer" class, so it counts as a
    disagreement in kappa, its interval and accuracy, and it is counted in ``unanswered``. Leaving such rows
    out would let a judge look better by not answering the hard ones.

    Returns ``n``, ``answered``, ``unanswered``, ``kappa`` (None when undefined), ``interval`` (percentile
    95% bootstrap interval of kappa over ``bootstrap`` resamples; None with 0) and ``accuracy`` (None
    without rows).
    """
    if len(truth) != len(verdicts):
        raise ValueError(f"{len(truth)} labels but {len(verdicts)} verdicts")
    idx = {lab: i for i, lab in enumerate(labels)}
    none = len(idx)  # the "no answer" class
    y = np.array([idx[t] for t in truth], dtype=int)
    p = np.array([idx.get(v, none) for v in verdicts], dtype=int)
    answered = int((p != none).sum())
    out: dict[str, Any] = {"n": len(y), "answered": answered, "unanswered": len(y) - answered,
                           "kappa": None, "interval": None, "accuracy": None}
    if len(y):
        out["kappa"] = cohen_kappa(y, p, none + 1)
        out["interval"] = bootstrap_ci(y, p, none + 1, n_boot=bootstrap, seed=seed)["kappa"]
        out["accuracy"] = float(np.mean(y == p))
    return out


def bootstrap_ci(y: np.ndarray, pred: np.ndarray, k: int, n_boot: int = 1000, seed: int = 0,
                 chunk: int = 100) -> dict[str, Any]:
    """Percentile 95% intervals for kappa and macro F1 over ``n_boot`` resamples of the rows."""
    if n_boot <= 0 or len(y) < 2:
        return {"n_boot": 0, "seed": seed, "kappa": None, "f1_macro": None}
    rng = np.random.default_rng(seed)
    codes = y * k + pred
    n = len(y)
    kappas, f1s = [], []
    for start in range(0, n_boot, chunk):
        b = min(chunk, n_boot - start)
        idx = rng.integers(0, n, size=(b, n))
        flat = (codes[idx] + (np.arange(b) * k * k)[:, None]).ravel()
        cms = np.bincount(flat, minlength=b * k * k).reshape(b, k, k).astype(float)
        tp = np.diagonal(cms, axis1=1, axis2=2)
        rows, cols = cms.sum(axis=2), cms.sum(axis=1)
        kappas.append(kappa_of_confusion(cms))
        with np.errstate(divide="ignore", invalid="ignore"):
            denom = 2 * tp + (cols - tp) + (rows - tp)  # 0 only for a label absent on both sides
            f1 = np.where(denom > 0, 2 * tp / np.where(denom > 0, denom, 1), np.nan)
            f1s.append(np.nanmean(f1, axis=1))
    return {"n_boot": int(n_boot), "seed": int(seed),
            "kappa": _interval(np.concatenate(kappas)), "f1_macro": _interval(np.concatenate(f1s))}


def _interval(values: np.ndarray) -> list[float] | None:
    v = values[np.isfinite(values)]
    if not len(v):
        return None
    return [float(np.percentile(v, 2.5)), float(np.percentile(v, 97.5))]
