"""Records the registry returns (pydantic: the API publishes them in its OpenAPI schema),
and the run lifecycle with its allowed transitions."""

from __future__ import annotations

from datetime import datetime, timezone
from enum import Enum
from typing import Any

from pydantic import BaseModel, Field

from ..errors import AssayError
from ..evaluator._contract import Score


class Status(str, Enum):
    """A run's lifecycle: Queued → Generating data → Data ready → Training → Fine-tuned →
    Registered, or Failed / Cancelled. Generation is skipped when the training set is given."""

    queued = "queued"
    generating_data = "generating_data"
    data_ready = "data_ready"
    training = "training"
    fine_tuned = "fine_tuned"
    registered = "registered"
    failed = "failed"
    cancelled = "cancelled"

    @property
    def title(self) -> str:
        return _TITLES[self]

    @property
    def active(self) -> bool:
        """A worker may be working on it."""
        return self in ACTIVE

    @property
    def final(self) -> bool:
        return not TRANSITIONS[self]


_TITLES = {
    Status.queued: "Queued", Status.generating_data: "Generating data", Status.data_ready: "Data ready",
    Status.training: "Training", Status.fine_tuned: "Fine-tuned", Status.registered: "Registered",
    Status.failed: "Failed", Status.cancelled: "Cancelled",
}

_STOP = {Status.failed, Status.cancelled}
TRANSITIONS: dict[Status, set[Status]] = {
    Status.queued: {Status.generating_data, Status.data_ready} | _STOP,
    Status.generating_data: {Status.data_ready} | _STOP,
    Status.data_ready: {Status.training} | _STOP,
    Status.training: {Status.fine_tuned} | _STOP,
    Status.fine_tuned: {Status.registered},
    Status.registered: set(),
    Status.failed: set(),
    Status.cancelled: set(),
}
ACTIVE = {Status.queued, Status.generating_data, Status.data_ready, Status.training}
# The order runs move through; the worker walks it to reach a later stage's status.
CHAIN = [Status.queued, Status.generating_data, Status.data_ready, Status.training, Status.fine_tuned]


def check_transition(current: Status, new: Status, run_id: str = "") -> None:
    """Raise an AssayError (code ``invalid_status``) unless ``current -> new`` is allowed."""
    if new not in TRANSITIONS[current]:
        allowed = ", ".join(s.title for s in sorted(TRANSITIONS[current], key=list(Status).index)) or "none"
        raise AssayError(f"a run status change allowed from {current.title} (to: {allowed})",
                         f"{current.title} -> {new.title}" + (f" for run {run_id}" if run_id else ""),
                         "check the run's status first; start a new run to retry a failed one",
                         code="invalid_status")


def to_time(ts: float | None) -> datetime | None:
    return datetime.fromtimestamp(ts, tz=timezone.utc) if ts is not None else None


class Project(BaseModel):
    id: str
    name: str
    description: str = ""
    created_at: datetime
    runs: int | None = None
    datasets: int | None = None


class RowError(BaseModel):
    row: int = Field(description="0-based position in the uploaded file (-1: the whole file)")
    id: str
    field: str
    problem: str


class Dataset(BaseModel):
    id: str
    project_id: str
    name: str
    kind: str = Field(description="test (labeled, split into seeds/eval), train (labeled), or unlabeled")
    format: str
    filename: str
    content_hash: str = Field(description="order-independent hash of the rows' content and labels")
    file_sha256: str
    size_bytes: int
    rows: int
    dropped_duplicates: int = 0
    label_counts: dict[str, int] = Field(default_factory=dict)
    warnings: list[str] = Field(default_factory=list)
    metric: dict[str, Any] | None = Field(None, description="the metric spec the rows were validated against")
    columns: dict[str, str] = Field(default_factory=dict)
    label_map: dict[str, str] = Field(default_factory=dict)
    location: str
    original_location: str
    created_at: datetime
    split: dict[str, int | str | None] | None = Field(
        None, description="seed / held-out row counts (test sets) and the column or field rows are grouped by")


class Validated(BaseModel):
    """A dry run of an upload: what would be stored."""

    ok: bool
    rows: int
    dropped_duplicates: int
    label_counts: dict[str, int]
    warnings: list[str]
    errors: list[RowError]
    split: dict[str, int | str | None] | None = None
    content_hash: str | None = None


class RunEvent(BaseModel):
    id: int
    at: datetime
    kind: str = Field(description="status | stage | log | error")
    status: str | None = None
    stage: str | None = None
    fraction: float | None = None
    message: str = ""


class Run(BaseModel):
    id: str
    project_id: str
    name: str
    metric_name: str
    status: Status
    status_title: str
    stage: str | None = None
    progress: float = 0.0
    message: str = ""
    failure_reason: str | None = None
    metrics_summary: dict[str, Any] | None = None
    artifact_location: str | None = None
    cancel_requested: bool = False
    worker_id: str | None = None
    heartbeat_at: datetime | None = None
    config: dict[str, Any]
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    updated_at: datetime
    history: list[RunEvent] | None = Field(None, description="status changes, oldest first")
    registered_as: str | None = None
    retrain_of: dict[str, Any] | None = Field(
        None, description="a retrain from reviews: the metric version it started from (name, version, run_id) "
                          "and the dataset of reviewed verdicts added to its training rows")


class MetricVersion(BaseModel):
    id: str
    name: str
    version: int
    full_name: str = Field(description="name-vN: the immutable version")
    project_id: str
    run_id: str
    description: str = ""
    spec: dict[str, Any]
    labels: list[str]
    threshold: float | None = None
    operator: str = ">="
    artifact_location: str
    artifact_sha256: str
    summary: dict[str, Any] | None = None
    immutable: bool = True
    created_at: datetime


class Metric(MetricVersion):
    """A registered metric: its latest version's fields plus every version."""

    versions: list[MetricVersion] = Field(default_factory=list)


# The API's score record is the evaluator's one Score (assay.evaluator): label, score, confidence,
# probabilities, tokens, truncated. The old name stays for the registry's and the server's imports.
ScoreResult = Score


class ApiKey(BaseModel):
    id: str
    name: str
    prefix: str
    created_at: datetime
    last_used_at: datetime | None = None
    revoked_at: datetime | None = None
    global_role: str | None = Field(None, description="'admin': an operator key that reaches every project")
    projects: dict[str, str] = Field(default_factory=dict, description="project id -> role")
    key: str | None = Field(None, description="the secret, shown once at creation")


class ReviewItem(BaseModel):
    id: str
    dataset_id: str
    position: int
    row: dict[str, Any]
    proposed_label: str | None = None
    decision: str | None = None
    label: str | None = None
    reviewer: str | None = None
    note: str | None = None
