"""Grounding features: how the judged field relates to each field it is judged against.

For shapes with context (``input_output``, ``rag``, ``tools``, ``trace``, ``session``), whether a
response is faithful, a tool call right or an answer on topic is largely a relation between two
fields, which one embedding of the whole row (``embed``) or a bag of words (``tfidf``) does not
expose to a linear head. The ``embed`` and ``contrastive`` blocks therefore add, per context field:

- embedding interactions of the judged field ``u`` and the context field ``v``, each embedded on its
  own (Sentence-BERT's classification features): ``u * v``, ``|u - v|`` and ``cos(u, v)``;
- lexical overlap (:func:`lexical`): the share of the judged field's word tokens (distinct, and
  counted) found in the context field, the share of the context field's distinct tokens found in the
  judged field, the share of the judged field's numbers found in the context field, whether it has
  numbers, and both lengths (log tokens). Standardised with the training rows' mean and standard
  deviation, which the artifact stores.

Pairwise metrics get none (their relation is A versus B, handled by scoring both orders).
"""

from __future__ import annotations

import json
import re
from typing import Any, Mapping, Sequence

import numpy as np

from ..metrics import MetricSpec
from ..metrics._render import judged_field
from ..metrics._spec import InputShape

TOKEN = re.compile(r"\w+", re.UNICODE)
LEXICAL = ("judged_found", "judged_found_counted", "context_found", "numbers_found", "has_numbers",
           "judged_log_tokens", "context_log_tokens")  # per context field


def context_fields(metric: MetricSpec) -> list[str]:
    """The fields the judged field is related to (none for single-field and pairwise metrics)."""
    if metric.shape == InputShape.pairwise:
        return []
    judged = judged_field(metric)
    return [f for f in metric.fields if f != judged]


def _text(value: Any) -> str:
    if value is None:
        return ""
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)


def _tokens(value: Any) -> list[str]:
    return [t.lower() for t in TOKEN.findall(_text(value))]


def lexical(metric: MetricSpec, rows: Sequence[Mapping[str, Any]]) -> np.ndarray:
    """Raw lexical-overlap features, ``[n_rows, len(LEXICAL) * n_context_fields]``."""
    judged, ctx = judged_field(metric), context_fields(metric)
    out = np.zeros((len(rows), len(LEXICAL) * len(ctx)), dtype=np.float64)
    for i, row in enumerate(rows):
        a = _tokens(row.get(judged))
        distinct = set(a)
        numbers = [t for t in a if t[0].isdigit()]
        for j, f in enumerate(ctx):
            b = set(_tokens(row.get(f)))
            shared = distinct & b
            out[i, j * len(LEXICAL):(j + 1) * len(LEXICAL)] = (
                len(shared) / max(1, len(distinct)),
                sum(t in b for t in a) / max(1, len(a)),
                len(shared) / max(1, len(b)),
                sum(t in b for t in numbers) / max(1, len(numbers)),
                float(bool(numbers)),
                np.log1p(len(a)),
                np.log1p(len(b)),
            )
    return out


def interactions(u: np.ndarray, vs: Sequence[np.ndarray]) -> np.ndarray:
    """``[u * v, |u - v|, cos(u, v)]`` for each context embedding ``v`` (rows L2-normalised)."""
    parts = []
    for v in vs:
        parts += [u * v, np.abs(u - v), (u * v).sum(axis=1, keepdims=True)]
    return np.hstack(parts) if parts else np.zeros((len(u), 0), dtype=np.float32)


def standardise(x: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    return (x - mean) / std


def fit_standardiser(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation per column (a constant column gets std 1)."""
    mean = x.mean(axis=0) if len(x) else np.zeros(x.shape[1])
    std = x.std(axis=0) if len(x) else np.ones(x.shape[1])
    return mean, np.where(std > 1e-9, std, 1.0)
