"""Drift and agreement per metric over time windows.

- verdict rate: failing verdicts and label shares per window;
- score shift: PSI (and KS when raw scores are known) of P(positive) against the training-time
  distribution (the artifact report's held-out scores, else the first window, recorded once);
- agreement: Cohen's kappa between the evaluator and human reviews (a verdict's people's label: the
  label most of its reviewers gave, see ``assay.review``; tied verdicts count as not reviewed, and
  human-vs-human / judge-vs-human agreement is ``assay.review.agreement_report``). Reviews are a stratified
  sample (every uncertain / high-severity verdict, ``audit_rate`` of the confident passes), so
  each review is weighted by its stratum's size over its reviewed count to estimate the kappa on
  all traffic; the unweighted kappa on reviewed items is reported beside it.

A warning is raised when that kappa falls below the metric's evaluation-time kappa
(``student.kappa`` in report.json) by more than ``kappa_margin``.
"""

from __future__ import annotations

import re
from collections import Counter
from datetime import datetime, timezone
from typing import Any

from ..errors import AssayError
from ..stats import agreement_kappa
from ._stats import EDGES, histogram, ks_pvalue, ks_statistic, psi, rebin
from ._store import Store

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def iso_time(t: float | None) -> str:
    """A window start (seconds since the epoch) as an ISO 8601 UTC time, e.g. 2025-06-01T14:00:00Z."""
    if t is None:
        return "-"
    return datetime.fromtimestamp(float(t), timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def parse_window(w: str | float | int) -> float:
    """Seconds from 3600, "90s", "15m", "1h", "1d"."""
    if isinstance(w, (int, float)):
        secs = float(w)
    else:
        m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*", str(w))
        if not m:
            raise AssayError("a window like 3600, 15m, 1h or 1d", f"'{w}'", "pass --window 1h", code="invalid_input")
        secs = float(m.group(1)) * _UNITS[m.group(2) or "s"]
    if secs <= 0:
        raise AssayError("a window longer than 0 seconds", f"{w}", "pass --window 1h", code="invalid_input")
    return secs


def _stratum(v: dict[str, Any]) -> str:
    if v["route"] == "review":
        return "pass" if v["route_reason"] == "audit" else str(v["route_reason"])
    return str(v["route_reason"] or v["route"])


def agreement(verdicts: list[dict[str, Any]], labels: list[str] | None = None) -> dict[str, Any]:
    """Evaluator vs human on reviewed verdicts: weighted (population) and plain kappa, audit accuracy."""
    strata = Counter(_stratum(v) for v in verdicts)
    reviewed = [v for v in verdicts if v.get("review_label") is not None]
    per = Counter(_stratum(v) for v in reviewed)
    weights = [strata[_stratum(v)] / per[_stratum(v)] for v in reviewed]
    human = [v["review_label"] for v in reviewed]
    model = [v["label"] for v in reviewed]
    audited = [v for v in reviewed if v["route_reason"] == "audit"]
    covered = sum(n for s, n in strata.items() if per.get(s))
    return {
        "reviews": len(reviewed),
        "audited": len(audited),
        "kappa": agreement_kappa(human, model, labels, weights) if reviewed else None,
        "kappa_reviewed": agreement_kappa(human, model, labels) if reviewed else None,
        "accuracy_reviewed": round(sum(h == m for h, m in zip(human, model)) / len(reviewed), 6) if reviewed else None,
        "audit_agreement": round(sum(v["review_label"] == v["label"] for v in audited) / len(audited), 6)
        if audited else None,
        "coverage": round(covered / len(verdicts), 6) if verdicts else None,
    }


def _scores(verdicts: list[dict[str, Any]]) -> list[float]:
    return [float(v["score"]) for v in verdicts
            if v["score"] is not None and not (v.get("details") or {}).get("decided_by")]


def drift(store: Store, metric: str, *, window: str | float = "1h", since: float | None = None,
          until: float | None = None, kappa_margin: float = 0.1, psi_warn: float = 0.2,
          min_reviews: int = 20, record_baseline: bool = True) -> dict[str, Any]:
    """Per-window verdict rate, score shift and agreement for one metric, with warnings."""
    checks = store.checks()
    if metric not in checks:
        raise AssayError(f"a metric the monitor has scored ({', '.join(checks) or 'none yet'})", f"'{metric}'",
                         "run `assay monitor` first, or pick one of those", code="not_found")
    info = checks[metric]
    spec = info.get("spec") or {}
    labels = list(spec.get("labels") or []) or None
    binary = labels is not None and len(labels) == 2 and info["kind"] == "evaluator"
    secs = parse_window(window)
    verdicts = store.verdicts(metric, since=since, until=until)
    groups: dict[float, list[dict[str, Any]]] = {}
    for v in verdicts:
        groups.setdefault(v["created_at"] // secs * secs, []).append(v)
    baseline = info.get("baseline")
    base_source = (baseline or {}).get("source", "report") if baseline else None
    if binary and not baseline and groups:
        first = groups[min(groups)]
        baseline = {"scores": _scores(first), "source": "first_window", "window_start": min(groups)}
        base_source = "first_window"
        if record_baseline and baseline["scores"]:
            store.set_baseline(metric, baseline)
    base_counts = None
    if baseline:
        base_counts = (histogram(baseline["scores"])["counts"] if baseline.get("scores")
                       else rebin(baseline.get("bins") or []))
    eval_kappa = info.get("eval_kappa")
    out_windows = []
    warnings: list[str] = []
    for start in sorted(groups):
        vs = groups[start]
        n = len(vs)
        w: dict[str, Any] = {"start": start, "end": start + secs, "n": n,
                             "fail_rate": round(sum(not v["passed"] for v in vs) / n, 6),
                             "labels": {k: round(c / n, 6) for k, c in sorted(Counter(v["label"] for v in vs).items())}}
        if binary:
            scores = _scores(vs)
            w["mean_score"] = round(sum(scores) / len(scores), 6) if scores else None
            w["psi"] = psi(base_counts, histogram(scores)["counts"]) if base_counts and scores else None
            if baseline and baseline.get("scores") and scores:
                d = ks_statistic(baseline["scores"], scores)
                w["ks"], w["ks_p"] = d, ks_pvalue(d, len(baseline["scores"]), len(scores))
            if w["psi"] is not None and w["psi"] > psi_warn:
                warnings.append(f"{metric}: score distribution shifted in the window starting {iso_time(start)} "
                                f"(PSI {w['psi']:.3f} > {psi_warn})")
        w.update(agreement(vs, labels))
        if (eval_kappa is not None and w["kappa"] is not None and w["reviews"] >= min_reviews
                and w["kappa"] < eval_kappa - kappa_margin):
            warnings.append(f"{metric}: agreement with reviewers fell to kappa {w['kappa']:.3f} in the window "
                            f"starting {iso_time(start)}, below the evaluation-time {eval_kappa:.3f} - {kappa_margin}")
        out_windows.append(w)
    overall = agreement(verdicts, labels)
    audit = _audit(overall, spec.get("routing"), metric, min_reviews, warnings)
    if (eval_kappa is not None and overall["kappa"] is not None and overall["reviews"] >= min_reviews
            and overall["kappa"] < eval_kappa - kappa_margin):
        warnings.append(f"{metric}: overall agreement with reviewers is kappa {overall['kappa']:.3f}, below the "
                        f"evaluation-time {eval_kappa:.3f} - {kappa_margin}")
    return {
        "metric": metric,
        "kind": info["kind"],
        "window_seconds": secs,
        "edges": list(EDGES),
        "baseline": {"source": base_source, "n": len(baseline.get("scores") or []) if baseline else 0,
                     "counts": base_counts},
        "eval_kappa": eval_kappa,
        "n": len(verdicts),
        "overall": {"fail_rate": round(sum(not v["passed"] for v in verdicts) / len(verdicts), 6) if verdicts else None,
                    **overall},
        "windows": out_windows,
        "audit": audit,
        "warnings": warnings,
    }


def _audit(overall: dict[str, Any], routing: Any, metric: str, min_reviews: int, warnings: list[str]
           ) -> dict[str, Any] | None:
    """The audited disagreement (reviewed audit samples of automatically accepted passes) against the
    evaluator's certified routing target; a warning when it is above the target once enough audits exist."""
    if not routing or routing.get("target") is None:
        return None
    target = float(routing["target"])
    agree = overall.get("audit_agreement")
    disagreement = None if agree is None else round(1 - agree, 6)
    out = {"target": target, "audited": overall.get("audited", 0), "disagreement": disagreement}
    if disagreement is not None and out["audited"] >= min_reviews and disagreement > target:
        warnings.append(f"{metric}: {disagreement:.1%} of the {out['audited']} audited automatic verdicts disagree "
                        f"with reviewers, above the routing target {target:.1%}: retrain or widen the review band")
    return out
