"""The YAML for ``assay eval`` and ``assay monitor``; relative paths are relative to the file.

    name: nightly
    dataset: traces.jsonl            # assay eval (or --data)
    evaluators:
      - artifact: runs/pii
        gates: [{type: pii, decides: true}]
      - gate: {type: length, field: output, max_chars: 4000, severity: high}
    suites:                          # several checks -> one verdict per trace (see assay.monitor._suites)
      - {name: safe, checks: [pii, "gate:length"], min_passed: 2}
    route: {margin: 0.2, audit_rate: 0.05, seed: 0}   # or band: [0.3, 0.7], a fixed band
    batch_size: 32
    parallel: 2
    smoke: 50
    db: monitor.db
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..errors import AssayError
from ._route import RouteConfig


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
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err.get("loc", ())) or "config"
        msg = err.get("msg", "invalid value").removeprefix("Value error, ")
        if err.get("type") == "extra_forbidden":
            msg = f"an unknown key '{where}'"
        raise AssayError(f"a valid '{where}' in {path.name}", msg, f"correct '{where}'", code="invalid_config") from None
    base = path.parent.resolve()

    def rel(p: str | None) -> str | None:
        if p is None:
            return None
        q = Path(p).expanduser()
        return str(q if q.is_absolute() else base / q)

    cfg.dataset = rel(cfg.dataset)
    cfg.db = rel(cfg.db)
    for e in cfg.evaluators:
        if isinstance(e, dict) and isinstance(e.get("artifact"), str):
            e["artifact"] = rel(e["artifact"])
    return cfg
