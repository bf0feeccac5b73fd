"""The judge as teacher: label rows with the metric's prompt, and measure it against people."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

from ..metrics import MetricSpec
from ..stats import agreement_kappa
from ._base import Provider
from ._types import Judgment


@dataclass
class LabelResult:
    """Every input row, in order, with the judge's label (None when unparseable or failed)."""

    rows: list[dict[str, Any]]
    judgments: list[Judgment]
    stats: dict[str, Any] = field(default_factory=dict)

    @property
    def labeled(self) -> list[dict[str, Any]]:
        return [r for r, j in zip(self.rows, self.judgments) if j.ok]

    def summary(self) -> dict[str, Any]:
        counts = Counter(j.label for j in self.judgments if j.ok)
        unparseable = [j for j in self.judgments if not j.ok and (j.error or "").startswith("unparseable")]
        failed = [j for j in self.judgments if not j.ok and not (j.error or "").startswith("unparseable")]
        return {
            "rows": len(self.rows),
            "labeled": sum(counts.values()),
            "unparseable": len(unparseable),
            "failed": len(failed),
            "label_counts": dict(counts),
            "with_probabilities": sum(1 for j in self.judgments if j.probabilities),
            "examples_unparseable": [j.text[:200] for j in unparseable[:5]],
            "examples_failed": [j.error for j in failed[:5]],
            "provider": self.stats,
        }


def label_rows(metric: MetricSpec, rows: Sequence[Mapping[str, Any]], provider: Provider, *,
               on_done: Callable[[int, Judgment], None] | None = None) -> LabelResult:
    """Judge every row. Output rows carry ``label`` (the judge's, or None) and ``meta.judge``;
    a label the row already had moves to ``meta.human_label``. No row is dropped."""
    judgments = provider.judge_many(metric, rows, on_done)
    out = []
    for row, j in zip(rows, judgments):
        r = dict(row)
        meta = dict(r.get("meta") or {})
        if r.get("label") not in (None, ""):
            meta["human_label"] = r["label"]
        meta["judge"] = {"model": provider.id, **j.to_dict()}
        r["meta"] = meta
        r["label"] = j.label
        out.append(r)
    return LabelResult(out, judgments, provider.stats.to_dict())


def measure_judge(metric: MetricSpec, held_out_rows: Sequence[Mapping[str, Any]], provider: Provider, *,
                  bootstrap: int = 200, seed: int = 0,
                  on_done: Callable[[int, Judgment], None] | None = None) -> dict[str, Any]:
    """The judge against the human labels of ``held_out_rows``: agreement (Cohen's kappa) and more.

    Figures are computed on the rows the judge answered; unparseable and failed rows are
    counted and ``coverage`` says what share was answered. With ``assay.report`` installed the
    full report figures (intervals, calibration when logprobs exist) are added under ``report``.
    """
    rows = [r for r in held_out_rows if r.get("label") in metric.labels]
    skipped = len(held_out_rows) - len(rows)
    judgments = provider.judge_many(metric, rows, on_done)
    pairs = [(r["label"], j) for r, j in zip(rows, judgments) if j.ok]
    y_true = [t for t, _ in pairs]
    y_pred = [j.label for _, j in pairs]
    labels = list(metric.labels)
    out: dict[str, Any] = {
        "judge": provider.id,
        "n": len(rows),
        "answered": len(pairs),
        "coverage": (len(pairs) / len(rows)) if rows else None,
        "unparseable": sum(1 for j in judgments if not j.ok and (j.error or "").startswith("unparseable")),
        "failed": sum(1 for j in judgments if not j.ok and not (j.error or "").startswith("unparseable")),
        "rows_without_human_label": skipped,
        "accuracy": (sum(a == b for a, b in zip(y_true, y_pred)) / len(pairs)) if pairs else None,
        "kappa": agreement_kappa(y_true, y_pred),
        "confusion": {t: {p: sum(1 for a, b in zip(y_true, y_pred) if a == t and b == p) for p in labels}
                      for t in labels},
        "label_source": "logprobs" if pairs and all(j.probabilities for _, j in pairs) else "parsed text",
        "provider": provider.stats.to_dict(),
    }
    if pairs:
        try:
            from ..report import classification_metrics
        except ImportError:
            classification_metrics = None  # type: ignore[assignment]
        if classification_metrics is not None:
            probs = [[(j.probabilities or {lab: float(lab == j.label) for lab in labels}).get(lab, 0.0)
                      for lab in labels] for _, j in pairs]
            out["report"] = classification_metrics(y_true, probs, labels, positive=metric.positive,
                                                    bootstrap=bootstrap, seed=seed)
    return out


