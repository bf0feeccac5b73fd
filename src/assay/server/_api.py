"""The REST API, ``/v1``: projects, datasets, runs, registered metrics and scoring.

Every handler is a thin call into :class:`assay.registry.Registry`; errors are AssayErrors
that the app turns into the one JSON error shape.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any, Literal

import yaml
from fastapi import APIRouter, File, Form, Query, Request, UploadFile
from fastapi.responses import HTMLResponse, PlainTextResponse
from pydantic import BaseModel, Field, ValidationError

from .._version import __version__
from ..config import ProviderConfig
from ..data import SEED_FRACTION
from ..errors import AssayError, invalid
from ..metrics import MetricSpec, load_metric
from ..registry import Dataset, Metric, Project, ReviewItem, Run, RunEvent, ScoreResult, Validated
from ..registry._datasets import parse_metric
from . import _access as acc
from . import _generated, _guard
from ._deps import _ERRORS, _dataset, _metric, _project, _reg, _run
from ._limits import check_value, too_deep
from ._uploads import spool_upload

router = APIRouter(prefix="/v1")
MAX_UPLOAD_BYTES = 512 * 1024 * 1024
MAX_EVENT_ID = 2**63 - 1  # the largest id a database integer column holds


# --- health -------------------------------------------------------------------------------------
@router.get("/health", tags=["server"], responses=_ERRORS)
def health(request: Request) -> dict[str, Any]:
    """Liveness: database, workers (alive / stale), queue depth; 503 ``database_unavailable`` (with
    Retry-After) while the database is down. The worker list (with its run ids), the worker processes
    and the artifact root only with authentication off or an operator key; the batching totals of the
    caller's own metrics for a key scoped to projects; aggregate status only without a key."""
    reg = _reg(request)
    app = request.app
    stale_after = app.state.stale_after
    workers = reg.runs.workers_status(stale_after)
    sup = app.state.supervisor.status() if app.state.supervisor is not None else None
    alive = [w for w in workers if w["alive"]]
    queue = reg.runs.queue_depth()
    problems = []
    if sup is not None and any(not p["alive"] for p in sup["processes"]):
        problems.append("a worker process is down (being restarted)")
    if queue and not alive:
        problems.append(f"{queue} queued run(s) and no live worker")
    stale = [w for w in workers if not w["alive"] and not w["stopped"] and w["run_id"]]
    if stale:
        problems.append(f"{len(stale)} worker(s) stopped beating while running a run")
    out: dict[str, Any] = {
        "status": "degraded" if problems else "ok", "problems": problems, "version": __version__,
        "database": reg.dialect, "auth": app.state.auth, "queue_depth": queue,
        "workers": {"alive": len(alive), "stale": len([w for w in workers if not w["alive"] and not w["stopped"]]),
                    "stale_after_s": stale_after},
    }
    ids = acc.visible(request, "read")
    if ids is None:  # authentication off, or an operator key
        out["workers"]["list"] = workers
        out["artifacts"] = reg.storage.root if not app.state.auth else None
        if sup is not None:
            out["supervisor"] = sup
        out["batching"] = app.state.batcher.stats()
        return out
    if sup is not None:
        out["supervisor"] = {"processes": len(sup["processes"]), "alive": sum(p["alive"] for p in sup["processes"])}
    if getattr(request.state, "scope", None) is not None:  # a key scoped to projects: its own metrics only
        names = {v.full_name for m in reg.metrics.list() if m.project_id in ids for v in m.versions}
        out["batching"] = {k: v for k, v in app.state.batcher.stats().items() if k in names}
    return out


# --- projects -----------------------------------------------------------------------------------
class ProjectIn(BaseModel):
    name: str
    description: str = ""


@router.get("/projects", response_model=list[Project], tags=["projects"], responses=_ERRORS)
def list_projects(request: Request) -> list[Project]:
    ids = acc.visible(request)
    items = _reg(request).projects.list()
    return items if ids is None else [p for p in items if p.id in ids]


