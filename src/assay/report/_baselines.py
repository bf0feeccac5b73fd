"""Baselines the evaluator must beat, trained on the same training rows it saw.

- ``majority``: always the most frequent training label; its probabilities are the
  training label frequencies.
- ``tfidf_logreg``: TF-IDF of word 1-2 grams and character 2-5 grams (within word
  boundaries, sublinear tf) -> logistic regression with balanced class weights, C picked
  by stratified CV (macro F1) on the training rows: 3 folds over C in 0.3/1/3/10, or, when
  the feature matrix is large (long contexts or tool schemas), 2 folds over C in 1/10.
  Its text is the fields the metric reads, each prefixed by its name (text and analyzers:
  ``assay.evaluator._tfidf``, the ``tfidf`` candidate's features). Binary threshold: 0.5 (the class weights
  already balance the classes; the evaluator's tuned threshold is not reused).
"""

from __future__ import annotations

import time
from collections import Counter
from typing import Any, Mapping, Sequence

import numpy as np

from ..errors import require
from ..evaluator._tfidf import baseline_text, tfidf_vectorizers
from ..metrics import MetricSpec
from ._metrics import classification_metrics

C_GRID = (0.3, 1.0, 3.0, 10.0)
C_GRID_LARGE = (1.0, 10.0)
LARGE_NNZ = 2_500_000  # non-zeros in the training matrix above which the smaller CV is used


def _labeled(rows: Sequence[Mapping[str, Any]], labels: Sequence[str]) -> tuple[list[Mapping[str, Any]], int]:
    kept = [r for r in rows if r.get("label") in labels]
    return kept, len(rows) - len(kept)


def run_baselines(
    metric: MetricSpec,
    train_rows: Sequence[Mapping[str, Any]],
    eval_rows: Sequence[Mapping[str, Any]],
    bootstrap: int = 1000,
    seed: int = 0,
    names: Sequence[str] = ("majority", "tfidf_logreg"),
) -> dict[str, dict[str, Any]]:
    """Each baseline's classification_metrics on ``eval_rows`` (plus how it was fitted).

    Training rows without one of the metric's labels are left out and counted in
    ``dropped_train_rows``. A baseline that cannot be fitted (e.g. one training label)
    has ``{"skipped": reason}`` instead of figures.
    """
    labels = list(metric.labels)
    train, dropped = _labeled(train_rows, labels)
    y_eval = [r.get("label") for r in eval_rows]
    kw = dict(labels=labels, positive=metric.positive if metric.is_binary else None,
              threshold=0.5 if metric.is_binary else None, bootstrap=bootstrap, seed=seed)
    out: dict[str, dict[str, Any]] = {}
    if not train:
        reason = "no labeled training rows"
        return {name: {"skipped": reason, "dropped_train_rows": dropped} for name in names}
    counts = Counter(r["label"] for r in train)
    if "majority" in names:
        freq = np.array([counts.get(lab, 0) for lab in labels], dtype=float) / len(train)
        probs = np.tile(freq, (len(eval_rows), 1))
        m = classification_metrics(y_eval, probs, **kw)
        majority = max(labels, key=lambda lab: (counts.get(lab, 0), -labels.index(lab)))
        m.update(description=f"always '{majority}' (the most frequent training label)",
                 n_train=len(train), dropped_train_rows=dropped)
        out["majority"] = m
    if "tfidf_logreg" in names:
        if len(counts) < 2:
            out["tfidf_logreg"] = {"skipped": f"the training rows have one label ({next(iter(counts))})",
                                   "n_train": len(train), "dropped_train_rows": dropped}
        else:
            t0 = time.perf_counter()
            probs, info = _tfidf_logreg(metric, train, eval_rows, seed)
            m = classification_metrics(y_eval, probs, **kw)
            m.update(info, n_train=len(train), dropped_train_rows=dropped,
                     fit_seconds=round(time.perf_counter() - t0, 3))
            out["tfidf_logreg"] = m
    return out


def _tfidf_logreg(metric: MetricSpec, train: Sequence[Mapping[str, Any]], eval_rows: Sequence[Mapping[str, Any]],
                  seed: int) -> tuple[np.ndarray, dict[str, Any]]:
    require("sklearn", "the TF-IDF baseline", "train", package="scikit-learn")
    from scipy.sparse import hstack
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score

    labels = list(metric.labels)
    x_text = [baseline_text(metric, r) for r in train]
    e_text = [baseline_text(metric, r) for r in eval_rows]
    y = np.array([labels.index(r["label"]) for r in train])
    word, char = tfidf_vectorizers()
    # The vectorizers see only the training rows (IDF is shared across CV folds: unsupervised).
    x = hstack([word.fit_transform(x_text), char.fit_transform(x_text)]).tocsr()
    xe = hstack([word.transform(e_text), char.transform(e_text)]).tocsr()

    def model(c: float) -> Any:
        return LogisticRegression(C=c, class_weight="balanced", max_iter=2000, random_state=seed)

    smallest = min(Counter(y.tolist()).values())
    scores: dict[float, float] = {}
    grid, folds = (C_GRID, 3) if x.nnz <= LARGE_NNZ else (C_GRID_LARGE, 2)
    if smallest >= folds and len(y) >= 30:
        cv = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
        for c in grid:
            scores[c] = float(np.mean(cross_val_score(model(c), x, y, cv=cv, scoring="f1_macro")))
        best_c = max(grid, key=lambda c: (scores[c], -c))
    else:
        best_c = 1.0
    clf = model(best_c).fit(x, y)
    probs = np.zeros((len(eval_rows), len(labels)))
    probs[:, clf.classes_] = clf.predict_proba(xe)
    info = {
        "description": "TF-IDF word 1-2 + char 2-5 grams, logistic regression (balanced), threshold 0.5",
        "C": best_c,
        "cv_folds": folds if scores else 0,
        "cv_f1_macro": {str(c): round(s, 4) for c, s in scores.items()} or None,
        "features": int(x.shape[1]),
    }
    return probs, info
