"""Which rows of a training set a person reviews: the stratified sample of a generated set
(``sample_for_review``, written beside it as ``review_sample.jsonl``) and the fixed pick of a registry
dataset (``pick_for_review``, stored as its review items). The decisions on them are ``_store``'s."""

from __future__ import annotations

import hashlib
from collections import defaultdict
from typing import Any, Mapping, Sequence

import numpy as np


def sample_for_review(rows: Sequence[Mapping[str, Any]], size: int = 50, seed: int = 0) -> list[dict[str, Any]]:
    """``size`` rows stratified by (label, strategy): every stratum gets a share in proportion to
    its size (at least one row while the size allows), picked at random with ``seed``."""
    if size <= 0 or not rows:
        return []
    strata: dict[tuple[str, str], list[int]] = defaultdict(list)
    for i, r in enumerate(rows):
        strata[(str(r.get("label")), str(_lineage(r).get("strategy")))].append(i)
    keys = sorted(strata)
    size = min(size, len(rows))
    alloc = {k: 0 for k in keys}
    for k in sorted(keys, key=lambda k: -len(strata[k]))[:size]:
        alloc[k] = 1
    left = size - sum(alloc.values())
    if left > 0:
        quota = {k: left * len(strata[k]) / len(rows) for k in keys}
        for k in keys:
            alloc[k] += min(int(quota[k]), len(strata[k]) - alloc[k])
        order = sorted(keys, key=lambda k: -(quota[k] - int(quota[k])))
        while sum(alloc.values()) < size:
            for k in order:
                if sum(alloc.values()) < size and alloc[k] < len(strata[k]):
                    alloc[k] += 1
    rng = np.random.default_rng(seed)
    picked: list[int] = []
    for k in keys:
        idx = strata[k]
        picked += [idx[i] for i in sorted(rng.choice(len(idx), size=alloc[k], replace=False))]
    return [dict(rows[i]) for i in sorted(picked)]


def _lineage(row: Mapping[str, Any]) -> Mapping[str, Any]:
    return (row.get("meta") or {}).get("lineage") or {}


def pick_for_review(key: str, n_rows: int, n: int = 50) -> list[int]:
    """``n`` (at least one) row positions out of ``n_rows``, the same for the same ``key`` (a dataset id)
    every time: the positions ordered by a hash of key and position, the first ``n``, in row order."""
    order = sorted(range(n_rows), key=lambda i: hashlib.sha256(f"{key}:{i}".encode()).hexdigest())
    return sorted(order[:max(1, n)])
