"""``POST /v1/metrics/{name}/tune-judge``: tune a registered metric's judge prompt in the background.

The caller names a provider (one of the server's own, see :mod:`assay.providers._server`; never a URL,
a key or a path) and a dataset of the metric's project: a test set gives its seed rows, split exactly as
the metric's run split it (its held-out rows are never read); a training set labeled by people gives all
its rows (rows a judge labeled are refused).
The run happens in a background thread (the event loop is never blocked); ``GET
/v1/judge-tunings/{id}`` reports its status and, when done, the tuned metric spec and the report.
Jobs are kept in the registry database (``reg.tunings``), written at every status and progress change:
a restart loses none; a job the restart cut off reads as failed (``interrupted``), with its progress.
Access: starting needs ``edit`` on the metric's project, reading a job ``read``; a stranger gets 404.
The page ``/metrics/{name}/tune-judge`` is the UI for the same calls.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from typing import Any, Literal

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, ConfigDict, Field

from ..errors import AssayError, invalid
from ..registry import Run
from . import _access as acc
from ._deps import _ERRORS, _dataset, _metric, _reg, shown_error

log = logging.getLogger("assay.server")
api_router = APIRouter(prefix="/v1")
ui_router = APIRouter(include_in_schema=False)
MAX_RUNNING = 2  # tuning jobs at once per server process
MAX_ROWS = 5000
MAX_JOBS_KEPT = 200
_LOCK = threading.Lock()


class TuneJudgeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    provider: str = Field(min_length=1, max_length=200,
                          description="a provider name from the server's provider settings (or mock/... if allowed)")
    dataset_id: str = Field(min_length=1, max_length=100, description="a labeled dataset of the metric's project")
    rounds: int = Field(3, ge=1, le=10)
    candidates: int = Field(2, ge=0, le=5, description="revised prompts asked of the provider per round")
    budget_usd: float | None = Field(None, ge=0, description="dollars the provider may be charged in all")
    seed: int = Field(0, ge=0, le=2**31)


class TuneJob(BaseModel):
    id: str
    project_id: str
    metric: str = Field(description="the registered metric version whose judge prompt is tuned")
    dataset_id: str
    provider: str
    rows: int = Field(description="labeled rows used (the seeds of a test set)")
    status: Literal["queued", "running", "done", "failed"] = "queued"
    created_at: float
    finished_at: float | None = None
    progress: list[str] = Field(default_factory=list)
    error: dict[str, Any] | None = None
    summary: dict[str, Any] | None = None
    metric_spec: dict[str, Any] | None = Field(None, description="the tuned metric (same name): use it in a run config")
    report: dict[str, Any] | None = None


def _jobs(app: Any) -> dict[str, TuneJob]:
    """This process's queued and running jobs (their threads' live copies; finished ones leave it)."""
    with _LOCK:
        if getattr(app.state, "judge_jobs", None) is None:
            app.state.judge_jobs = {}
        return app.state.judge_jobs


def owner_token(app: Any) -> str:
    """This server process's name for the jobs it runs; on first use, the jobs of earlier processes
    still marked queued or running are marked failed (their threads died with them)."""
    with _LOCK:
        token = getattr(app.state, "judge_owner", None)
        if token is None:
            token = app.state.judge_owner = f"api-{uuid.uuid4().hex[:12]}"
            app.state.registry.tunings.interrupt(token)
        return token


def _load(request: Request, job_id: str) -> TuneJob | None:
    live = _jobs(request.app).get(job_id)
    if live is not None:
        return live
    owner_token(request.app)  # jobs an earlier process left running read as interrupted
    raw = _reg(request).tunings.get(job_id)
    return TuneJob.model_validate(raw) if raw is not None else None


def _shown(request: Request, job: TuneJob, **update: Any) -> TuneJob:
    """The job as the caller may see it: its error without the operator's settings (a provider's
    endpoint or key variable; see ``_deps.shown_error``)."""
    if job.error:
        update["error"] = shown_error(request, job.error)["error"]
    return job.model_copy(update=update) if update else job


def _seed_rows(request: Request, version: Any, dataset: Any) -> list[dict[str, Any]]:
    from ..data import SEED_FRACTION, split_test_set
    from ..metrics import load_metric

    if dataset.project_id != version.project_id:
        raise acc.hidden("dataset", dataset.id)  # another project's dataset is not visible from here
    if dataset.kind not in ("test", "train"):
        raise AssayError("a labeled dataset (kind test or train)", f"{dataset.id} is {dataset.kind}",
                         "upload the human-labeled rows as a test set", code="invalid_input")
    rows = _reg(request).datasets.rows(dataset.id)
    judged = sum(1 for r in rows if isinstance(r.get("meta"), dict) and "judge" in r["meta"])
    if judged:  # e.g. the output of POST /v1/datasets/{id}/label: tuning a judge against itself means nothing
        raise AssayError("rows labeled by people", f"{judged} of {len(rows)} rows of {dataset.id} labeled by a judge",
                         "pick the human-labeled test set (or a training set people labeled)", code="invalid_input")
    if dataset.kind == "test":
        data = (_reg(request).runs.get(version.run_id, history=False).config or {}).get("data") or {}
        rows = split_test_set(rows, load_metric(version.spec).shape, seed_fraction=data.get("seed_fraction", SEED_FRACTION),
                              split_seed=data.get("split_seed", 0), group_by=data.get("group_by", "auto")).seeds
    if len(rows) > MAX_ROWS:
        raise AssayError(f"at most {MAX_ROWS} rows to tune on", f"{len(rows)}", "upload a smaller sample",
                         code="too_large")
    return rows


def _provider(request: Request, name: str) -> Any:
    from pydantic import ValidationError

    from ..config import ProviderConfig
    from ..providers import provider_from_config

    cfg = _reg(request).providers.resolve(name, "provider")
    try:
        return provider_from_config(ProviderConfig.model_validate(cfg))
    except ValidationError as exc:
        raise invalid(exc, "one of the server's providers", "pick a provider by name",
                      found=f"'{name}' ({{msg}})", code="provider_not_allowed") from None


def _run(job: TuneJob, spec: Any, rows: list[dict[str, Any]], provider: Any, body: TuneJudgeIn, reg: Any,
         owner: str, jobs: dict[str, TuneJob]) -> None:
    from ..judge import tune_judge

    def save() -> None:
        try:
            reg.tunings.save(job.model_dump(mode="json"), owner)
        except Exception:  # noqa: BLE001 - the database is away for a moment: the next change writes it all
            log.exception("saving judge tuning %s", job.id)

    def progress(line: str) -> None:
        job.progress.append(line)
        save()

    job.status = "running"
    save()
    try:
        result = tune_judge(spec, rows, provider, rounds=body.rounds, candidates=body.candidates,
                            budget_usd=body.budget_usd, seed=body.seed, progress=progress)
        job.summary, job.report, job.metric_spec = result.summary(), result.report, result.metric.to_dict()
        job.status = "done"
    except AssayError as exc:
        job.error, job.status = exc.to_dict(), "failed"
    except Exception as exc:  # noqa: BLE001 - reported on the job, logged with its traceback
        log.exception("judge tuning %s failed", job.id)
        job.error = AssayError("the tuning to finish", f"an internal error ({type(exc).__name__})",
                               "retry; if it persists, report it with the server log", code="internal_error").to_dict()
        job.status = "failed"
    finally:
        job.finished_at = time.time()
        provider.close()
        save()
        with _LOCK:
            jobs.pop(job.id, None)


def start_tuning(request: Request, name: str, body: TuneJudgeIn) -> TuneJob:
    from ..metrics import load_metric

    version = _metric(request, name, "edit")
    dataset = _dataset(request, body.dataset_id, "read")
    rows = _seed_rows(request, version, dataset)
    provider = _provider(request, body.provider)
    jobs, owner, reg = _jobs(request.app), owner_token(request.app), _reg(request)
    with _LOCK:
        if len(jobs) >= MAX_RUNNING:
            provider.close()
            raise AssayError(f"at most {MAX_RUNNING} judge tunings running at once", "that many running",
                             "wait for one to finish (GET /v1/judge-tunings/{id})", code="conflict")
        job = TuneJob(id=f"tune-{uuid.uuid4().hex[:12]}", project_id=version.project_id, metric=version.full_name,
                      dataset_id=dataset.id, provider=body.provider, rows=len(rows), created_at=time.time())
        jobs[job.id] = job
    try:
        reg.tunings.save(job.model_dump(mode="json"), owner)
        reg.tunings.prune(MAX_JOBS_KEPT)
    except BaseException:
        with _LOCK:
            jobs.pop(job.id, None)
        provider.close()
        raise
    snapshot = job.model_copy(deep=True)  # the answer: the thread changes ``job`` from here on
    threading.Thread(target=_run, args=(job, load_metric(version.spec), rows, provider, body, reg, owner, jobs),
                     daemon=True, name=f"assay-{job.id}").start()
    return snapshot


@api_router.post("/metrics/{name}/tune-judge", response_model=TuneJob, status_code=202, tags=["metrics"],
             responses=_ERRORS)
def tune_judge_endpoint(name: str, body: TuneJudgeIn, request: Request) -> TuneJob:
    """Start tuning the metric's judge prompt (its latest version, or name-vN) on a labeled dataset of its
    project with one of the server's providers; answers at once (202) with the job to poll."""
    return start_tuning(request, name, body)


