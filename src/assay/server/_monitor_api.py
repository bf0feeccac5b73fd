"""The monitor on the server, ``/v1``: verdicts over time, the review queue, labels, drift, and
several reviewers per verdict: the disagreement queue and human/judge/student agreement.

The monitor store (``monitor.db``, written by ``assay monitor``) is chosen by the operator
(``assay serve --monitor-db PATH`` / ``$ASSAY_MONITOR_DB``), never by a caller.

Access: a monitored metric belongs to the project that registered a metric of that name (or
whose registered artifact the monitor loaded); a gate attached to a metric (``name/gate``)
belongs with it. A caller sees the metrics of the projects its key may read and labels with the
editor role or above; a metric registered nowhere is visible only with authentication off or
to an operator key. Everything else answers 404, like a metric that does not exist.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Query, Request, Response
from fastapi import Path as PathParam
from pydantic import BaseModel, Field

from ..monitor import Store
from ..monitor import drift as monitor_drift
from ..review import agreement_report
from ..review import label as review_label
from . import _access as acc
from ._deps import _ERRORS

router = APIRouter(prefix="/v1")
MAX_VERDICT_ID = 2**63 - 1
ROW_FIELDS = ("input", "output", "output_b", "context", "tools")  # what a metric judges, as the queue shows it
_open_lock = threading.Lock()


# --- the store and who may see which metric ---------------------------------------------------
def store_of(request: Request) -> Store:
    """The server's monitor store, opened on first use (the path is the operator's, never a caller's)."""
    state = request.app.state
    if getattr(state, "monitor", None) is None:
        with _open_lock:
            if getattr(state, "monitor", None) is None:
                state.monitor = Store(state.monitor_db)
    return state.monitor


def metric_owners(request: Request, checks: dict[str, dict[str, Any]]) -> dict[str, str]:
    """Monitored metric -> the project id that registered it (absent: registered nowhere)."""
    reg = request.app.state.registry
    by_name: dict[str, str] = {}
    by_dir: dict[str, str] = {}
    for m in reg.metrics.list():
        for v in m.versions or [m]:
            by_name[v.name] = by_name[v.full_name] = v.project_id
            if reg.storage.local and v.artifact_location:
                by_dir[str(Path(reg.storage.local_dir(v.artifact_location)).resolve())] = v.project_id
    owners: dict[str, str] = {}
    for name, info in checks.items():
        base = name.split("/", 1)[0]  # a gate attached to a metric goes with it
        src = (checks.get(base) or info).get("source")
        owner = by_dir.get(str(Path(src).resolve())) if src else None
        owner = owner or by_name.get(base)
        if owner is not None:
            owners[name] = owner
    return owners


def _is_unrestricted(request: Request) -> bool:
    sc = acc.scope(request)
    return sc is None or bool(sc.global_role)


def visible_metrics(request: Request, need: str = "read") -> list[str]:
    """The monitored metrics the caller may ``need``, sorted."""
    checks = store_of(request).checks()
    if _is_unrestricted(request):
        return sorted(checks)
    owners = metric_owners(request, checks)
    ids = acc.visible(request, need) or set()
    return sorted(n for n in checks if owners.get(n) in ids)


def check_metric(request: Request, metric: str, need: str, what: str = "metric", ref: str | None = None) -> None:
    """404 for a metric the monitor never scored or the caller may not see; 403 for too small a role."""
    checks = store_of(request).checks()
    if metric not in checks:
        raise acc.hidden(f"monitored {what}" if what == "metric" else what, ref or metric)
    if _is_unrestricted(request):
        return
    owner = metric_owners(request, checks).get(metric)
    if owner is None:
        raise acc.hidden(f"monitored {what}" if what == "metric" else what, ref or metric)
    acc.check(request, owner, need, what, ref or metric)


def labels_of(info: dict[str, Any]) -> list[str]:
    if info.get("kind") == "gate":
        return ["pass", "fail"]
    return list((info.get("spec") or {}).get("labels") or [])


