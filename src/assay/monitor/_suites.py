"""Suites of checks: several binary checks on one trace combined into one per-trace verdict.

    suites:
      - name: tool_calls
        checks: [wrong_tool, missing_argument, {check: wrong_value, weight: 2}]
        min_passed: 2          # n of m checks must pass, or
        min_score: 0.75        # the weighted share of passed checks must reach this (both: both must hold)
        severity: high

A member is any check of the same run by the name its verdicts carry: an evaluator's metric name,
a gate (``gate:pii`` or its ``name``), or an evaluator's own gate (``toxicity/regex``). Per trace a
member passes when every verdict it gave the trace passed (a span-targeted metric gives one per
span). Members without a verdict on the trace (their metric skipped it) are left out of that
trace's count and score, and listed as ``missing``; ``min_passed`` is then capped at the number of
members that judged it. With neither rule every judged member must pass.

The suite's verdict (``kind: "suite"``, label ``pass``/``fail``, ``score`` = the weighted share of
passed members) lists the failed checks in ``details.failed_checks`` and in its reason; the monitor
stores it like any verdict and ``Eval`` reports it as a metric block, so ``--fail-under
SUITE.pass_rate=0.9`` gates on it.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any, Callable, Iterable, Literal, Mapping, Sequence

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ..errors import AssayError, invalid
from ._checks import Verdict

KIND = "suite"
# (trace id, member name) -> the member's stored verdicts on that trace (dicts with "passed"), for members
# scored in an earlier batch
Lookup = Callable[[str, str], Sequence[Mapping[str, Any]]]


class SuiteMember(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    check: str = Field(min_length=1)
    weight: float = Field(1.0, gt=0)


class SuiteConfig(BaseModel):
    """One suite: its member checks (with weights) and its pass rule."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_\-]*$", max_length=64)
    checks: tuple[SuiteMember, ...]
    min_passed: int | None = Field(None, ge=1)
    min_score: float | None = Field(None, ge=0, le=1)
    severity: Literal["low", "medium", "high"] = "medium"
    description: str = ""

    @field_validator("checks", mode="before")
    @classmethod
    def _members(cls, v: Any) -> Any:
        if not isinstance(v, (list, tuple)):
            return v
        return [{"check": x} if isinstance(x, str) else x for x in v]

    @model_validator(mode="after")
    def _check(self) -> "SuiteConfig":
        names = [m.check for m in self.checks]
        if len(names) < 2:
            raise ValueError("a suite combines at least two checks")
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"checks {dup} are listed more than once")
        if self.min_passed is not None and self.min_passed > len(names):
            raise ValueError(f"min_passed {self.min_passed} is more than the {len(names)} checks of the suite")
        return self

    def rule(self) -> dict[str, Any]:
        if self.min_passed is None and self.min_score is None:
            return {"all": True}
        return {k: v for k, v in (("min_passed", self.min_passed), ("min_score", self.min_score)) if v is not None}


class Suite:
    """A configured suite, ready to combine its members' verdicts (a check-like object for reports)."""

    kind = KIND
    metric = None
    eval_kappa = None
    baseline = None
    source = None

    def __init__(self, config: SuiteConfig):
        self.config = config
        self.name = config.name
        self.severity = config.severity
        self.weights = {m.check: float(m.weight) for m in config.checks}

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "severity": self.severity, "checks": dict(self.weights),
                "rule": self.config.rule()}

    def spec(self) -> dict[str, Any]:
        return self.config.model_dump(mode="json")

    def combine(self, trace_id: str, results: Mapping[str, bool]) -> Verdict | None:
        """The suite's verdict on one trace from ``{member: passed}`` (members without a result left out);
        None when no member judged the trace."""
        judged = [m for m in self.weights if m in results]
        if not judged:
            return None
        passed = [m for m in judged if results[m]]
        failed = [m for m in judged if not results[m]]
        total = sum(self.weights[m] for m in judged)
        score = sum(self.weights[m] for m in passed) / total
        cfg = self.config
        ok = True
        if cfg.min_passed is None and cfg.min_score is None:
            ok = not failed
        if cfg.min_passed is not None:
            ok = ok and len(passed) >= min(cfg.min_passed, len(judged))
        if cfg.min_score is not None:
            ok = ok and score >= cfg.min_score - 1e-9
        details = {"passed": len(passed), "checks": len(judged), "score": round(score, 6), "failed_checks": failed,
                   "passed_checks": passed, "missing": [m for m in self.weights if m not in results],
                   "weights": {m: self.weights[m] for m in judged}, "rule": cfg.rule()}
        reason = f"{len(passed)} of {len(judged)} checks passed" + (f"; failed: {', '.join(failed)}" if failed else "")
        return Verdict(trace_id, self.name, KIND, "pass" if ok else "fail", ok, score=round(score, 6),
                       reason=reason, details=details, severity=self.severity, binary=False)


