"""The web UI: server-rendered pages (Jinja) with light JavaScript that calls the same /v1 API.

Pages: projects, a project's runs and datasets, the four-step new-run flow, a run's live
status and report, metrics with their versions and a try-it box; monitoring (verdicts over time,
the review queue where people label routed verdicts, drift) from the server's monitor store. With authentication on,
``/login`` stores an API key in a cookie the API accepts too.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter, Body, FastAPI, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from ..errors import AssayError
from ..evaluator._artifact import read_info
from ..metrics import InputShape, get_preset, list_presets, load_metric, metric_from_dict
from ..registry import Status
from ..report import Report
from . import _access as acc
from . import _monitor_api as mon
from ._deps import _reg, _run, status_of
from ._generated import MAX_GENERATED_ROWS
from ._retrain import retrain_metric, reviewed_count

HERE = Path(__file__).parent
templates = Jinja2Templates(directory=str(HERE / "templates"))
router = APIRouter(include_in_schema=False)
# A run whose CV kappa on its training rows is this far above its held-out kappa gets a warning: training
# rows (generated ones above all) easier than the real rows it will score.
KAPPA_GAP = 0.2


def _utc(ts: float) -> str:
    from datetime import datetime, timezone

    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%d %H:%M")


templates.env.filters["utc"] = _utc
templates.env.filters["fig"] = lambda x, digits=3: "–" if x is None else f"{x:.{digits}f}"


def _page(request: Request, name: str, **ctx: Any) -> HTMLResponse:
    return templates.TemplateResponse(request, name, {"auth": request.app.state.auth, **ctx})


def _error_page(request: Request, exc: AssayError, status: int = 404) -> HTMLResponse:
    resp = _page(request, "error.html", error=exc.to_dict())
    resp.status_code = status
    return resp


@router.get("/")
def home() -> RedirectResponse:
    return RedirectResponse("/projects", status_code=303)


def _visible_projects(request: Request) -> list[Any]:
    ids = acc.visible(request)
    return [p for p in _reg(request).projects.list() if ids is None or p.id in ids]


@router.get("/projects", response_class=HTMLResponse)
def projects(request: Request) -> HTMLResponse:
    return _page(request, "projects.html", projects=_visible_projects(request))


@router.post("/projects")
def create_project(request: Request, name: str = Form(...), description: str = Form("")) -> Any:
    try:
        acc.require_operator(request, "create a project")
        p = _reg(request).projects.create(name, description)
    except AssayError as exc:  # the form again, listing only the projects this caller may see
        resp = _page(request, "projects.html", projects=_visible_projects(request), error=exc.to_dict())
        resp.status_code = status_of(exc)
        return resp
    return RedirectResponse(f"/projects/{p.id}", status_code=303)


@router.get("/projects/{project}", response_class=HTMLResponse)
def project(request: Request, project: str) -> HTMLResponse:
    reg = _reg(request)
    try:
        p = reg.projects.get(project)
        acc.check(request, p.id, "read", "project", project)
    except AssayError as exc:
        return _error_page(request, exc, 403 if exc.code == "forbidden" else 404)
    return _page(request, "project.html", project=p, runs=reg.runs.list(p.id), datasets=reg.datasets.list(p.id),
                 metrics=reg.metrics.list(p.id))


@router.get("/projects/{project}/new", response_class=HTMLResponse)
def new_run(request: Request, project: str) -> HTMLResponse:
    try:
        p = _reg(request).projects.get(project)
        acc.check(request, p.id, "edit", "project", project)
    except AssayError as exc:
        return _error_page(request, exc, 403 if exc.code == "forbidden" else 404)
    presets = [get_preset(n) for n in list_presets()]
    sp = _reg(request).providers
    names = sorted(sp.providers) if sp is not None else []
    allow_mock = sp is None or sp.allow_mock
    choices = names + (["mock/generator", "mock/judge"] if allow_mock else [])  # generator and judge, by name
    # by default a judge other than the generator: a generator labelling its own rows checks nothing
    judge = next((j for j in choices[1:] if j != choices[0]), choices[0] if choices else "")
    return _page(request, "new_run.html", project=p, presets=presets, shapes=[s.value for s in InputShape],
                 preset_specs={s.name: s.to_dict() for s in presets}, providers=names, allow_mock=allow_mock,
                 choices=choices, default_judge=judge, max_generated=MAX_GENERATED_ROWS)


@router.get("/runs/{run_id}", response_class=HTMLResponse)
def run_page(request: Request, run_id: str) -> HTMLResponse:
    reg = _reg(request)
    try:
        run = reg.runs.get(run_id)
        acc.check(request, run.project_id, "read", "run", run_id)
    except AssayError as exc:
        return _error_page(request, exc, 403 if exc.code == "forbidden" else 404)
    import time

    stale_after = request.app.state.stale_after
    position = reg.runs.queue_position(run_id) if run.status == Status.queued else None
    warning = None
    if position is not None and not any(w["alive"] for w in reg.runs.workers_status(stale_after)):
        warning = "No live worker: queued runs wait until a worker (assay worker) is running."
    elif run.status.active and run.worker_id and run.heartbeat_at is not None:
        beat = time.time() - run.heartbeat_at.timestamp()
        if beat > stale_after / 2:
            warning = (f"The worker has not reported for {beat:.0f} s; the run is failed after {stale_after:.0f} s "
                       "without a heartbeat.")
    return _page(request, "run.html", run=run, project=reg.projects.get(run.project_id),
                 active=[s.value for s in Status if s.active], queue_position=position, stale_warning=warning,
                 stale_after=stale_after, gap=_run_gap(request, run))


def overfit_gap(report: Any) -> dict[str, Any] | None:
    """The warning figures when a report's shipped candidate scored a kappa on the training rows (cross-
    validated, or on its validation slice) ``KAPPA_GAP`` or more above the held-out kappa; None when it
    did not, or when the report lacks either figure."""
    try:
        rep = Report.from_dict(report)
    except AssayError:
        return None
    held = rep.kappa
    sel = rep.selection
    win = next((c for c in rep.candidates if sel is not None and c.name == sel.winner), None)
    if win is None or held is None:
        return None
    train = win.cv_kappa if win.cv_kappa is not None else win.validation_kappa
    if train is None or train - held < KAPPA_GAP:
        return None
    return {"train_kappa": train, "held_out_kappa": held, "gap": train - held, "winner": win.name,
            "validated_on": "cross-validation" if win.cv_kappa is not None else "its validation rows"}


def _run_gap(request: Request, run: Any) -> dict[str, Any] | None:
    if run.status not in (Status.fine_tuned, Status.registered):
        return None
    try:
        gap = overfit_gap(_reg(request).runs.report(run.id))
    except AssayError:
        return None
    if gap is not None:
        train_set = ((run.config or {}).get("data") or {}).get("train_set")
        gap["generated"] = bool((run.config or {}).get("generate")) or _generated_set(request, train_set)
        gap["text"] = (
            f"Kappa on the {'generated ' if gap['generated'] else ''}training rows ({gap['validated_on']}, "
            f"{gap['winner']}) is {gap['train_kappa']:.2f}; on the held-out rows people labeled it is "
            f"{gap['held_out_kappa']:.2f}, a gap of {gap['gap']:.2f}. The training rows are easier than the real "
            "ones" + (" (generated rows may say what the generator or judge expects, not what people label)"
                      if gap["generated"] else "") + ": trust the held-out figure, and review or regenerate "
            "the training rows before registering.")
    return gap


def _generated_set(request: Request, ref: Any) -> bool:
    """Whether a run's ``dataset:<id>`` training set holds generated rows (their ``meta.lineage``)."""
    if not isinstance(ref, str) or not ref.startswith("dataset:"):
        return False
    try:
        rows = _reg(request).datasets.rows(ref.removeprefix("dataset:"), limit=1)
    except AssayError:
        return False
    return bool(rows) and isinstance(rows[0].get("meta"), dict) and "lineage" in rows[0]["meta"]


