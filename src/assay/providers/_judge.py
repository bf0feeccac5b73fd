"""The judge as teacher: label rows with the metric's prompt, and measure it against people."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

from ..metrics import MetricSpec
from ..report import verdict_metrics
from ..stats import judge_agreement
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

    A row the judge did not answer (unparseable, failed) counts as a disagreement in ``kappa``, its
    ``interval`` and ``accuracy`` (:func:`assay.stats.judge_agreement`, the report's and ``tune_judge``'s
    rule too); such rows are counted and ``coverage`` says what share was answered. ``confusion`` is of the
    answered rows; ``report`` holds the report's figures (:func:`assay.report.verdict_metrics`: intervals,
    calibration when logprobs exist).
    """
    rows = [r for r in held_out_rows if r.get("label") in metric.labels]
    judgments = provider.judge_many(metric, rows, on_done)
    truth = [r["label"] for r in rows]
    verdicts = [j.label for j in judgments]
    labels = list(metric.labels)
    agreement = judge_agreement(truth, verdicts, labels, bootstrap=bootstrap, seed=seed)
    pairs = [(t, j) for t, j in zip(truth, judgments) if j.ok]
    out: dict[str, Any] = {
        "judge": provider.id,
        "n": len(rows),
        "coverage": (len(pairs) / len(rows)) if rows else None,
        **answer_counts(judgments),
        "rows_without_human_label": len(held_out_rows) - len(rows),
        **{k: agreement[k] for k in ("accuracy", "kappa", "interval")},
        "confusion": {t: {p: sum(1 for a, j in pairs if a == t and j.label == p) for p in labels} for t in labels},
        "label_source": "logprobs" if pairs and all(j.probabilities for _, j in pairs) else "parsed text",
        "provider": provider.stats.to_dict(),
    }
    if pairs:
        probs = [[(j.probabilities or {lab: float(lab == j.label) for lab in labels}).get(lab, 0.0)
                  for lab in labels] for _, j in pairs]
        out["report"] = verdict_metrics(truth, verdicts, labels, positive=metric.positive, probs=probs,
                                        bootstrap=bootstrap, seed=seed)
    return out


def answer_counts(judgments: Sequence[Judgment]) -> dict[str, int]:
    """How many of the judge's answers named a label (``answered``), could not be read (``unparseable``)
    or failed (``failed``)."""
    answered = sum(1 for j in judgments if j.ok)
    unparseable = sum(1 for j in judgments if not j.ok and (j.error or "").startswith("unparseable"))
    return {"answered": answered, "unparseable": unparseable, "failed": len(judgments) - answered - unparseable}


