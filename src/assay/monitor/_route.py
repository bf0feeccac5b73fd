"""Routing: which verdicts a person should look at.

- ``review/uncertain``: by default the evaluator's **certified review region** (risk-controlled
  routing, chosen at training time on its calibration rows so that verdicts accepted automatically
  disagree with people at most ``train.review_target`` of the time, with confidence
  ``1 - train.review_delta``; see ``assay.evaluator._risk``): binary, P(positive) inside its band around
  the threshold; categorical, confidence below its cut. An evaluator without one (too few calibration
  rows, an older artifact, or a registered version that moved the threshold) falls back to a band
  within ``margin`` of its threshold in log-odds, where ``margin`` is given as the half-width of the
  band it makes around 0.5 (0.2: 0.3-0.7 for a threshold of 0.5; for a threshold of 0.15, 0.07-0.29),
  and for categorical metrics to ``min_confidence``. A ``margin``, ``min_confidence`` or ``band`` set in
  the route config wins over the certified region (``band``: a fixed absolute band on P(positive));
- ``review/high_severity_fail``: a failing verdict on a metric (or gate) whose severity is listed;
- ``review/audit``: a deterministic sample (``audit_rate``, by hash of seed, metric, trace id and span id)
  of the confident passes;
- ``recorded``: everything else.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from typing import Any, Sequence

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ..evaluator._contract import band_around

REVIEW, RECORDED = "review", "recorded"


class RouteConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    band: tuple[float, float] | None = None  # a fixed band on P(positive); None: around the threshold
    margin: float = Field(0.2, ge=0, lt=0.5)  # half-width of the band around a 0.5 threshold (log-odds)
    min_confidence: float = Field(0.6, ge=0, le=1)  # categorical metrics: below it is uncertain
    audit_rate: float = Field(0.05, ge=0, le=1)
    seed: int = 0
    review_severities: list[str] = Field(default_factory=lambda: ["high"])

    @model_validator(mode="after")
    def _check(self) -> "RouteConfig":
        if self.band is None:
            return self
        lo, hi = self.band
        if not 0 <= lo <= hi <= 1:
            raise ValueError(f"band must be two numbers 0 <= low <= high <= 1, not {list(self.band)}")
        return self


@dataclass
class Route:
    route: str
    reason: str = ""
    details: dict[str, Any] = field(default_factory=dict)


def uncertainty_band(threshold: float | None, margin: float) -> tuple[float, float]:
    """The P(positive) interval within ``margin`` (log-odds, scaled so 0.5 +/- margin at 0.5) of ``threshold``."""
    return band_around(threshold, math.log((0.5 + margin) / (0.5 - margin)))


def is_uncertain(c: RouteConfig, *, binary: bool, score: float | None, confidence: float | None,
                 threshold: float | None, band: Sequence[float] | None = None,
                 min_confidence: float | None = None) -> bool:
    """Whether a verdict falls in the review region: ``band`` / ``min_confidence`` are the evaluator's
    certified region (None: it has none); a band, margin or min_confidence set in ``c`` wins."""
    if binary and score is not None:
        if c.band is not None:
            lo, hi = c.band
        elif band is not None and "margin" not in c.model_fields_set:
            lo, hi = band
        else:
            lo, hi = uncertainty_band(threshold, c.margin)
        return lo <= score <= hi
    if confidence is None:
        return False
    cut = min_confidence if min_confidence is not None and "min_confidence" not in c.model_fields_set \
        else c.min_confidence
    return confidence < cut


def audit_draw(trace_id: str, metric: str, seed: int, span_id: str | None = None) -> float:
    """A number in [0, 1) fixed by seed, metric and trace id (and span id, for a span verdict)."""
    key = f"{seed}:{metric}:{trace_id}" + (f":{span_id}" if span_id is not None else "")
    h = hashlib.sha256(key.encode()).digest()
    return int.from_bytes(h[:8], "big") / 2 ** 64


class Router:
    def __init__(self, config: RouteConfig | None = None, **kwargs: Any):
        self.config = config or RouteConfig(**kwargs)

    def route(self, v: Any) -> Route:
        c = self.config
        if v.kind == "evaluator" and is_uncertain(
                c, binary=v.binary, score=v.score, confidence=v.confidence, threshold=v.threshold,
                band=getattr(v, "review_band", None), min_confidence=getattr(v, "review_min_confidence", None)):
            return Route(REVIEW, "uncertain")
        if not v.passed:
            if v.severity in c.review_severities:
                return Route(REVIEW, "high_severity_fail" if v.kind == "evaluator" else "gate_fail")
            return Route(RECORDED, "fail")
        if v.kind == "evaluator" and c.audit_rate > 0 and (
                audit_draw(v.trace_id, v.metric, c.seed, getattr(v, "span_id", None)) < c.audit_rate):
            return Route(REVIEW, "audit")
        return Route(RECORDED, "pass")