@api_router.get("/judge-tunings/{job_id}", response_model=TuneJob, tags=["metrics"], responses=_ERRORS)
def get_tuning(job_id: str, request: Request) -> TuneJob:
    """A tuning job: status, progress lines, and when done the tuned metric spec and the full report."""
    job = _load(request, job_id)
    if job is None:
        raise acc.hidden("judge tuning", job_id)
    acc.check(request, job.project_id, "read", "judge tuning", job_id)
    return _shown(request, job)


@api_router.get("/metrics/{name}/tune-judge", response_model=list[TuneJob], tags=["metrics"], responses=_ERRORS)
def list_tunings(name: str, request: Request) -> list[TuneJob]:
    """The metric's tuning jobs (the newest 100, newest first; without their full reports)."""
    version = _metric(request, name, "read")
    owner_token(request.app)
    live = {j.id: j for j in list(_jobs(request.app).values()) if j.metric.rsplit("-v", 1)[0] == version.name}
    stored = [TuneJob.model_validate(raw) for raw in _reg(request).tunings.list(version.name)]
    jobs = [live.pop(j.id, j) for j in stored] + list(live.values())
    return [_shown(request, j, report=None) for j in sorted(jobs, key=lambda j: -j.created_at)]


class TunedRunIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(None, max_length=200, description="the run's name")