def suite_from_dict(item: Any) -> Suite:
    if isinstance(item, Suite):
        return item
    if isinstance(item, SuiteConfig):
        return Suite(item)
    if not isinstance(item, Mapping):
        raise AssayError("a suite as a mapping {name, checks, min_passed | min_score}", f"a {type(item).__name__}",
                         "write each suite under suites: as a mapping", code="invalid_config")
    try:
        return Suite(SuiteConfig(**item))
    except ValidationError as exc:
        raise invalid(exc, f"a valid suites.{{where}} (suite {item.get('name', '?')})",
                      "write name, checks (names or {check, weight}), and min_passed or min_score",
                      code="invalid_config", top="suite") from None


def make_suites(items: Iterable[Any], checks: Sequence[Any] = ()) -> list[Suite]:
    """Suites from config mappings, their members checked against the run's checks (when given)."""
    suites = [suite_from_dict(x) for x in items or ()]
    if not suites:
        return []
    known: set[str] = set()
    for c in checks:
        known.add(c.name)
        known.update(f"{c.name}/{g.label}" for g in getattr(c, "gates", []))
    names = [s.name for s in suites]
    clash = sorted({n for n in names if names.count(n) > 1 or n in known})
    if clash:
        raise AssayError("suite names unlike each other and unlike the checks' names", f"{clash} used twice",
                         "rename the suite", code="invalid_config")
    if checks:
        for s in suites:
            unknown = [m for m in s.weights if m not in known]
            if unknown:
                raise AssayError(f"suite {s.name}'s checks among the run's checks {sorted(known)}",
                                 f"{unknown}", "name evaluators by their metric name and gates by their name "
                                 "(gate:TYPE when unnamed)", code="invalid_config")
    return suites


def member_results(verdicts: Iterable[Verdict]) -> dict[str, dict[str, bool]]:
    """trace id -> {check name: passed} (a check passes a trace when all its verdicts there passed)."""
    out: dict[str, dict[str, bool]] = defaultdict(dict)
    for v in verdicts:
        if v.kind == KIND:
            continue
        out[v.trace_id][v.metric] = out[v.trace_id].get(v.metric, True) and bool(v.passed)
    return out


def suite_verdicts(suites: Sequence[Suite], verdicts: Iterable[Verdict], lookup: Lookup | None = None) -> list[Verdict]:
    """Each suite's verdict on every trace one of its members judged in ``verdicts``; members that did not
    judge the trace there are read through ``lookup`` (the store, for traces scored in an earlier batch)."""
    results = member_results(verdicts)
    out: list[Verdict] = []
    for s in suites:
        for trace_id, res in results.items():
            if not any(m in res for m in s.weights):
                continue
            res = dict(res)
            if lookup is not None:
                for m in s.weights:
                    if m not in res:
                        stored = lookup(trace_id, m)
                        if stored:
                            res[m] = all(bool(r.get("passed")) for r in stored)
            v = s.combine(trace_id, res)
            if v is not None:
                out.append(v)
    return out