@router.get("/ui/runs/{run_id}/gap")
def run_gap(request: Request, run_id: str) -> dict[str, Any]:
    """The run page's kappa-gap warning (``{"gap": null}``: none), read when a watched run finishes."""
    return {"gap": _run_gap(request, _run(request, run_id, "read"))}


@router.get("/metrics", response_class=HTMLResponse)
def metrics(request: Request) -> HTMLResponse:
    return _page(request, "metrics.html", metrics=acc.filter_by_project(request, _reg(request).metrics.list(), "read"))


@router.get("/metrics/{name}", response_class=HTMLResponse)
def metric_page(request: Request, name: str) -> HTMLResponse:
    return _metric_view(request, name)


def _metric_view(request: Request, name: str, retrain_error: dict[str, Any] | None = None) -> HTMLResponse:
    try:
        m = _reg(request).metrics.get(name)
        acc.check(request, m.project_id, "read", "metric", name)
    except AssayError as exc:
        return _error_page(request, exc, 403 if exc.code == "forbidden" else 404)
    fields = [f for f in ("input", "output", "context", "tools") if "{" + f + "}" in m.spec.get("prompt", "")]
    try:
        reviews = reviewed_count(request, m)
    except AssayError:
        reviews = None
    return _page(request, "metric.html", metric=m, fields=fields or ["input"], reviews=reviews,
                 retrain_error=retrain_error)


