"""Routing: which verdicts a person should look at.

- ``review/uncertain``: a binary score P(positive) close to the evaluator's own decision threshold
  (its calibrated one, 0.5 when it has none): within ``margin`` of it in log-odds, where ``margin``
  is given as the half-width of the band it makes around 0.5 (0.2: 0.3-0.7 for a threshold of 0.5;
  for a threshold of 0.15, 0.07-0.29). ``band`` instead sets a fixed absolute band on P(positive).
  Categorical: confidence below ``min_confidence``;
- ``review/high_severity_fail``: a failing verdict on a metric (or gate) whose severity is listed;
- ``review/audit``: a deterministic sample (``audit_rate``, by hash of seed, metric and trace id)
  of the confident passes;
- ``recorded``: everything else.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

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


def _logit(p: float) -> float:
    p = min(max(p, 1e-9), 1 - 1e-9)
    return math.log(p / (1 - p))


def uncertainty_band(threshold: float | None, margin: float) -> tuple[float, float]:
    """The P(positive) interval within ``margin`` (log-odds, scaled so 0.5 +/- margin at 0.5) of ``threshold``."""
    t = 0.5 if threshold is None else float(threshold)
    half = _logit(0.5 + margin)
    lo, hi = _logit(t) - half, _logit(t) + half
    return 1 / (1 + math.exp(-lo)), 1 / (1 + math.exp(-hi))


def audit_draw(trace_id: str, metric: str, seed: int) -> float:
    """A number in [0, 1) fixed by seed, metric and trace id."""
    h = hashlib.sha256(f"{seed}:{metric}:{trace_id}".encode()).digest()
    return int.from_bytes(h[:8], "big") / 2 ** 64


class Router:
    def __init__(self, config: RouteConfig | None = None, **kwargs: Any):
        self.config = config or RouteConfig(**kwargs)

    def route(self, v: Any) -> Route:
        c = self.config
        if v.kind == "evaluator":
            if v.binary and v.score is not None:
                lo, hi = c.band if c.band is not None else uncertainty_band(v.threshold, c.margin)
                if lo <= v.score <= hi:
                    return Route(REVIEW, "uncertain")
            elif v.confidence is not None and v.confidence < c.min_confidence:
                return Route(REVIEW, "uncertain")
        if not v.passed:
            if v.severity in c.review_severities:
                return Route(REVIEW, "high_severity_fail" if v.kind == "evaluator" else "gate_fail")
            return Route(RECORDED, "fail")
        if v.kind == "evaluator" and c.audit_rate > 0 and audit_draw(v.trace_id, v.metric, c.seed) < c.audit_rate:
            return Route(REVIEW, "audit")
        return Route(RECORDED, "pass")