# --- summary --------------------------------------------------------------------------------
class DayCounts(BaseModel):
    day: str = Field(description="UTC date, YYYY-MM-DD")
    verdicts: int
    passed: int
    failed: int
    pass_rate: float | None
    review: int = Field(description="routed to a person for doubt or a high-severity fail (audits not counted)")
    audit: int = Field(description="confident passes sampled for audit")


class MetricSummary(BaseModel):
    metric: str
    kind: str
    labels: list[str]
    verdicts: int
    pass_rate: float | None
    review: int
    audit: int
    pending: int = Field(description="routed verdicts (review and audit, all time) awaiting a human label")
    reviewed: int = Field(description="verdicts with a people's label (the reviewers' consensus, all time)")
    disagreements: int = Field(0, description="verdicts whose reviewers are tied (all time): the disagreement queue")
    label_counts: dict[str, int]
    days: list[DayCounts]


class SummaryOut(BaseModel):
    since: float
    days: int
    metrics: list[MetricSummary]


def _day(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%d")


def summarize(request: Request, metric: str | None, days: int) -> SummaryOut:
    """Per metric: verdicts per UTC day over the last ``days`` days, pass rate, routed, audited, pending."""
    store = store_of(request)
    if metric is not None:
        check_metric(request, metric, "read")
    names = [metric] if metric is not None else visible_metrics(request)
    checks = store.checks()
    now = time.time()
    since = now - days * 86400
    out = []
    for name in names:
        vs = store.verdicts(name, since=since)
        per: dict[str, Counter] = {}
        for v in vs:
            c = per.setdefault(_day(v["created_at"]), Counter())
            c["verdicts"] += 1
            c["passed" if v["passed"] else "failed"] += 1
            if v["route"] == "review":
                c["audit" if v["route_reason"] == "audit" else "review"] += 1
        day_rows = [DayCounts(day=d, verdicts=c["verdicts"], passed=c["passed"], failed=c["failed"],
                              pass_rate=round(c["passed"] / c["verdicts"], 6), review=c["review"], audit=c["audit"])
                    for d, c in sorted(per.items())]
        n = len(vs)
        passed = sum(v["passed"] for v in vs)
        out.append(MetricSummary(
            metric=name, kind=checks[name]["kind"], labels=labels_of(checks[name]), verdicts=n,
            pass_rate=round(passed / n, 6) if n else None, review=sum(d.review for d in day_rows),
            audit=sum(d.audit for d in day_rows), pending=len(store.review_queue(name, limit=None)),
            reviewed=len(store.reviewed(name)), disagreements=len(store.disagreements(name, limit=None)),
            label_counts=dict(Counter(str(v["label"]) for v in vs)),
            days=day_rows))
    return SummaryOut(since=since, days=days, metrics=out)


@router.get("/monitor/summary", response_model=SummaryOut, tags=["monitor"], responses=_ERRORS)
def summary(request: Request, metric: str | None = Query(None, max_length=300),
            days: int = Query(7, ge=1, le=366)) -> SummaryOut:
    """Verdicts per day per monitored metric: counts, pass rate, routed to review, audits, pending reviews."""
    return summarize(request, metric, days)


@router.get("/monitor/metrics", tags=["monitor"], response_class=Response, responses=_ERRORS)
def prometheus_metrics(request: Request) -> Response:
    """Prometheus series of the monitor store's verdicts, all time, for the metrics the caller may read
    (``assay.monitor._prometheus``; needs assay[monitor]). With authentication on, a scraper sends a key
    (Prometheus ``authorization: {credentials: KEY}``), as for every /v1 path; /v1/health stays open."""
    from ..monitor._prometheus import store_exposition  # prometheus-client: the monitor extra

    names = None if _is_unrestricted(request) else visible_metrics(request)
    body, content_type = store_exposition(store_of(request), names, request.headers.get("accept"))
    return Response(body, media_type=content_type)


# --- review queue and labels ----------------------------------------------------------------
class QueueItem(BaseModel):
    verdict_id: int
    trace_id: str
    span_id: str | None = None
    metric: str
    kind: str
    label: str | None = Field(description="the evaluator's (or gate's) verdict")
    score: float | None
    confidence: float | None
    why: str = Field(description="uncertain, high_severity_fail, gate_fail or audit")
    created_at: float
    labels: list[str] = Field(description="the labels a reviewer may give")
    fields: dict[str, Any] = Field(description="the trace content the metric judged (input, output, context, tools)")


def queue(request: Request, metric: str | None, limit: int) -> list[QueueItem]:
    """Routed verdicts without a human label, oldest first, of the metrics the caller may read."""
    store = store_of(request)
    if metric is not None:
        check_metric(request, metric, "read")
    names = [metric] if metric is not None else visible_metrics(request)
    checks = store.checks()
    items = sorted((v for n in names for v in store.review_queue(n, limit=limit)), key=lambda v: v["id"])[:limit]
    out = [QueueItem(**_queue_fields(v, checks)) for v in items]
    return out


@router.get("/review/queue", response_model=list[QueueItem], tags=["monitor"], responses=_ERRORS)
def review_queue(request: Request, metric: str | None = Query(None, max_length=300),
                 limit: int = Query(50, ge=1, le=1000)) -> list[QueueItem]:
    """Verdicts routed to people and not labeled yet, each with the trace content the metric judged."""
    return queue(request, metric, limit)


class ReviewIn(BaseModel):
    label: str = Field(min_length=1, max_length=200, description="one of the metric's labels")
    reviewer: str | None = Field(None, max_length=200, description="default: the API key's name")
    note: str | None = Field(None, max_length=4000)


class ReviewOut(BaseModel):
    review_id: int
    verdict_id: int
    trace_id: str
    span_id: str | None = None
    metric: str
    label: str
    evaluator_label: str | None
    agrees: bool
    reviewer: str | None = None
    judge: bool = Field(False, description="a judge's label (reviewer judge:MODEL), never a person's")
    replaced: str | None = Field(None, description="this reviewer's earlier label, which this one replaces")
    consensus: str | None = Field(None, description="the verdict's people's label now (None: none yet, or a tie)")
    review_status: str | None = Field(None, description="unreviewed, single, unanimous, majority or tie")
    reviewers: int = Field(0, description="how many people labeled the verdict")


def label_verdict(request: Request, verdict_id: int, body: ReviewIn) -> ReviewOut:
    """Store a human label for one verdict (by verdict id only: never a trace id)."""
    ref = f"#{verdict_id}"
    if not 1 <= verdict_id <= MAX_VERDICT_ID:  # the UI's form path takes any integer: no database holds it
        raise acc.hidden("verdict", ref if len(ref) <= 24 else f"{ref[:20]}...")
    store = store_of(request)
    v = store.verdict(int(verdict_id))
    if v is None:
        raise acc.hidden("verdict", ref)
    check_metric(request, v["metric"], "edit", "verdict", ref)
    sc = acc.scope(request)
    reviewer = body.reviewer or (sc.name if sc is not None and sc.name else None)
    return ReviewOut(**review_label(store, int(verdict_id), body.label, reviewer=reviewer, note=body.note))


@router.post("/verdicts/{verdict_id}/review", response_model=ReviewOut, status_code=201, tags=["monitor"],
             responses=_ERRORS)
def review_verdict(request: Request, body: ReviewIn,
                   verdict_id: int = PathParam(ge=1, le=MAX_VERDICT_ID)) -> ReviewOut:
    """Label a routed (or any) verdict; the label must be one of the metric's labels (422 invalid_label).
    Several reviewers may label one verdict: every label is kept, a reviewer's second label replaces
    their first, the people's label is the majority and a tie goes to the disagreement queue.
    Needs the editor role (or above) on the metric's project."""
    return label_verdict(request, verdict_id, body)


# --- several reviewers: the disagreement queue and agreement ------------------------------------
class ReviewerLabel(BaseModel):
    reviewer: str = Field(description="the reviewer's name (anonymous: reviews without one)")
    label: str
    note: str | None = None
    created_at: float


def _queue_fields(v: dict[str, Any], checks: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """A stored verdict as the review queue's item fields (the trace's non-empty row fields in view)."""
    row = v.get("row") or {}
    return dict(verdict_id=v["id"], trace_id=v["trace_id"], span_id=v.get("span_id"), metric=v["metric"],
                kind=v["kind"], label=v["label"], score=v["score"], confidence=v["confidence"],
                why=str(v["route_reason"] or ""), created_at=v["created_at"],
                labels=labels_of(checks.get(v["metric"], {})),
                fields={k: row[k] for k in ROW_FIELDS if row.get(k) not in (None, "", [], {})})


class DisagreementItem(QueueItem):
    reviews: list[ReviewerLabel] = Field(description="each reviewer's current label")
    status: str = Field(description="tie (no people's label: needs a deciding review) or majority (settled)")
    consensus: str | None = Field(description="the people's label (None while tied)")


def disagreement_queue(request: Request, metric: str | None, limit: int, settled: bool = False
                       ) -> list[DisagreementItem]:
    """Verdicts whose reviewers disagree (tied; with ``settled`` also those a majority settled), oldest
    first, of the metrics the caller may read."""
    store = store_of(request)
    if metric is not None:
        check_metric(request, metric, "read")
    names = [metric] if metric is not None else visible_metrics(request)
    checks = store.checks()
    found = sorted((v for n in names for v in store.disagreements(n, pending=not settled, limit=limit)),
                   key=lambda v: v["id"])[:limit]
    out = [DisagreementItem(**_queue_fields(v, checks),
                            reviews=[ReviewerLabel(reviewer=r["reviewer"], label=r["label"], note=r.get("note"),
                                                   created_at=r["created_at"]) for r in v["reviews"]],
                            status=v["review_status"], consensus=v["review_label"]) for v in found]
    return out


@router.get("/review/disagreements", response_model=list[DisagreementItem], tags=["monitor"], responses=_ERRORS)
def review_disagreements(request: Request, metric: str | None = Query(None, max_length=300),
                         limit: int = Query(50, ge=1, le=1000),
                         settled: bool = Query(False, description="also list disagreements a majority settled")
                         ) -> list[DisagreementItem]:
    """Verdicts whose reviewers disagree with no majority, each with every reviewer's label: a deciding
    review (POST /v1/verdicts/{id}/review) by another reviewer takes one out of the queue."""
    return disagreement_queue(request, metric, limit, settled)


class AgreementOut(BaseModel):
    metric: str
    labels: list[str]
    reviewed: int = Field(description="verdicts with a people's label")
    rule: str = Field(description="how the people's label of a verdict is decided")
    n_boot: int
    human_vs_human: dict[str, Any] = Field(description="verdicts with >= 2 reviewers: pairwise Cohen's kappa (pairs: "
                                                       "reviewers, n, kappa, kappa_interval, accuracy), kappa_mean, "
                                                       "Krippendorff's alpha with alpha_interval, "
                                                       "unanimous/majority/ties")
    judge_vs_human: list[dict[str, Any]] = Field(description="per judge (reviews by judge:MODEL): n, kappa against the "
                                                             "people's label, kappa_interval, accuracy, "
                                                             "kappa_vs_reviewers")
    student_vs_human: dict[str, Any] = Field(description="the evaluator's verdict against the people's label: n, "
                                                         "kappa, kappa_interval, accuracy, kappa_vs_reviewers")


def agreement_of(request: Request, metric: str, n_boot: int = 1000) -> AgreementOut:
    check_metric(request, metric, "read")
    return AgreementOut(**agreement_report(store_of(request), metric, n_boot=n_boot))


@router.get("/monitor/agreement", response_model=list[AgreementOut], tags=["monitor"], responses=_ERRORS)
def agreement(request: Request, metric: str | None = Query(None, max_length=300),
              n_boot: int = Query(1000, ge=0, le=5000, description="bootstrap resamples for the 95% intervals")
              ) -> list[AgreementOut]:
    """Per metric (or the one asked for): human-vs-human, judge-vs-human and student-vs-human agreement."""
    names = [metric] if metric is not None else visible_metrics(request)
    return [agreement_of(request, n, n_boot) for n in names]


# --- drift ----------------------------------------------------------------------------------
class DriftOut(BaseModel):
    metric: str
    kind: str
    labels: list[str]
    window_seconds: float
    n: int
    eval_kappa: float | None
    baseline: dict[str, Any] = Field(description="the score baseline: source (report / first_window), n, counts")
    windows: list[dict[str, Any]] = Field(description="per window: n, fail_rate, labels (shares), label_shift "
                                                      "(total variation distance from the first window's label mix), "
                                                      "mean_score, psi, ks, ks_p, reviews, kappa")
    label_mix: dict[str, float] = Field(description="label shares over all verdicts")
    agreement: dict[str, Any] = Field(description="model vs human on reviewed verdicts: reviews, kappa (weighted to "
                                                  "traffic), kappa_reviewed, accuracy_reviewed, audit agreement, "
                                                  "confusion (model label -> human label -> count)")
    audit: dict[str, Any] | None
    people: AgreementOut | None = Field(None, description="human-vs-human, judge-vs-human and student-vs-human "
                                                          "agreement (as GET /v1/monitor/agreement)")
    warnings: list[str]


def _tvd(a: dict[str, float], b: dict[str, float]) -> float:
    return round(0.5 * sum(abs(a.get(k, 0.0) - b.get(k, 0.0)) for k in set(a) | set(b)), 6)


def drift_of(request: Request, metric: str, window: str) -> DriftOut:
    """Score drift (PSI / KS against the baseline), label-mix drift and reviewer agreement of one metric."""
    check_metric(request, metric, "read")
    store = store_of(request)
    d = monitor_drift(store, metric, window=window, record_baseline=False)  # a GET changes nothing
    windows = d["windows"]
    first = windows[0]["labels"] if windows else {}
    for w in windows:
        w["label_shift"] = _tvd(first, w["labels"])
    confusion: dict[str, dict[str, int]] = {}
    for v in store.reviewed(metric):
        row = confusion.setdefault(str(v["label"]), {})
        row[v["review_label"]] = row.get(v["review_label"], 0) + 1
    n = d["n"]
    mix = Counter(str(v["label"]) for v in store.verdicts(metric)) if n else Counter()
    overall = {k: v for k, v in d["overall"].items() if k != "fail_rate"}
    return DriftOut(metric=metric, kind=d["kind"], labels=labels_of(store.checks()[metric]),
                    window_seconds=d["window_seconds"], n=n, eval_kappa=d["eval_kappa"], baseline=d["baseline"],
                    windows=windows, label_mix={k: round(c / n, 6) for k, c in sorted(mix.items())},
                    agreement={**overall, "fail_rate": d["overall"]["fail_rate"], "confusion": confusion},
                    audit=d["audit"], people=AgreementOut(**agreement_report(store, metric, n_boot=500)),
                    warnings=d["warnings"])


@router.get("/monitor/drift", response_model=list[DriftOut], tags=["monitor"], responses=_ERRORS)
def drift(request: Request, metric: str | None = Query(None, max_length=300),
          window: str = Query("1d", max_length=20, description="window length: 3600, 15m, 1h, 1d, 1w")) -> list[DriftOut]:
    """Per metric (or the one asked for): score drift, label-mix drift and agreement with reviewers."""
    names = [metric] if metric is not None else visible_metrics(request)
    return [drift_of(request, n, window) for n in names]
