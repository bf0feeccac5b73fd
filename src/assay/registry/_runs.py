"""Runs (``reg.runs``): created from the same config the CLI uses, queued, claimed by a worker,
moved through their statuses (only along allowed transitions), cancelled, recovered after a
crash. The worker's verbs and the queue are in ``_queue.py``."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Mapping

import yaml
from sqlalchemy import BigInteger, func, insert, literal, select, update

from ..config import Config, config_from_dict
from ..data import validate_rows, write_rows
from ..errors import AssayError
from ..metrics import list_presets
from . import _db as t
from ._base import Core, InvalidRows, dumps, loads, new_id, not_found
from ._datasets import DATASET_REF, Datasets
from ._models import Run, RunEvent, Status, check_transition, to_time
from ._projects import Projects
from ._queue import RunLost, RunQueue

__all__ = ["HIDDEN_PROVIDER_FIELDS", "RETRAIN_OF", "SERVER_NAMES", "RunLost", "Runs"]

# In a stored run config: {"judge": "<server provider name>", ...} for providers the server resolved.
# The worker runs the resolved settings; every reader of the run sees the name (see _public_config).
SERVER_NAMES = "server_providers"
# Provider fields a run's reader never sees: where requests go, which key they carry.
HIDDEN_PROVIDER_FIELDS = ("base_url", "api_key_env", "api_key")
# In a stored run config: what a retrain from reviews started from (the metric version, its run, the dataset
# of reviewed verdicts); readers see it as ``Run.retrain_of`` (see assay.registry._retrain).
RETRAIN_OF = "retrain_of"


class Runs(RunQueue):
    """``create``, ``get``, ``list``, ``events``, ``report``, ``cancel`` and ``resolve_config``;
    the worker's verbs (``claim``, ``heartbeat``, ``report_stage``, ``log``, ``finish``, ``fail``,
    ``recover_stale``, ``worker_seen``, ``worker_gone``, ``workers_status``, ``queue_depth``,
    ``queue_position``) come from :class:`RunQueue`."""

    def __init__(self, core: Core, projects: Projects, datasets: Datasets):
        self.core = core
        self.projects = projects
        self.datasets = datasets

    # --- creating ---------------------------------------------------------------------------
    def create(self, project: str, config: Mapping[str, Any] | str, *, name: str | None = None,
               retrain_of: Mapping[str, Any] | None = None) -> Run:
        """Queue a run. ``config`` is the run YAML (text or mapping); its data files are
        datasets of this project, written ``dataset:<id>``. ``retrain_of``: what a retrain from
        reviews started from (:func:`assay.registry.queue_retrain` sets it)."""
        proj = self.projects.get(project)
        data = self._config_mapping(config)
        data.pop("output", None)  # the registry decides where artifacts go
        data.pop(RETRAIN_OF, None)
        names = self._server_side_config(data) if self.core.providers is not None else {}
        refs = self._check_data_refs(proj.id, data.get("data"))
        metric = data.get("metric")
        if isinstance(metric, str) and metric not in list_presets() and not self.core.local_paths:
            raise AssayError("a preset name or an inline metric spec in the run config", f"metric: '{metric}'",
                             "inline the metric (its YAML keys) under metric:, or use a preset", code="invalid_config")
        cfg = config_from_dict(data, source="the run config")
        spec = cfg.metric_spec()
        for key, ds_id in refs.items():  # the stored rows must suit this run's metric
            rows = self.datasets.rows(ds_id)
            v = validate_rows(rows, spec, source=f"dataset {ds_id}")
            if not v.ok:
                raise InvalidRows(f"dataset {ds_id} ({key}) for metric '{spec.name}'", v.errors, len(rows))
        stored = cfg.to_dict()
        if names:
            stored[SERVER_NAMES] = names
        if retrain_of:
            stored[RETRAIN_OF] = dict(retrain_of)
        rid = new_id("run")
        now = self.core.now()
        with self.core.tx() as conn:
            n = conn.execute(select(func.count()).select_from(t.runs).where(t.runs.c.project_id == proj.id)).scalar()
            conn.execute(insert(t.runs).values(
                id=rid, project_id=proj.id, name=name or f"{spec.name} #{n + 1}", metric_name=spec.name,
                config=dumps(stored), status=Status.queued.value, stage=None, progress=0.0, message="queued",
                cancel_requested=0, created_at=now, updated_at=now))
            self._event(conn, rid, "status", status=Status.queued, message="queued")
        return self.get(rid)

    def _server_side_config(self, data: dict[str, Any]) -> dict[str, str]:
        """A config from an API/UI caller: providers by the operator's names, no server paths.
        Returns {"judge"/"generate": server provider name} for the ones resolved by name."""
        names = {}
        for key in ("judge", "generate"):
            value = data.get(key)
            if value is not None:
                data[key] = self.core.providers.resolve(value, key, generate=key == "generate")
                name = value if isinstance(value, str) else value.get("model") if isinstance(value, Mapping) else None
                if isinstance(name, str) and name in self.core.providers.providers:
                    names[key] = name
        model = data.get("model")
        base = model.get("base") if isinstance(model, Mapping) else None
        if isinstance(base, str) and (base.startswith(("/", ".", "~", "file:")) or ".." in base
                                      or "\\" in base or Path(base).expanduser().exists()):
            raise AssayError("model.base as a built-in name (minilm, smollm2) or a model id",
                             f"a server path '{base}'", "drop model.base, or ask the operator for the model",
                             code="provider_not_allowed")
        return names

    @staticmethod
    def _config_mapping(config: Mapping[str, Any] | str) -> dict[str, Any]:
        if isinstance(config, str):
            try:
                config = yaml.safe_load(config)
            except yaml.YAMLError as exc:
                raise AssayError("a run config in YAML or JSON", f"a YAML error: {str(exc).splitlines()[0]}",
                                 "fix the config text", code="invalid_config") from None
        if not isinstance(config, Mapping):
            raise AssayError("a run config mapping with metric and data", f"a {type(config).__name__}",
                             "send {\"metric\": ..., \"data\": {\"test_set\": \"dataset:<id>\"}}",
                             code="invalid_config")
        return copy.deepcopy(dict(config))

    def _check_data_refs(self, project_id: str, data: Any) -> dict[str, str]:
        refs: dict[str, str] = {}
        if not isinstance(data, Mapping):
            return refs
        extras = data.get("extra_train_sets")
        pairs = [(key, data.get(key)) for key in ("test_set", "train_set")]
        pairs += [(f"extra_train_sets[{i}]", ref) for i, ref in enumerate(extras if isinstance(extras, list) else [])]
        for key, ref in pairs:
            if ref is None:
                continue
            if isinstance(ref, str) and ref.startswith(DATASET_REF):
                ds = self.datasets.get(ref[len(DATASET_REF):])
                if ds.project_id != project_id:
                    raise AssayError(f"a dataset of this project for data.{key}", f"{ds.id} of another project",
                                     "upload the file to this project", code="invalid_config")
                if ds.kind == "unlabeled":
                    raise AssayError(f"a labeled dataset for data.{key}", f"{ds.id} is unlabeled",
                                     "upload labeled rows (kind test or train)", code="invalid_config")
                refs[key] = ds.id
            elif not (self.core.local_paths and Path(str(ref)).is_absolute() and Path(str(ref)).exists()):
                raise AssayError(f"data.{key} as 'dataset:<id>' (an uploaded dataset)", f"'{ref}'",
                                 "upload the file with POST /v1/projects/{project}/datasets (the SDK and "
                                 "`assay runs create` do it for you)", code="invalid_config")
        if refs and (data.get("columns") or data.get("label_map")):
            raise AssayError("no columns/label_map for uploaded datasets (they apply at upload)",
                             "data.columns or data.label_map in the run config",
                             "pass columns and label_map when uploading the dataset, and drop them here",
                             code="invalid_config")
        return refs

    # --- reading ----------------------------------------------------------------------------
    def get(self, run_id: str, *, history: bool = True) -> Run:
        with self.core.tx() as conn:
            row = conn.execute(select(t.runs).where(t.runs.c.id == run_id)).mappings().first()
            if row is None:
                raise not_found("run", run_id, "list runs with GET /v1/runs")
            reg = conn.execute(select(t.metrics.c.full_name).where(t.metrics.c.run_id == run_id)).scalar()
            events = None
            if history:
                events = conn.execute(select(t.run_events).where(t.run_events.c.run_id == run_id,
                                                                 t.run_events.c.kind == "status")
                                      .order_by(t.run_events.c.id)).mappings().all()
        return self._run(row, events, reg)

    def list(self, project: str | None = None, status: str | None = None, limit: int = 200) -> list[Run]:
        q = select(t.runs).order_by(t.runs.c.created_at.desc()).limit(limit)
        if project:
            q = q.where(t.runs.c.project_id == self.projects.get(project).id)
        if status:
            q = q.where(t.runs.c.status == Status(status).value)
        with self.core.tx() as conn:
            rows = conn.execute(q).mappings().all()
            regs = dict(conn.execute(select(t.metrics.c.run_id, t.metrics.c.full_name)).all())
        return [self._run(r, None, regs.get(r["id"])) for r in rows]

    def events(self, run_id: str, after: int = 0, limit: int = 1000) -> list[RunEvent]:
        """The run's log: status changes, stage progress, log lines and errors, oldest first."""
        self.get(run_id, history=False)
        with self.core.tx() as conn:
            after_p = literal(max(0, min(int(after), 2**63 - 1)), BigInteger)  # a 64-bit bind, even on PostgreSQL
            rows = conn.execute(select(t.run_events).where(t.run_events.c.run_id == run_id, t.run_events.c.id > after_p)
                                .order_by(t.run_events.c.id).limit(limit)).mappings().all()
        return [self._event_model(r) for r in rows]

    def report(self, run_id: str, fmt: str = "json") -> Any:
        """The run's evaluation report: a dict (json) or the text of report.html / report.md."""
        run = self.get(run_id, history=False)
        if fmt not in ("json", "html", "md"):
            raise AssayError("a report format json, html or md", f"'{fmt}'", "use ?format=html", code="invalid_input")
        url = f"{run.artifact_location}/report.{fmt}" if run.artifact_location else None
        if not url or not self.core.storage.exists(url):
            raise AssayError("a finished run's report", f"no report.{fmt} for run {run_id} ({run.status_title})",
                             "wait until the run is Fine-tuned", code="not_found")
        text = self.core.storage.read_bytes(url).decode("utf-8")
        return loads(text) if fmt == "json" else text

    @staticmethod
    def _event_model(r: Mapping[str, Any]) -> RunEvent:
        return RunEvent(id=r["id"], at=to_time(r["at"]), kind=r["kind"], status=r["status"], stage=r["stage"],
                        fraction=r["fraction"], message=r["message"])

    def _run(self, row: Mapping[str, Any], events: Any, registered: str | None) -> Run:
        st = Status(row["status"])
        config = loads(row["config"], {})
        origin = config.get(RETRAIN_OF)
        return Run(
            id=row["id"], project_id=row["project_id"], name=row["name"], metric_name=row["metric_name"], status=st,
            status_title=st.title, stage=row["stage"], progress=row["progress"], message=row["message"],
            failure_reason=row["failure_reason"], metrics_summary=loads(row["metrics_summary"]),
            artifact_location=row["artifact_location"], cancel_requested=bool(row["cancel_requested"]),
            worker_id=row["worker_id"], heartbeat_at=to_time(row["heartbeat_at"]),
            config=self._public_config(config),
            created_at=to_time(row["created_at"]), started_at=to_time(row["started_at"]),
            finished_at=to_time(row["finished_at"]), updated_at=to_time(row["updated_at"]),
            history=[self._event_model(e) for e in events] if events is not None else None, registered_as=registered,
            retrain_of=origin)

    @staticmethod
    def _public_config(config: dict[str, Any]) -> dict[str, Any]:
        """A stored run config as its readers see it: a provider the server resolved by name shows
        that name only (not the operator's options), and no provider shows an endpoint, key variable
        or cache path."""
        names = config.pop(SERVER_NAMES, None) or {}
        config.pop(RETRAIN_OF, None)  # shown as Run.retrain_of
        for key in ("judge", "generate"):
            p = config.get(key)
            if isinstance(p, dict):
                p = {k: v for k, v in p.items() if k not in HIDDEN_PROVIDER_FIELDS}
                if not isinstance(p.get("cache", True), bool):
                    del p["cache"]  # a path on the machine that ran it
                if isinstance(names.get(key), str):
                    p["model"] = names[key]
                    p.pop("options", None)
                config[key] = p
        return config

    def _stored_config(self, run_id: str) -> dict[str, Any]:
        """The run config as stored: what the worker runs (providers resolved, see SERVER_NAMES)."""
        with self.core.tx() as conn:
            raw = conn.execute(select(t.runs.c.config).where(t.runs.c.id == run_id)).scalar()
        if raw is None:
            raise not_found("run", run_id, "list runs with GET /v1/runs")
        data = loads(raw, {})
        data.pop(SERVER_NAMES, None)
        data.pop(RETRAIN_OF, None)
        return data

    def config_for_rerun(self, run_id: str) -> dict[str, Any]:
        """A run's config to queue again (a retrain): the stored settings; behind a server, providers it
        resolved by name go back to that name, so the operator's current settings apply again."""
        with self.core.tx() as conn:
            raw = conn.execute(select(t.runs.c.config).where(t.runs.c.id == run_id)).scalar()
        if raw is None:
            raise not_found("run", run_id, "list runs with GET /v1/runs")
        data = loads(raw, {})
        names = data.pop(SERVER_NAMES, None) or {}
        data.pop(RETRAIN_OF, None)
        data.pop("output", None)
        if self.core.providers is not None:
            data.update({k: v for k, v in names.items() if isinstance(v, str)})
        return data

    def cancel(self, run_id: str) -> Run:
        """Cancel a queued run at once; ask the worker to stop a running one."""
        with self.core.tx() as conn:
            row = self._locked(conn, run_id)
            st = Status(row["status"])
            if st == Status.cancelled:
                pass
            elif st == Status.queued and row["worker_id"] is None:
                self._set_status(conn, row, Status.cancelled, "cancelled before it started", cancel_requested=1)
            elif st.active:
                conn.execute(update(t.runs).where(t.runs.c.id == run_id).values(cancel_requested=1,
                                                                                updated_at=self.core.now()))
                self._event(conn, run_id, "log", message="cancel requested; the worker stops at its next step")
            else:
                check_transition(st, Status.cancelled, run_id)
        return self.get(run_id)

    # --- execution helpers ------------------------------------------------------------------
    def resolve_config(self, run: Run, workdir: Path, output_dir: Path) -> Config:
        """The run's config with ``dataset:`` references written out as local files (review
        decisions applied) and the output folder set: the stored settings, not the public view
        of ``run.config`` (a provider the server resolved by name carries its endpoint and key)."""
        data = self._stored_config(run.id)
        d = data.get("data") or {}
        for key in ("test_set", "train_set"):
            ref = d.get(key)
            if isinstance(ref, str) and ref.startswith(DATASET_REF):
                rows = self.datasets.rows(ref[len(DATASET_REF):], apply_review=key == "train_set")
                d[key] = str(write_rows(rows, workdir / "inputs" / f"{key}.jsonl"))
        extras = d.get("extra_train_sets") or []
        for i, ref in enumerate(extras):
            if isinstance(ref, str) and ref.startswith(DATASET_REF):
                rows = self.datasets.rows(ref[len(DATASET_REF):])
                extras[i] = str(write_rows(rows, workdir / "inputs" / f"extra_train_set_{i}.jsonl"))
        data["output"] = str(output_dir)
        return config_from_dict(data, source=f"run {run.id}")
