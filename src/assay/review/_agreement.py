"""People calibrate too: human-vs-human, judge-vs-human and student-vs-human agreement of one metric.

- **human vs human**: over the verdicts at least two people labeled (each reviewer's latest label),
  Cohen's kappa of every pair of reviewers on the verdicts both labeled (with counts and a
  bootstrap 95% interval), their mean, and Krippendorff's alpha (nominal; any number of reviewers
  per verdict, missing labels allowed) with a bootstrap interval over verdicts.
- **judge vs human**: an LLM judge's label of a verdict is a review by ``judge:<model>`` (the monitor
  calls no judge itself: record one with ``assay review label REF LABEL --reviewer judge:MODEL``,
  the REST review endpoint, or :func:`record_judge_labels`). Per judge: kappa against the people's
  label (the consensus, see ``_consensus``).
- **student vs human**: the evaluator's verdict against the people's label.

Judge and student are also compared with each reviewer on their own (``kappa_vs_reviewers``, the
mean of those kappas): that figure is the one to put beside the human pairwise kappa, since a
consensus of several people is less noisy than any one of them.

Verdicts whose reviewers are tied have no people's label: they count in human-vs-human (they are
disagreement) but not in judge- or student-vs-human, and they wait in the disagreement queue.
Kappa is the plain (unweighted) kappa on reviewed verdicts; the traffic-weighted kappa is drift's.
"""

from __future__ import annotations

from itertools import combinations
from typing import Any, Sequence

import numpy as np

from ..errors import AssayError
from ..metrics import load_metric
from ..providers import label_rows
from ..stats import agreement_kappa, bootstrap_ci
from ._consensus import TIE
from ._verdicts import VerdictStore

__all__ = ["agreement_report", "krippendorff_alpha", "pairwise_agreement", "rater_agreement", "record_judge_labels"]

RULE = ("people's label = the label most of a verdict's reviewers gave (each reviewer's latest label); a tie has "
        "none: it is left out of the golden set and retraining and waits in the disagreement queue; judge:* "
        "reviews are never people's labels")


def _r(x: float | None) -> float | None:
    return None if x is None else round(float(x), 6)


def _interval(a: Sequence[str], b: Sequence[str], labels: list[str], n_boot: int, seed: int) -> list[float] | None:
    idx = {lab: i for i, lab in enumerate(labels)}
    keep = [(idx[x], idx[y]) for x, y in zip(a, b) if x in idx and y in idx]
    if len(keep) < 2 or n_boot <= 0:
        return None
    y, p = (np.array(col) for col in zip(*keep))
    ci = bootstrap_ci(y, p, len(labels), n_boot=n_boot, seed=seed)["kappa"]
    return None if ci is None else [round(ci[0], 6), round(ci[1], 6)]


def rater_agreement(a: Sequence[str], b: Sequence[str], labels: list[str], *, n_boot: int = 1000,
                    seed: int = 0) -> dict[str, Any]:
    """Two raters on the same items: n, kappa with its bootstrap interval, share of equal labels."""
    n = len(a)
    return {"n": n, "kappa": _r(agreement_kappa(a, b, labels)) if n else None,
            "kappa_interval": _interval(a, b, labels, n_boot, seed),
            "accuracy": _r(sum(x == y for x, y in zip(a, b)) / n) if n else None}


def pairwise_agreement(units: Sequence[dict[str, str]], labels: list[str], *, n_boot: int = 1000, seed: int = 0
                    ) -> list[dict[str, Any]]:
    """Cohen's kappa of every pair of reviewers over the units (reviewer -> label) both labeled."""
    names = sorted({name for u in units for name in u})
    out = []
    for x, y in combinations(names, 2):
        both = [u for u in units if x in u and y in u]
        if both:
            out.append({"reviewers": [x, y], **rater_agreement([u[x] for u in both], [u[y] for u in both], labels,
                                                               n_boot=n_boot, seed=seed)})
    return out


def _coincidences(units: Sequence[Sequence[str]], labels: list[str]) -> np.ndarray:
    """Per unit with >= 2 values, its coincidence matrix (Krippendorff), flattened: [units, k * k]."""
    k = len(labels)
    idx = {lab: i for i, lab in enumerate(labels)}
    rows = []
    for u in units:
        vals = [idx[v] for v in u if v in idx]
        if len(vals) < 2:
            continue
        c = np.bincount(vals, minlength=k).astype(float)
        rows.append(((np.outer(c, c) - np.diag(c)) / (len(vals) - 1)).ravel())
    return np.array(rows).reshape(len(rows), k * k)


def _alpha_of(o: np.ndarray, k: int) -> np.ndarray:
    """Nominal alpha of coincidence matrices ``[b, k * k]``: 1 - (n - 1) * disagreeing / expected; NaN if undefined."""
    o = o.reshape(-1, k, k)
    n_c = o.sum(axis=2)
    n = n_c.sum(axis=1)
    observed = n - np.trace(o, axis1=1, axis2=2)
    expected = n * n - (n_c ** 2).sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(expected > 1e-12, 1 - (n - 1) * observed / expected, np.nan)