@router.post("/projects", response_model=Project, status_code=201, tags=["projects"], responses=_ERRORS)
def create_project(body: ProjectIn, request: Request) -> Project:
    acc.require_operator(request, "create a project")
    return _reg(request).projects.create(body.name, body.description)


LOCATIONS = ("location", "original_location", "artifact_location")
TEXTS = ("message", "failure_reason")  # a failed run's reason says where its partial outputs are


def shown(request: Request, obj: Any) -> Any:
    """A Dataset, Run, RunEvent or Metric (or a list of them) as the caller may see it: for a caller who
    is not the operator (authentication on, a key scoped to projects), storage locations relative to the
    artifact root, in its location fields and in run messages."""
    if acc.visible(request) is None:
        return obj
    if isinstance(obj, list):
        return [shown(request, o) for o in obj]
    root = _reg(request).storage.root.rstrip("/") + "/"
    update: dict[str, Any] = {}
    for key in LOCATIONS:
        value = getattr(obj, key, None)
        if isinstance(value, str):
            bare = value.removeprefix("file://")
            update[key] = bare[len(root):] if bare.startswith(root) else bare.rstrip("/").rsplit("/", 1)[-1]
    for key in TEXTS:
        value = getattr(obj, key, None)
        if isinstance(value, str) and root in value:
            update[key] = value.replace("file://" + root, "").replace(root, "")
    for key in ("versions", "history"):
        if getattr(obj, key, None):
            update[key] = shown(request, getattr(obj, key))
    return obj.model_copy(update=update) if update else obj


@router.get("/projects/{project}", response_model=Project, tags=["projects"], responses=_ERRORS)
def get_project(project: str, request: Request) -> Project:
    return _project(request, project, "member")


# --- datasets -----------------------------------------------------------------------------------
def _json_form(request: Request, value: str | None, name: str) -> dict[str, str]:
    if not value:
        return {}
    limits = request.app.state.limits
    try:
        out = json.loads(value)
    except json.JSONDecodeError as exc:
        raise AssayError(f"{name} as a JSON object", f"invalid JSON ({exc.msg})",
                         f"send {name} like {{\"input\": \"text\"}}", code="invalid_input") from None
    except RecursionError:
        raise too_deep(limits.json_depth, name) from None
    check_value(out, limits, what=name)
    if not isinstance(out, dict):
        raise AssayError(f"{name} as a JSON object", f"a {type(out).__name__}", f"send {name} as an object",
                         code="invalid_input")
    return {str(k): str(v) for k, v in out.items()}


@router.get("/projects/{project}/datasets", response_model=list[Dataset], tags=["datasets"], responses=_ERRORS)
def list_datasets(project: str, request: Request) -> list[Dataset]:
    return shown(request, _reg(request).datasets.list(_project(request, project, "read").id))


@router.post("/projects/{project}/datasets", response_model=Dataset | Validated, status_code=201,
             tags=["datasets"], responses=_ERRORS)
def upload_dataset(
    project: str,
    request: Request,
    file: UploadFile = File(..., description="CSV, TSV, JSONL, JSON or Parquet"),
    metric: str = Form(..., description="preset name, or the metric spec as JSON"),
    kind: Literal["test", "train", "unlabeled"] = Form("test"),
    columns: str | None = Form(None, description='JSON: canonical name -> column, e.g. {"input": "text"}'),
    label_map: str | None = Form(None, description='JSON: file label -> metric label'),
    name: str | None = Form(None),
    seed_fraction: float = Form(SEED_FRACTION, gt=0, lt=1),
    split_seed: int = Form(0),
    validate_only: bool = Form(False, description="check the file and report, store nothing"),
) -> Dataset | Validated:
    """Upload a data file; every bad row is reported in ``error.rows`` (nothing is stored then)."""
    p = _project(request, project, "edit")
    spec = _metric_form(request, metric)
    cols, labels = _json_form(request, columns, "columns"), _json_form(request, label_map, "label_map")
    with spool_upload(file, MAX_UPLOAD_BYTES) as path:
        return shown(request, _reg(request).datasets.add(
            p.id, path, file.filename or "upload", metric=spec, kind=kind, columns=cols, label_map=labels,
            name=name, seed_fraction=seed_fraction, split_seed=split_seed, validate_only=validate_only))


