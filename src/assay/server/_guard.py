"""The guard policy (``POST /v1/guard``): one row's verdicts from registered metrics turned into a
decision, ``block`` / ``flag`` / ``allow``.

A policy maps a metric (the name as requested, its base name or ``name-vN``) or ``default`` to a
list of rules, or to ``{"rules": [...], "uncertain": action}``. Rules are tried in order; the first
whose ``label`` equals the verdict's label and whose ``min_confidence`` (default 0) is at most its
confidence gives the action; none matching: ``allow``. The row is queued for every metric at once
(``ScoreBatcher.score_many``), so metrics on one frozen body (MiniLM, SmolLM2) run it once on the row. A verdict in the evaluator's review region
(certified at training time; without one, the monitor's band of margin 0.2 around the registered
threshold, or confidence below 0.6 for categorical metrics) gets the ``uncertain`` action (default
``flag``) instead. Without a policy for a metric: its failing label with any confidence blocks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from ..errors import AssayError
from ..monitor._route import RouteConfig
from ..monitor._route import is_uncertain as route_uncertain

ACTIONS = ("block", "flag", "allow")
SEVERITY = {"allow": 0, "flag": 1, "block": 2}
_FALLBACK = RouteConfig()  # the monitor's defaults: margin 0.2, categorical min_confidence 0.6


@dataclass
class Rule:
    label: str
    min_confidence: float
    action: str


@dataclass
class MetricPolicy:
    rules: list[Rule]
    uncertain: str = "flag"


def _bad(metric: str, expected: str, found: str, fix: str = "see the Guard section of docs/server.md") -> AssayError:
    return AssayError(f"policy for '{metric}': {expected}", found, fix, code="invalid_policy")


def _action(metric: str, value: Any, where: str) -> str:
    if value not in ACTIONS:
        raise _bad(metric, f"{where} one of {list(ACTIONS)}", f"{value!r}")
    return value


def parse_policy(metric: str, entry: Any, labels: Sequence[str]) -> MetricPolicy:
    """One metric's policy entry, checked against its labels."""
    uncertain = "flag"
    rules = entry
    if isinstance(entry, Mapping):
        extra = set(entry) - {"rules", "uncertain"}
        if extra:
            raise _bad(metric, "an object with 'rules' and 'uncertain'", f"keys {sorted(extra)}")
        uncertain = _action(metric, entry.get("uncertain", "flag"), "'uncertain'")
        rules = entry.get("rules", [])
    if not isinstance(rules, list):
        raise _bad(metric, "a list of rules", f"a {type(rules).__name__}")
    out = []
    for i, r in enumerate(rules):
        if not isinstance(r, Mapping) or not {"label", "action"} <= set(r) or set(r) - {"label", "action",
                                                                                         "min_confidence"}:
            raise _bad(metric, f"rule {i} as {{label, action, min_confidence (optional)}}", f"{r!r}")
        if r["label"] not in labels:
            raise _bad(metric, f"rule {i} with a label among {list(labels)}", f"the label {r['label']!r}",
                       f"use one of the labels of '{metric}'")
        c = r.get("min_confidence", 0.0)
        if isinstance(c, bool) or not isinstance(c, (int, float)) or not 0 <= c <= 1:
            raise _bad(metric, f"rule {i} with min_confidence between 0 and 1", f"{c!r}")
        out.append(Rule(r["label"], float(c), _action(metric, r["action"], f"rule {i} action")))
    return MetricPolicy(out, uncertain)


def default_policy(failing: str) -> MetricPolicy:
    return MetricPolicy([Rule(failing, 0.0, "block")], "flag")


def is_uncertain(result: Any, labels: Sequence[str], positive: str, threshold: float | None,
                 region: Mapping[str, Any] | None) -> bool:
    """Whether a verdict falls in the review region, by the monitor's rule (``monitor._route.is_uncertain``)."""
    binary = len(labels) == 2 and positive in result.probabilities
    region = region or {}
    return route_uncertain(_FALLBACK, binary=binary, score=float(result.probabilities[positive]) if binary else None,
                           confidence=result.confidence, threshold=threshold, band=region.get("band"),
                           min_confidence=region.get("min_confidence"))


def apply(policy: MetricPolicy, label: str, confidence: float, uncertain: bool) -> tuple[str, str]:
    """(action, which rule) for one verdict."""
    if uncertain:
        return policy.uncertain, "uncertain"
    for i, r in enumerate(policy.rules):
        if r.label == label and confidence >= r.min_confidence:
            return r.action, f"rules[{i}]"
    return "allow", "no rule matched"


def most_severe(actions: Sequence[str]) -> str:
    return max(actions, key=SEVERITY.__getitem__, default="allow")