@api_router.post("/judge-tunings/{job_id}/run", response_model=Run, status_code=201, tags=["metrics"],
                 responses=_ERRORS)
def run_tuned(job_id: str, request: Request, body: TunedRunIn | None = None) -> Run:
    """Queue a training run with a finished tuning's judge prompt: the config of the run behind the tuned
    metric version, with the tuned metric (its judge prompt) and, as its judge, the provider the prompt was
    tuned with; the judge labels generated rows with the prompt and is measured on the held-out rows.
    Needs ``edit`` on the project; a tuning not done yet: 409 ``invalid_status``."""
    job = _load(request, job_id)
    if job is None:
        raise acc.hidden("judge tuning", job_id)
    acc.check(request, job.project_id, "edit", "judge tuning", job_id)
    if job.status != "done" or not job.metric_spec:
        raise AssayError("a finished tuning with a tuned prompt (status done)", f"status {job.status}",
                         "wait until it is done (GET /v1/judge-tunings/{id})", code="invalid_status")
    reg = _reg(request)
    version = reg.metrics.get(job.metric)
    config = reg.runs.config_for_rerun(version.run_id)
    config.update(metric=job.metric_spec, judge=job.provider)
    name = (body.name if body is not None else None) or f"{version.name} with the judge prompt of {job.id}"
    return reg.runs.create(job.project_id, config, name=name)


@ui_router.get("/metrics/{name}/tune-judge", response_class=HTMLResponse)
def tune_page(request: Request, name: str) -> HTMLResponse:
    """The UI: pick a provider and a dataset, start, and watch the job."""
    try:
        from ._ui import _error_page, _page
    except ModuleNotFoundError:  # the UI is optional
        raise acc.hidden("page", request.url.path) from None
    try:
        m = _reg(request).metrics.get(name)
        acc.check(request, m.project_id, "read", "metric", name)
        datasets = [d for d in _reg(request).datasets.list(m.project_id) if d.kind in ("test", "train")]
        tunings = list_tunings(name, request)[:20]
    except AssayError as exc:
        return _error_page(request, exc, 403 if exc.code == "forbidden" else 404)
    providers = [n for n in _reg(request).providers.names() if n != "mock/<name>"]
    if _reg(request).providers.allow_mock:
        providers.append("mock/judge")
    return _page(request, "judge_tune.html", metric=m, datasets=datasets, providers=providers, tunings=tunings)


# One router for the app to include: the API under /v1 and the page.
router = APIRouter()
router.include_router(api_router)
router.include_router(ui_router)