def _metric_form(request: Request, value: str) -> MetricSpec:
    """An upload's ``metric`` field (a preset name, or the spec as JSON or YAML text) as a MetricSpec."""
    try:
        spec = parse_metric(value)
    except (yaml.YAMLError, RecursionError) as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise AssayError("a metric preset name, or the metric spec as JSON or YAML", f"text that does not parse"
                         f"{where} ({type(exc).__name__})", "fix the metric field", code="invalid_metric") from None
    check_value(spec.to_dict(), request.app.state.limits, what="metric")
    return spec


@router.get("/datasets/{dataset_id}", response_model=Dataset, tags=["datasets"], responses=_ERRORS)
def get_dataset(dataset_id: str, request: Request) -> Dataset:
    return shown(request, _dataset(request, dataset_id, "read"))


@router.get("/datasets/{dataset_id}/rows", tags=["datasets"], responses=_ERRORS)
def dataset_rows(dataset_id: str, request: Request, limit: int = Query(50, ge=1, le=10000)) -> list[dict[str, Any]]:
    _dataset(request, dataset_id, "read")
    return _reg(request).datasets.rows(dataset_id, limit=limit)


class ReviewStart(BaseModel):
    n: int = Field(50, ge=1, le=1000)


class DecisionIn(BaseModel):
    decision: Literal["accept", "reject", "relabel"]
    label: str | None = None
    reviewer: str = ""
    note: str = ""


@router.post("/datasets/{dataset_id}/review", response_model=list[ReviewItem], tags=["review"], responses=_ERRORS)
def start_review(dataset_id: str, body: ReviewStart, request: Request) -> list[ReviewItem]:
    """Pick ``n`` rows of a dataset (the same ones each time) for a person to check."""
    _dataset(request, dataset_id, "edit")
    return _reg(request).datasets.start_review(dataset_id, body.n)


@router.get("/datasets/{dataset_id}/review", response_model=list[ReviewItem], tags=["review"], responses=_ERRORS)
def review_items(dataset_id: str, request: Request) -> list[ReviewItem]:
    _dataset(request, dataset_id, "read")
    return _reg(request).datasets.review_items(dataset_id)


@router.post("/review/{item_id}", response_model=ReviewItem, tags=["review"], responses=_ERRORS)
def decide(item_id: str, body: DecisionIn, request: Request) -> ReviewItem:
    """Accept, reject or relabel a reviewed row (``note``: the reason); runs training on the dataset apply
    the decisions."""
    _review_item_dataset(request, item_id)
    return _reg(request).datasets.decide(item_id, body.decision, label=body.label, reviewer=body.reviewer,
                                         note=body.note)


def _review_item_dataset(request: Request, item_id: str) -> str:
    """The dataset of a review item the caller may edit (404 for a stranger, as for no such item)."""
    ds_id = _reg(request).datasets.review_item_dataset(item_id)
    if ds_id is None:
        raise acc.hidden("review item", item_id)
    try:
        _dataset(request, ds_id, "edit")
    except AssayError as exc:
        if exc.code == "not_found":
            raise acc.hidden("review item", item_id) from None
        raise
    return ds_id


@router.post("/datasets/{dataset_id}/generate", response_model=Dataset, status_code=201, tags=["datasets"],
             responses=_ERRORS)
def generate_dataset(dataset_id: str, body: _generated.GenerateIn, request: Request) -> Dataset:
    """Generate training rows from a test set's seed rows (the split a run with the same seed fraction and
    split seed makes) with the generator, each labeled by the judge (both the server's providers, by name);
    stored as a training dataset of the project. Review it (POST /v1/datasets/{id}/review) before training
    on it (data.train_set: dataset:<id>). The request waits for the rows (at most
    ``MAX_GENERATED_ROWS``)."""
    test = _dataset(request, dataset_id, "edit")
    return shown(request, _generated.generate_dataset(_reg(request), test, body))


@router.post("/review/{item_id}/regenerate", response_model=ReviewItem, status_code=201, tags=["review"],
             responses=_ERRORS)
