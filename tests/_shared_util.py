"""Small linear-family evaluators on the real bases (MiniLM, SmolLM2) for the shared-body scoring tests
(not a test module): blocks fitted on real rows, heads fitted by logistic regression, in seconds."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

DATA = Path(__file__).resolve().parent / "fixtures" / "data"


def real_rows(name: str = "faithfulness_begin.jsonl", n: int = 24, start: int = 0) -> list[dict[str, Any]]:
    """``n`` rows of a committed fixture file (input, output, context and a true/false label)."""
    lines = (DATA / name).read_text(encoding="utf-8").splitlines()[start:start + n]
    return [json.loads(line) for line in lines]


def labels_for(metric: Any, rows: Sequence[dict[str, Any]], salt: int = 0) -> list[int]:
    """Training labels (indices into ``metric.labels``): the rows' own true/false where the metric is
    binary, else by output length; ``salt`` flips a share of them so two metrics' heads differ."""
    labels = list(metric.labels)
    out = []
    for i, r in enumerate(rows):
        if len(labels) == 2 and r.get("label") in labels:
            k = labels.index(r["label"])
        else:
            k = len(str(r.get("output") or r.get("input") or "")) % len(labels)
        out.append(k if salt == 0 or (i + salt) % 3 else (k + 1) % len(labels))
    return out


def _stack(kind: str, n_blocks: int, n_labels: int, seed: int) -> Any:
    """The stacking head: ``blend`` the mean of the blocks' log-probabilities, ``hybrid`` positive weights."""
    from assay.evaluator._linear import LinearHead

    w = np.zeros((n_labels, n_blocks * n_labels))
    rng = np.random.default_rng(seed)
    for b in range(n_blocks):
        for k in range(n_labels):
            w[k, b * n_labels + k] = 1.0 / n_blocks if kind == "blend" else float(rng.uniform(0.3, 1.2))
    return LinearHead(w, np.zeros(n_labels))


def linear_evaluator(metric: Any, rows: Sequence[dict[str, Any]], kind: str = "embed", *, max_length: int = 64,
                     threshold: float | None = 0.5, temperature: float = 1.0, precision: str = "auto",
                     salt: int = 0, grounding: bool = False, batch_size: int = 32) -> Any:
    """An evaluator of ``kind`` (embed, tfidf, lm, hybrid = tfidf + embed, blend = embed + lm) fitted on ``rows``."""
    from sklearn.linear_model import LogisticRegression

    from assay.evaluator import Calibration, Evaluator
    from assay.evaluator._base_models import resolve_base
    from assay.evaluator._linear import (
        EmbedFeatures,
        LinearHead,
        LinearModel,
        TfidfFeatures,
    )
    from assay.evaluator._lm_features import LmFeatures
    from assay.metrics import load_metric

    metric = load_metric(metric) if isinstance(metric, str) else metric
    names = {"embed": ["embed"], "tfidf": ["tfidf"], "lm": ["lm"], "hybrid": ["tfidf", "embed"],
             "blend": ["embed", "lm"]}[kind]
    blocks: dict[str, Any] = {}
    for name in names:
        if name == "tfidf":
            blocks[name] = TfidfFeatures(metric)
        elif name == "embed":
            blocks[name] = EmbedFeatures(metric, resolve_base("minilm"), max_length, batch_size=batch_size,
                                         grounding=grounding)
        else:
            blocks[name] = LmFeatures(metric, resolve_base("smollm2", hash_files=False), max_length, batch_size=16)
    y = labels_for(metric, rows, salt)
    heads = {}
    for name, block in blocks.items():
        clf = LogisticRegression(max_iter=500, C=4.0).fit(block.fit(list(rows)), y)
        heads[name] = LinearHead.from_sklearn(clf, len(metric.labels))
    stack = _stack(kind, len(blocks), len(metric.labels), salt) if len(blocks) > 1 else None
    model = LinearModel(metric, blocks, heads, stack, max_length)
    cal = Calibration(temperature=temperature, threshold=threshold if metric.is_binary else None)
    return Evaluator(metric, model, calibration=cal, precision=precision)
