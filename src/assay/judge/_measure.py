"""One prompt's agreement with people on some rows: Cohen's kappa with a bootstrap interval.

The judge runs at temperature 0 through ``Provider.judge_many`` (cached, retried, priced). A row the
judge does not answer (unparseable, refused, failed) counts as a disagreement (:func:`assay.stats.judge_agreement`,
the rule of the report and ``measure_judge`` too), so a prompt cannot look better by making the judge refuse hard rows.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from ..metrics import MetricSpec
from ..providers import Judgment, Provider
from ..stats import judge_agreement

BOOTSTRAP = 1000


@dataclass
class Agreement:
    """The judge (one prompt) against the human labels of ``n`` rows."""

    n: int
    answered: int
    kappa: float | None
    interval: list[float] | None  # percentile 95% bootstrap interval of kappa
    accuracy: float | None
    cost_usd: float = 0.0
    judgments: list[Judgment] = field(default_factory=list, repr=False)

    def verdicts(self) -> list[str | None]:
        return [j.label for j in self.judgments]

    def to_dict(self) -> dict[str, Any]:
        return {"n": self.n, "answered": self.answered, "kappa": _round(self.kappa),
                "interval": [_round(x) for x in self.interval] if self.interval else None,
                "accuracy": _round(self.accuracy), "cost_usd": round(self.cost_usd, 6)}


def _round(x: float | None) -> float | None:
    return None if x is None else round(float(x), 4)


def measure_prompt(metric: MetricSpec, rows: Sequence[Mapping[str, Any]], provider: Provider, *,
                   bootstrap: int = BOOTSTRAP, seed: int = 0) -> Agreement:
    """Judge every row with ``metric``'s prompt and compare with the rows' human labels."""
    rows = [r for r in rows if r.get("label") in metric.labels]
    before = provider.stats.cost_usd
    judgments = provider.judge_many(metric, rows)
    judgments = [j if isinstance(j, Judgment) else Judgment(label=None, error=f"failed: {j}") for j in judgments]
    a = judge_agreement([r["label"] for r in rows], [j.label for j in judgments], metric.labels,
                        bootstrap=bootstrap, seed=seed)
    return Agreement(n=a["n"], answered=a["answered"], kappa=a["kappa"], interval=a["interval"],
                     accuracy=a["accuracy"], cost_usd=provider.stats.cost_usd - before, judgments=judgments)
