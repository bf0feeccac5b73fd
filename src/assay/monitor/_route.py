"""Routing: which verdicts a person should look at.

- ``review/uncertain``: a binary score P(positive) inside the band (categorical: confidence below
  ``min_confidence``);
- ``review/high_severity_fail``: a failing verdict on a metric (or gate) whose severity is listed;
- ``review/audit``: a deterministic sample (``audit_rate``, by hash of seed, metric and trace id)
  of the confident passes;
- ``recorded``: everything else.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

REVIEW, RECORDED = "review", "recorded"


class RouteConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    band: tuple[float, float] = (0.3, 0.7)
    min_confidence: float = Field(0.6, ge=0, le=1)  # categorical metrics: below it is uncertain
    audit_rate: float = Field(0.05, ge=0, le=1)
    seed: int = 0
    review_severities: list[str] = Field(default_factory=lambda: ["high"])

    @model_validator(mode="after")
    def _check(self) -> "RouteConfig":
        lo, hi = self.band
        if not 0 <= lo <= hi <= 1:
            raise ValueError(f"band must be two numbers 0 <= low <= high <= 1, not {list(self.band)}")
        return self


@dataclass
class Route:
    route: str
    reason: str = ""
    details: dict[str, Any] = field(default_factory=dict)


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
                lo, hi = c.band
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