def regenerate(item_id: str, body: _generated.RegenerateIn, request: Request) -> ReviewItem:
    """Reject a reviewed generated row with a reason and generate a row in its place (same label and
    strategy; the reason is told to the generator): the new row is a new review item, trained on unless
    rejected in turn. Send the test set, generator and judge the rows were generated with."""
    _review_item_dataset(request, item_id)
    test = _dataset(request, body.test_set, "read")
    return _generated.regenerate_item(_reg(request), item_id, test, body)


# --- runs ---------------------------------------------------------------------------------------
class RunIn(BaseModel):
    project: str = Field(description="project id or name")
    config: dict[str, Any] | str = Field(description="the run config (as in the CLI's YAML), an object or "
                                                     "YAML/JSON text; data files as 'dataset:<id>'")
    name: str | None = None


class RegisterIn(BaseModel):
    name: str | None = Field(None, description="the metric name (versions are added as -vN); optional for a "
                                               "retrain from reviews: the next version of the metric it retrained")
    threshold: float | None = Field(None, description="binary metrics: positive when score >= threshold "
                                                      "(default: the evaluator's calibrated threshold)")
    operator: Literal[">=", ">"] = ">="
    description: str | None = None
    confirm: bool = Field(False, description="register although the report shows the evaluator below a "
                                             "baseline (otherwise 409 needs_confirmation)")


@router.post("/runs", response_model=Run, status_code=201, tags=["runs"], responses=_ERRORS)
def create_run(body: RunIn, request: Request) -> Run:
    """Queue a run; a worker picks it up. Providers (judge, generate) are picked by the server's
    names; a base_url, api_key_env, cache path or other server path is refused (400)."""
    p = _project(request, body.project, "edit")
    return shown(request, _reg(request).runs.create(p.id, body.config, name=body.name))


@router.get("/runs", response_model=list[Run], tags=["runs"], responses=_ERRORS)
def list_runs(request: Request, project: str | None = None, status: str | None = None,
              limit: int = Query(200, ge=1, le=1000)) -> list[Run]:
    if status is not None:
        from ..registry import Status

        if status not in {s.value for s in Status}:
            raise AssayError(f"a status among {[s.value for s in Status]}", f"'{status}'", "fix ?status=",
                             code="invalid_input")
    if project is not None:
        project = _project(request, project, "read").id
    ids = acc.visible(request, "read")
    if ids is not None and project is None:
        return shown(request, [r for r in _reg(request).runs.list(None, status, limit=limit) if r.project_id in ids])
    return shown(request, _reg(request).runs.list(project, status, limit=limit))


@router.get("/runs/{run_id}", response_model=Run, tags=["runs"], responses=_ERRORS)
def get_run(run_id: str, request: Request) -> Run:
    return shown(request, _run(request, run_id, "read"))


@router.get("/runs/{run_id}/queue", tags=["runs"], responses=_ERRORS)
def run_queue(run_id: str, request: Request) -> dict[str, Any]:
    """Where a queued run waits (1: next), the queue depth, and whether a live worker is there."""
    _run(request, run_id, "read")
    reg = _reg(request)
    workers = reg.runs.workers_status(request.app.state.stale_after)
    return {"position": reg.runs.queue_position(run_id), "queue_depth": reg.runs.queue_depth(),
            "workers_alive": sum(1 for w in workers if w["alive"])}


@router.get("/runs/{run_id}/logs", response_model=list[RunEvent], tags=["runs"], responses=_ERRORS)
def run_logs(run_id: str, request: Request, after: int = Query(0, ge=0, le=MAX_EVENT_ID)) -> list[RunEvent]:
    """Status changes, stage progress, log lines and errors after event id ``after``."""
    _run(request, run_id, "read")
    return shown(request, _reg(request).runs.events(run_id, after=after))


