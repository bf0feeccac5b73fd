"""A small deterministic evaluator with the ``assay.evaluator.Evaluator`` interface, for monitor tests.

P(positive) is a hash of the rendered prompt (uniform on [0, 1]) unless ``scores`` maps a row id
to a fixed value. Rendering goes through ``assay.metrics.render`` like the real evaluator.
"""

from __future__ import annotations

import hashlib

import numpy as np

from assay.evaluator import scores_from_probs
from assay.metrics import get_preset, load_metric, render


class FakeEvaluator:
    def __init__(self, metric="pii", threshold=0.5, scores=None):
        self.metric = load_metric(metric) if not hasattr(metric, "shape") else metric
        self.labels = tuple(self.metric.labels)
        self.threshold = threshold if self.metric.is_binary else None
        self.info = {"family": "fake", "metric": self.metric.name}
        self.scores = dict(scores or {})
        self.calls = 0
        self.prompts = []

    def _p(self, row):
        if row["id"] in self.scores:
            return float(self.scores[row["id"]])
        text = render(self.metric, row)
        self.prompts.append(text)
        return int(hashlib.sha256(text.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF

    def predict_proba(self, rows, batch_size=None):
        out = []
        for r in rows:
            p = self._p(r)
            if self.metric.is_binary:
                pos = self.metric.positive
                out.append([p if lab == pos else 1 - p for lab in self.labels])
            else:
                rest = (1 - p) / (len(self.labels) - 1)
                out.append([p] + [rest] * (len(self.labels) - 1))
        return np.asarray(out)

    def score(self, rows, batch_size=None):
        self.calls += 1
        positive = self.metric.positive if self.metric.is_binary else None
        return scores_from_probs(self.predict_proba(rows), self.labels, positive, self.threshold,
                                 tokens=[len(render(self.metric, r).split()) for r in rows])


def pii_metric():
    return get_preset("pii")