@router.post("/metrics/{name}/retrain")
def retrain_from_reviews(request: Request, name: str) -> Any:
    """The "Retrain from reviews" button: queue the retrain, then show the new run (or the error)."""
    try:
        run = retrain_metric(request, name)
    except AssayError as exc:
        if exc.code in ("not_found", "forbidden"):
            return _error_page(request, exc, status_of(exc))
        resp = _metric_view(request, name, retrain_error=exc.to_dict())
        resp.status_code = status_of(exc)
        return resp
    return RedirectResponse(f"/runs/{run.id}", status_code=303)


# --- monitoring: verdicts over time, the review queue, drift (the same code as /v1/monitor) ---------
def _monitor_error(request: Request, exc: AssayError) -> HTMLResponse:
    return _error_page(request, exc, status_of(exc))


@router.get("/monitor", response_class=HTMLResponse)
def monitor_page(request: Request, days: int = 14) -> HTMLResponse:
    try:
        out = mon.summarize(request, None, min(max(days, 1), 366))
    except AssayError as exc:
        return _monitor_error(request, exc)
    top = max((d.verdicts for m in out.metrics for d in m.days), default=0)
    return _page(request, "monitoring.html", summary=out, top=top or 1)


def _queue_page(request: Request, template: str, fetch: Any, metric: str | None, done: int | None) -> HTMLResponse:
    """A review queue page: the first 50 items ``fetch`` gives for the metric filter, and the metric picker."""
    try:
        items = fetch(request, metric or None, 50)
        metrics = mon.visible_metrics(request)
        rules = decision_rules(request, {it.metric for it in items})
    except AssayError as exc:
        return _monitor_error(request, exc)
    return _page(request, template, items=items, metrics=metrics, metric=metric or "", done=done, rules=rules)


def decision_rules(request: Request, names: set[str]) -> dict[str, dict[str, Any]]:
    """Metric -> the rule its binary evaluator decides a verdict's label with (``positive``, ``threshold``,
    ``operator``; threshold None when it cannot be read), for the review cards: a registered version's
    threshold and operator, else the artifact's calibrated ones (the monitor's check ``source``)."""
    checks = mon.store_of(request).checks()
    out = {}
    for name in names:
        check = checks.get(name) or {}
        try:
            metric = load_metric({k: v for k, v in (check.get("spec") or {}).items() if k != "routing"})
        except (AssayError, TypeError, ValueError):
            continue
        if check.get("kind") != "evaluator" or not metric.is_binary:
            continue
        out[name] = {"positive": metric.positive, "threshold": None, "operator": ">="}
        if check.get("source"):
            out[name].update(_source_rule(request, str(check["source"])))
    return out