def krippendorff_alpha(units: Sequence[Sequence[str]], labels: list[str], *, n_boot: int = 0, seed: int = 0
                       ) -> dict[str, Any]:
    """Krippendorff's alpha (nominal) over units (each: the labels its reviewers gave; units with one
    label do not count) with a percentile 95% bootstrap interval over units when ``n_boot``."""
    c = _coincidences(units, labels)
    k = len(labels)
    if not len(c):
        return {"units": 0, "alpha": None, "alpha_interval": None}
    alpha = _alpha_of(c.sum(axis=0, keepdims=True), k)[0]
    out: dict[str, Any] = {"units": len(c), "alpha": None if np.isnan(alpha) else _r(alpha), "alpha_interval": None}
    if n_boot > 0 and len(c) >= 2:
        rng = np.random.default_rng(seed)
        picks = rng.integers(0, len(c), size=(n_boot, len(c)))
        weights = np.stack([np.bincount(p, minlength=len(c)) for p in picks]).astype(float)
        boot = _alpha_of(weights @ c, k)
        boot = boot[np.isfinite(boot)]
        if len(boot):
            out["alpha_interval"] = [_r(np.percentile(boot, 2.5)), _r(np.percentile(boot, 97.5))]
    return out


def _vs_reviewers(verdicts: list[dict[str, Any]], label_of: Any, labels: list[str]) -> float | None:
    """Mean kappa of a rater (``label_of(verdict)``) against each reviewer on that reviewer's verdicts."""
    per: dict[str, tuple[list[str], list[str]]] = {}
    for v in verdicts:
        mine = label_of(v)
        if mine is None:
            continue
        for r in v["reviews"]:
            a, b = per.setdefault(r["reviewer"], ([], []))
            a.append(mine)
            b.append(r["label"])
    ks = [k for a, b in per.values() if (k := agreement_kappa(a, b, labels)) is not None]
    return _r(sum(ks) / len(ks)) if ks else None


def _labels(store: VerdictStore, metric: str) -> list[str]:
    checks = store.checks()
    if metric not in checks:
        raise AssayError(f"a metric the monitor has scored ({', '.join(checks) or 'none yet'})", f"'{metric}'",
                         "run `assay monitor` first, or pick one of those", code="not_found")
    info = checks[metric]
    return ["pass", "fail"] if info["kind"] == "gate" else list((info.get("spec") or {}).get("labels") or [])


def agreement_report(store: VerdictStore, metric: str, *, n_boot: int = 1000, seed: int = 0) -> dict[str, Any]:
    """Human-vs-human, judge-vs-human and student-vs-human agreement of one metric's reviewed verdicts."""
    labels = _labels(store, metric)
    verdicts = [v for v in store.verdicts(metric) if v["reviews"] or v["judges"]]
    labels = labels or sorted({r["label"] for v in verdicts for r in v["reviews"]} | {v["label"] for v in verdicts
                                                                                       if v["label"] is not None})
    multi = [v for v in verdicts if len(v["reviews"]) >= 2]
    units = [{r["reviewer"]: r["label"] for r in v["reviews"]} for v in multi]
    pairs = pairwise_agreement(units, labels, n_boot=n_boot, seed=seed)
    defined = [p["kappa"] for p in pairs if p["kappa"] is not None]
    alpha = krippendorff_alpha([list(u.values()) for u in units], labels, n_boot=n_boot, seed=seed)
    people = {
        "verdicts": len(multi), "reviewers": sorted({n for u in units for n in u}),
        "unanimous": sum(v["review_status"] == "unanimous" for v in multi),
        "majority": sum(v["review_status"] == "majority" for v in multi),
        "ties": sum(v["review_status"] == TIE for v in multi),
        "kappa_mean": _r(sum(defined) / len(defined)) if defined else None, "pairs": pairs,
        "alpha": alpha["alpha"], "alpha_interval": alpha["alpha_interval"],
    }
    settled = [v for v in verdicts if v["review_label"] is not None]
    student = {**rater_agreement([v["label"] for v in settled], [v["review_label"] for v in settled], labels,
                                 n_boot=n_boot, seed=seed),
               "kappa_vs_reviewers": _vs_reviewers(settled, lambda v: v["label"], labels)}
    judges = []
    for name in sorted({j for v in verdicts for j in v["judges"]}):
        both = [v for v in settled if name in v["judges"]]
        judges.append({"judge": name, "judged": sum(name in v["judges"] for v in verdicts),
                       **rater_agreement([v["judges"][name] for v in both], [v["review_label"] for v in both], labels,
                                         n_boot=n_boot, seed=seed),
                       "kappa_vs_reviewers": _vs_reviewers(both, lambda v, n=name: v["judges"].get(n), labels)})
    return {"metric": metric, "labels": labels, "reviewed": len(settled), "rule": RULE, "n_boot": n_boot,
            "human_vs_human": people, "judge_vs_human": judges, "student_vs_human": student}


def record_judge_labels(store: VerdictStore, metric: str, provider: Any, *, limit: int | None = None,
                        only_reviewed: bool = True) -> dict[str, Any]:
    """Ask an LLM judge (a ``providers`` Provider) for its label of the metric's verdicts and store each as
    a review by ``judge:<provider id>`` (only verdicts people reviewed, by default, and not judged yet)."""
    info = store.checks().get(metric)
    if info is None or info["kind"] != "evaluator" or not info.get("spec"):
        raise AssayError("an evaluator metric the monitor scored", f"'{metric}'", "pick an evaluator metric",
                         code="not_found")
    spec = load_metric({k: v for k, v in info["spec"].items() if k != "routing"})
    who = f"judge:{provider.id}"
    todo = [v for v in store.verdicts(metric) if v["row"] and who not in v["judges"]
            and (v["reviews"] or not only_reviewed)][:limit]
    result = label_rows(spec, [v["row"] for v in todo], provider) if todo else None
    stored = 0
    for v, row in zip(todo, result.rows if result else []):
        if row.get("label") in spec.labels:
            store.add_review(v["id"], row["label"], who, "LLM judge")
            stored += 1
    return {"metric": metric, "judge": who, "asked": len(todo), "stored": stored}
