"""The YAML for ``assay eval`` and ``assay monitor``; relative paths are relative to the file.

    name: nightly
    dataset: traces.jsonl            # assay eval (or --data)
    evaluators:
      - artifact: runs/pii           # a folder, or a registered metric name (toxicity, toxicity-v2)
        gates: [{type: pii, decides: true}]
      - gate: {type: length, field: output, max_chars: 4000, severity: high}
    suites:                          # several checks -> one verdict per trace (see assay.monitor._suites)
      - {name: safe, checks: [pii, "gate:length"], min_passed: 2}
    route: {margin: 0.2, audit_rate: 0.05, seed: 0}   # or band: [0.3, 0.7], a fixed band
    batch_size: 32
    parallel: 2
    smoke: 50
    db: monitor.db                   # or postgresql://user@host/db (several workers, see docs/monitoring.md)
    queue: false                     # assay monitor: true enqueues traces for `assay monitor worker`s
    export:                          # assay monitor: each verdict back out as an OTLP span (assay[otel])
      otlp: {endpoint: http://127.0.0.1:4318, headers: {}, timeout: 5}
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ..errors import AssayError, invalid
from ._route import RouteConfig


class OtlpExportConfig(BaseModel):
    """Where verdicts go as spans (``assay.monitor._otlp_export``): an OTLP/HTTP endpoint, protobuf."""

    model_config = ConfigDict(extra="forbid")

    endpoint: str  # a base URL (http://collector:4318; /v1/traces is appended) or the full traces URL
    headers: dict[str, str] = Field(default_factory=dict)
    timeout: float = Field(5.0, gt=0, le=120)  # seconds per export, retries included
    service_name: str = "assay-monitor"
    max_queue: int = Field(2048, ge=1)  # spans waiting to go; beyond it they are dropped and counted
    compression: bool = True  # gzip

    @field_validator("endpoint")
    @classmethod
    def _http_url(cls, v: str) -> str:
        if not v.startswith(("http://", "https://")):
            raise ValueError("an http:// or https:// URL such as http://127.0.0.1:4318")
        return v


class ExportConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    otlp: OtlpExportConfig | None = None

    def otlp_with(self, endpoint: str | None) -> OtlpExportConfig | None:
        """The OTLP export settings, ``endpoint`` (``--otlp-endpoint``) replacing the config's; None: off."""
        if not endpoint:
            return self.otlp
        try:
            return OtlpExportConfig(**{**(self.otlp.model_dump() if self.otlp else {}), "endpoint": endpoint})
        except ValidationError as exc:
            raise invalid(exc, "a valid --otlp-endpoint", "pass a URL like http://127.0.0.1:4318",
                          code="invalid_input", top="otlp") from None


class RunConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = None
    dataset: str | None = None
    evaluators: list[dict[str, Any]] = Field(default_factory=list)
    suites: list[dict[str, Any]] = Field(default_factory=list)  # checks combined per trace (monitor/_suites.py)
    route: RouteConfig = Field(default_factory=RouteConfig)
    batch_size: int = Field(32, ge=1)
    parallel: int = Field(1, ge=1)
    smoke: int | None = Field(None, ge=1)
    seed: int = 0
    db: str | None = None
    settle: float = Field(2.0, ge=0)
    export: ExportConfig = Field(default_factory=ExportConfig)  # verdicts out (assay monitor)
    queue: bool = False  # assay monitor: enqueue traces for workers instead of scoring them


def load_run_config(path: str | Path) -> RunConfig:
    path = Path(path)
    if not path.exists():
        raise AssayError("an eval/monitor YAML file", f"no file at {path}", "check the path", code="not_found")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise AssayError("valid YAML", f"a YAML error: {str(exc).splitlines()[0]}", f"fix {path.name}",
                         code="invalid_config") from None
    if not isinstance(data, dict):
        raise AssayError("a YAML mapping with evaluators", f"a {type(data).__name__}", "see assay.monitor._config",
                         code="invalid_config")
    try:
        cfg = RunConfig(**data)
    except ValidationError as exc:
        raise invalid(exc, f"a valid '{{where}}' in {path.name}", "correct '{where}'", code="invalid_config",
                      top="config") from None
    base = path.parent.resolve()

    def rel(p: str | None) -> str | None:
        if p is None or "://" in p:  # a database URL stays as written
            return p
        q = Path(p).expanduser()
        return str(q if q.is_absolute() else base / q)

    cfg.dataset = rel(cfg.dataset)
    cfg.db = rel(cfg.db)
    for e in cfg.evaluators:
        if isinstance(e, dict) and isinstance(e.get("artifact"), str):
            e["artifact"] = _artifact_ref(e["artifact"], base)
    return cfg


def _artifact_ref(ref: str, base: Path) -> str:
    """An ``artifact:`` entry: a folder relative to the file, or a registered metric name (``toxicity``,
    ``toxicity-v2``: a bare word with no such folder beside the file) kept as written for
    ``monitor._checks.resolve_artifact``, as ``--metric NAME`` is."""
    q = Path(ref).expanduser()
    if q.is_absolute():
        return str(q)
    if "/" not in ref and "\\" not in ref and not (base / q).exists():
        return ref
    return str(base / q)