def _source_rule(request: Request, source: str) -> dict[str, Any]:
    """{threshold, operator} of the evaluator at ``source`` (an artifact folder); {} when unreadable."""
    reg = _reg(request)
    where = Path(source).expanduser().resolve()
    if reg.storage.local:
        for m in reg.metrics.list():
            for v in m.versions:
                if v.threshold is not None and v.artifact_location and \
                        Path(reg.storage.local_dir(v.artifact_location)).resolve() == where:
                    return {"threshold": v.threshold, "operator": v.operator}
    try:
        cal = read_info(where).scoring_calibration()
    except (AssayError, OSError):
        return {}
    return {"threshold": cal.threshold, "operator": cal.operator} if cal.threshold is not None else {}


@router.get("/monitor/review", response_class=HTMLResponse)
def review_page(request: Request, metric: str | None = None, done: int | None = None) -> HTMLResponse:
    """Routed verdicts (low confidence, audit sample) without a human label, oldest first."""
    return _queue_page(request, "review_queue.html", mon.queue, metric, done)


@router.get("/monitor/review/disagreements", response_class=HTMLResponse)
def disagreements_page(request: Request, metric: str | None = None, done: int | None = None) -> HTMLResponse:
    """Verdicts whose reviewers are tied, each reviewer's label, and the buttons for a deciding review."""
    return _queue_page(request, "disagreements.html", mon.disagreement_queue, metric, done)


@router.post("/monitor/review/{verdict_id}")
def review_submit(request: Request, verdict_id: int, label: str = Form(...), reviewer: str = Form(""),
                  note: str = Form(""), metric: str = Form(""), back: str = Form("")) -> Any:
    """A reviewer's button: the same call as POST /v1/verdicts/{id}/review, then back to the queue
    (``back=disagreements``: to the disagreement queue; no other value, never a URL)."""
    from urllib.parse import urlencode

    try:
        mon.label_verdict(request, verdict_id, mon.ReviewIn(label=label, reviewer=reviewer or None, note=note or None))
    except (AssayError, ValueError) as exc:
        err = exc if isinstance(exc, AssayError) else AssayError("a label, reviewer and note within their limits",
                                                                 str(exc).splitlines()[0], "shorten them",
                                                                 code="invalid_input")
        return _monitor_error(request, err)
    query = urlencode({k: v for k, v in (("metric", metric), ("done", verdict_id)) if v})
    page = "/monitor/review/disagreements" if back == "disagreements" else "/monitor/review"
    return RedirectResponse(f"{page}?{query}", status_code=303)


@router.get("/monitor/drift", response_class=HTMLResponse)
def drift_page(request: Request, metric: str | None = None, window: str = "1d") -> HTMLResponse:
    try:
        names = [metric] if metric else mon.visible_metrics(request)
        reports = [mon.drift_of(request, n, window) for n in names]
    except AssayError as exc:
        return _monitor_error(request, exc)
    return _page(request, "drift.html", reports=reports, window=window, metric=metric or "")


@router.post("/ui/metric-check")
def metric_check(request: Request, spec: dict[str, Any] = Body(...)) -> dict[str, Any]:
    """Validate a custom metric from step 1 of the new-run flow; returns the full spec."""
    return metric_from_dict(spec, "the custom metric").to_dict()


@router.get("/login", response_class=HTMLResponse)
def login(request: Request, next: str = "/projects") -> HTMLResponse:
    return _page(request, "login.html", next=next)


@router.post("/login")
def do_login(request: Request, key: str = Form(...), next: str = Form("/projects")) -> Any:
    if not request.app.state.keys(key.strip()):
        resp = _page(request, "login.html", next=next, error="That key is unknown or revoked.")
        resp.status_code = 401
        return resp
    target = next if next.startswith("/") and not next.startswith("//") else "/projects"
    resp = RedirectResponse(target, status_code=303)
    # HTTP-only (no script reads it), SameSite=strict (no other site's page sends it), Secure behind TLS
    resp.set_cookie("assay_key", key.strip(), httponly=True, samesite="strict", secure=request.url.scheme == "https")
    return resp


def mount_ui(app: FastAPI) -> None:
    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")
    app.include_router(router)