@router.get("/runs/{run_id}/report", tags=["runs"], responses=_ERRORS)
def run_report(run_id: str, request: Request, format: Literal["json", "html", "md"] = "json") -> Any:
    """The evaluation report (kappa, F1, AUROC, confusion, calibration, baselines, speed)."""
    _run(request, run_id, "read")
    out = _reg(request).runs.report(run_id, format)
    if format == "html":
        return HTMLResponse(out)
    if format == "md":
        return PlainTextResponse(out, media_type="text/markdown")
    return out


@router.post("/runs/{run_id}/cancel", response_model=Run, tags=["runs"], responses=_ERRORS)
def cancel_run(run_id: str, request: Request) -> Run:
    _run(request, run_id, "edit")
    return shown(request, _reg(request).runs.cancel(run_id))


@router.post("/runs/{run_id}/register", response_model=Metric, status_code=201, tags=["metrics"],
             responses=_ERRORS)
def register(run_id: str, body: RegisterIn, request: Request) -> Metric:
    """Freeze a Fine-tuned run as the next immutable version ``name-vN`` of a metric."""
    _run(request, run_id, "edit")
    return shown(request, _reg(request).metrics.register(run_id, body.name, threshold=body.threshold,
                                                         operator=body.operator, description=body.description,
                                                         confirm=body.confirm))


# --- metrics ------------------------------------------------------------------------------------
class ScoreIn(BaseModel):
    rows: list[dict[str, Any] | str] = Field(description="rows with the fields the metric reads "
                                                        "(input, output, context, tools); a string is an input")


class ScoreOut(BaseModel):
    metric: str = Field(description="the version that scored (name-vN)")
    results: list[ScoreResult]
    batch: dict[str, int] = Field(description="how many requests and rows shared this evaluator call")


@router.get("/metrics", response_model=list[Metric], tags=["metrics"], responses=_ERRORS)
def list_metrics(request: Request, project: str | None = None) -> list[Metric]:
    if project is not None:
        project = _project(request, project, "read").id
    return shown(request, acc.filter_by_project(request, _reg(request).metrics.list(project), "read"))


@router.get("/metrics/{name}", response_model=Metric, tags=["metrics"], responses=_ERRORS)
def get_metric(name: str, request: Request) -> Metric:
    """A metric by name (latest version) or name-vN, with all its versions."""
    return shown(request, _metric(request, name, "read"))


@router.post("/metrics/{name}/score", response_model=ScoreOut, tags=["metrics"], responses=_ERRORS)
async def score(name: str, body: ScoreIn, request: Request) -> ScoreOut:
    """Score a batch of rows: label, score, confidence and probabilities per row.
    Concurrent requests for the same version are micro-batched into one evaluator call."""
    reg = _reg(request)
    version = await asyncio.to_thread(_metric, request, name, "score")
    rows = reg.metrics.check_score_rows(version, body.rows)
    results, batch = await request.app.state.batcher.score(version, rows)
    return ScoreOut(metric=version.full_name, results=results, batch=batch)


class GuardIn(BaseModel):
    metrics: list[str] = Field(min_length=1, max_length=20, description="registered metrics (name or name-vN)")
    input: dict[str, Any] | str | None = Field(None, description="the one row to check (a string is its input)")
    row: dict[str, Any] | str | None = Field(None, description="the same as input (send one of them)")
    policy: dict[str, Any] | None = Field(None, description="per metric (or 'default'): a list of rules "
                                                           "{label, min_confidence, action} or {rules, uncertain}")


class GuardVerdict(BaseModel):
    metric: str
    label: str
    score: float
    confidence: float
    probabilities: dict[str, float]
    uncertain: bool
    action: Literal["block", "flag", "allow"]
    rule: str = Field(description="which rule decided: rules[i], uncertain, or no rule matched")


class GuardOut(BaseModel):
    decision: Literal["block", "flag", "allow"]
    verdicts: list[GuardVerdict]
    latency_ms: float


