"""The hybrid's stacking head: a weighted log-linear pool of its blocks' log-probabilities.

logits = sum_b w_b log p_b + a bias per label, with w_b >= 0. Out-of-fold scores of ~100 rows can be
anti-correlated with the labels (each fold's model is fitted without that fold's labels and groups);
an unconstrained logistic regression on them learned to invert such a block (PII, seeds regime, split 7
of ``benchmarks/bench_splits.py``: CV kappa 0.50, held-out -0.26). The pool may weigh a block down to
0, never against its own evidence.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np

from ..evaluator._linear import LinearHead


def pool_head(z: np.ndarray, y: np.ndarray, n_labels: int, c: float = 1.0) -> Any:
    """The hybrid's stacking head: logits = sum_b w_b z_b + bias, w_b >= 0 (one weight per block, shared by
    the labels), where ``z`` is the blocks' log-probabilities side by side ([n_rows, n_blocks * n_labels]).

    Fitted like the other heads: class-balanced mean log-loss plus ||w||^2 / (2 C n), by L-BFGS-B with the
    bounds w >= 0. Returned as a :class:`LinearHead` (weight [n_labels, n_blocks * n_labels], zero but
    for w_b on each block's own label column), so the artifact format is the stack's.
    """
    from scipy.optimize import minimize


    z = np.asarray(z, dtype=np.float64)
    blocks = z.shape[1] // n_labels
    zb = z.reshape(len(z), blocks, n_labels)  # [rows, blocks, labels]
    counts = np.bincount(y, minlength=n_labels).astype(float)
    sw = len(y) / (np.count_nonzero(counts) * counts[y])  # balanced, as class_weight="balanced"
    sw = sw / sw.sum()
    onehot = np.eye(n_labels)[y]

    def loss(theta: np.ndarray) -> tuple[float, np.ndarray]:
        w, b = theta[:blocks], theta[blocks:]
        logits = np.einsum("rbl,b->rl", zb, w) + b
        logits -= logits.max(axis=1, keepdims=True)
        logp = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
        g = sw[:, None] * (np.exp(logp) - onehot)  # d(weighted mean NLL) / d logits
        value = float(-(sw * logp[np.arange(len(y)), y]).sum() + (w @ w) / (2 * c * len(y)))
        grad = np.concatenate([np.einsum("rl,rbl->b", g, zb) + w / (c * len(y)), g.sum(axis=0)])
        return value, grad

    theta0 = np.concatenate([np.full(blocks, 1.0 / blocks), np.zeros(n_labels)])
    bounds = [(0.0, None)] * blocks + [(None, None)] * n_labels
    theta = minimize(loss, theta0, jac=True, method="L-BFGS-B", bounds=bounds).x
    weight = np.zeros((n_labels, blocks * n_labels))
    for b in range(blocks):
        weight[np.arange(n_labels), b * n_labels + np.arange(n_labels)] = theta[b]
    return LinearHead(weight, theta[blocks:].copy())


def equal_pool(blocks: int, n_labels: int) -> Any:
    """The blend's stacking head: logits = the mean of the blocks' log-probabilities (weight 1 / blocks on
    each block's own label column, no bias), as a :class:`LinearHead` in the hybrid's artifact format."""

    weight = np.zeros((n_labels, blocks * n_labels))
    for b in range(blocks):
        weight[np.arange(n_labels), b * n_labels + np.arange(n_labels)] = 1.0 / blocks
    return LinearHead(weight, np.zeros(n_labels))


def oof_logits(fit_head: Callable[[Any, np.ndarray], Any], x: Any, y: np.ndarray,
               folds: Sequence[tuple[np.ndarray, np.ndarray]], n_labels: int,
               per_fold: Sequence[tuple[Any, Any]] | None = None) -> np.ndarray:
    """Out-of-fold logits: ``fit_head(x, y)`` (a :class:`LinearHead`) fitted on each fold's training part,
    applied to its rows; a training part with one label gives its smoothed label counts' logs instead.
    ``per_fold``: each fold's own (training part, validation part) matrices, for features fitted inside the
    fold (``x`` is then unused)."""
    out = np.zeros((len(y), n_labels))
    for f, (tr, va) in enumerate(folds):
        if len(set(y[tr].tolist())) < 2:
            out[va] = np.log(np.bincount(y[tr], minlength=n_labels) + 1.0)
            continue
        xt, xv = per_fold[f] if per_fold is not None else (x[tr], x[va])
        out[va] = fit_head(xt, y[tr]).logits(xv)
    return out


def oof_pool(z: np.ndarray, y: np.ndarray, folds: Sequence[tuple[np.ndarray, np.ndarray]], n_labels: int,
             c: float = 1.0) -> np.ndarray:
    """Out-of-fold logits of the pool: fitted on each fold's training part, applied to its rows."""
    return oof_logits(lambda zt, yt: pool_head(zt, yt, n_labels, c), z, y, folds, n_labels)