@router.post("/guard", response_model=GuardOut, tags=["metrics"], responses=_ERRORS)
async def guard(body: GuardIn, request: Request) -> GuardOut:
    """Check one row at runtime with one or more metrics and a policy: block, flag or allow
    (the most severe across metrics), with each metric's verdict. Scored through the batcher."""
    start = time.perf_counter()
    reg = _reg(request)
    if (body.input is None) == (body.row is None):
        raise AssayError("one row as 'input' or 'row'", "both" if body.input is not None else "neither",
                         "send {\"metrics\": [...], \"input\": {\"input\": \"...\"}}", code="invalid_input")
    row = body.input if body.input is not None else body.row
    versions = []
    for name in body.metrics:
        v = await asyncio.to_thread(_metric, request, name, "score")
        if all(v.full_name != seen.full_name for _, seen in versions):
            versions.append((name, v))
    policy = dict(body.policy or {})
    known = {"default"} | {k for name, v in versions for k in (name, v.name, v.full_name)}
    stray = sorted(set(policy) - known)
    if stray:
        raise AssayError("policy keys among the requested metrics or 'default'", f"{stray}",
                         f"use one of {sorted(known)}", code="invalid_policy")
    plans = []
    for name, v in versions:
        failing = load_metric(v.spec).positive
        entry = next((policy[k] for k in (v.full_name, name, v.name, "default") if k in policy), None)
        pol = _guard.default_policy(failing) if entry is None else _guard.parse_policy(v.full_name, entry, v.labels)
        plans.append((v, pol, failing, reg.metrics.check_score_rows(v, [row])))
    # queued at once: metrics on one frozen body share its forward on the row (server/_batcher.py)
    scored = await request.app.state.batcher.score_many([(v, rows) for v, _, _, rows in plans])
    verdicts = []
    for (v, pol, positive, _), (results, _batch) in zip(plans, scored):
        res = results[0]
        ev = await asyncio.to_thread(reg.metrics.evaluator, v)
        cal = getattr(ev, "calibration", None)
        region = cal.review_region(v.threshold) if cal is not None and hasattr(cal, "review_region") else None
        uncertain = _guard.is_uncertain(res, v.labels, positive, v.threshold, region)
        action, rule = _guard.apply(pol, res.label, res.confidence, uncertain)
        verdicts.append(GuardVerdict(metric=v.full_name, label=res.label, score=res.score, confidence=res.confidence,
                                     probabilities=res.probabilities, uncertain=uncertain, action=action, rule=rule))
    return GuardOut(decision=_guard.most_severe([x.action for x in verdicts]), verdicts=verdicts,
                    latency_ms=round((time.perf_counter() - start) * 1000, 3))


class LabelIn(BaseModel):
    judge: str | dict[str, Any] = Field(description="the teacher LLM: the name of one of the server's providers "
                                                    "(GET /v1/providers), optionally with tuning fields")
    name: str | None = None


@router.post("/datasets/{dataset_id}/label", response_model=Dataset, status_code=201, tags=["datasets"],
             responses=_ERRORS)
def label_dataset(dataset_id: str, body: LabelIn, request: Request) -> Dataset:
    """Label a dataset's rows with the judge (the metric's prompt); stored as a new training set.
    The judge is one of the server's providers, by name (see /v1/providers)."""
    _dataset(request, dataset_id, "edit")
    _check_judge(request, body.judge)
    return shown(request, _reg(request).datasets.label(dataset_id, body.judge, name=body.name))


def _check_judge(request: Request, judge: Any) -> None:
    """The judge resolves to a valid provider config; if not, an error that shows the caller's own
    fields only (never the endpoint or key variable the server's provider resolved to)."""
    reg = _reg(request)
    resolved = reg.providers.resolve(judge, "judge") if reg.providers is not None else judge
    try:
        ProviderConfig.model_validate(resolved)
    except ValidationError as exc:
        raise invalid(exc, "a judge: one of the server's providers by name (GET /v1/providers), with valid tuning "
                      "fields", "fix the judge", found="{where}: {msg}", code="invalid_config", under="judge") from None


@router.get("/providers", tags=["server"], responses=_ERRORS)
def providers(request: Request) -> dict[str, Any]:
    """The provider names a run's judge/generate or a label request may use."""
    sp = _reg(request).providers
    return {"providers": [{"name": n, "model": e["model"]} for n, e in sorted(sp.providers.items())],
            "mock": sp.allow_mock}
