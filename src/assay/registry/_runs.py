"""Runs: created from the same config the CLI uses, queued, claimed by a worker, moved
through their statuses (only along allowed transitions), cancelled, recovered after a crash."""

from __future__ import annotations

import copy
import os
import socket
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Mapping

import yaml
from sqlalchemy import BigInteger, func, insert, literal, select, update

from ..config import Config, config_from_dict
from ..data import validate_rows, write_rows
from ..errors import AssayError
from ..metrics import list_presets
from . import _db as t
from ._base import InvalidRows, dumps, loads, new_id, not_found
from ._datasets import DATASET_REF, DatasetsMixin
from ._models import CHAIN, Run, RunEvent, Status, check_transition, to_time

# Overall progress at the start of each training stage (the stage's own fraction fills the gap).
STAGE_SPAN = {"preparing": (0.0, 0.05), "generating": (0.05, 0.35), "training": (0.35, 0.85),
              "evaluating": (0.85, 0.95), "saving": (0.95, 1.0)}
# The run status each stage of assay.train.train implies.
STAGE_STATUS = {"preparing": None, "generating": Status.generating_data, "training": Status.training,
                "evaluating": Status.training, "saving": Status.training}
# In a stored run config: {"judge": "<server provider name>", ...} for providers the server resolved.
# The worker runs the resolved settings; every reader of the run sees the name (see _public_config).
SERVER_NAMES = "server_providers"
# Provider fields a run's reader never sees: where requests go, which key they carry.
HIDDEN_PROVIDER_FIELDS = ("base_url", "api_key_env", "api_key")


class RunLost(Exception):
    """The run is no longer this worker's (recovered as failed, or cancelled and finished)."""


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie (killed, not yet reaped) counts as dead
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def _iso(ts: float | None) -> str:
    return datetime.fromtimestamp(ts or 0, tz=timezone.utc).isoformat(timespec="seconds")


class RunsMixin(DatasetsMixin):
    # --- creating ---------------------------------------------------------------------------
    def create_run(self, project: str, config: Mapping[str, Any] | str, *, name: str | None = None) -> Run:
        """Queue a run. ``config`` is the run YAML (text or mapping); its data files are
        datasets of this project, written ``dataset:<id>``."""
        proj = self.get_project(project)
        data = self._config_mapping(config)
        data.pop("output", None)  # the registry decides where artifacts go
        names = self._server_side_config(data) if self.providers is not None else {}
        refs = self._check_data_refs(proj.id, data.get("data"))
        metric = data.get("metric")
        if isinstance(metric, str) and metric not in list_presets() and not self._local_paths:
            raise AssayError("a preset name or an inline metric spec in the run config", f"metric: '{metric}'",
                             "inline the metric (its YAML keys) under metric:, or use a preset", code="invalid_config")
        cfg = config_from_dict(data, source="the run config")
        spec = cfg.metric_spec()
        for key, ds_id in refs.items():  # the stored rows must suit this run's metric
            rows = self.dataset_rows(ds_id)
            v = validate_rows(rows, spec, source=f"dataset {ds_id}")
            if not v.ok:
                raise InvalidRows(f"dataset {ds_id} ({key}) for metric '{spec.name}'", v.errors, len(rows))
        stored = cfg.to_dict()
        if names:
            stored[SERVER_NAMES] = names
        rid = new_id("run")
        now = self.now()
        with self.tx() as conn:
            n = conn.execute(select(func.count()).select_from(t.runs).where(t.runs.c.project_id == proj.id)).scalar()
            conn.execute(insert(t.runs).values(
                id=rid, project_id=proj.id, name=name or f"{spec.name} #{n + 1}", metric_name=spec.name,
                config=dumps(stored), status=Status.queued.value, stage=None, progress=0.0, message="queued",
                cancel_requested=0, created_at=now, updated_at=now))
            self._event(conn, rid, "status", status=Status.queued, message="queued")
        return self.get_run(rid)

    @property
    def _local_paths(self) -> bool:
        """Whether run configs may name files on this machine: only a local user's registry (the
        CLI, in-process), never one behind a server (``providers`` set), whatever host or auth."""
        return self.allow_local_paths and self.providers is None

    def _server_side_config(self, data: dict[str, Any]) -> dict[str, str]:
        """A config from an API/UI caller: providers by the operator's names, no server paths.
        Returns {"judge"/"generate": server provider name} for the ones resolved by name."""
        names = {}
        for key in ("judge", "generate"):
            value = data.get(key)
            if value is not None:
                data[key] = self.providers.resolve(value, key, generate=key == "generate")
                name = value if isinstance(value, str) else value.get("model") if isinstance(value, Mapping) else None
                if isinstance(name, str) and name in self.providers.providers:
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
        for key in ("test_set", "train_set"):
            ref = data.get(key)
            if ref is None:
                continue
            if isinstance(ref, str) and ref.startswith(DATASET_REF):
                ds = self.get_dataset(ref[len(DATASET_REF):])
                if ds.project_id != project_id:
                    raise AssayError(f"a dataset of this project for data.{key}", f"{ds.id} of another project",
                                     "upload the file to this project", code="invalid_config")
                if ds.kind == "unlabeled":
                    raise AssayError(f"a labeled dataset for data.{key}", f"{ds.id} is unlabeled",
                                     "upload labeled rows (kind test or train)", code="invalid_config")
                refs[key] = ds.id
            elif not (self._local_paths and Path(str(ref)).is_absolute() and Path(str(ref)).exists()):
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
    def get_run(self, run_id: str, *, history: bool = True) -> Run:
        with self.tx() as conn:
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

    def list_runs(self, project: str | None = None, status: str | None = None, limit: int = 200) -> list[Run]:
        q = select(t.runs).order_by(t.runs.c.created_at.desc()).limit(limit)
        if project:
            q = q.where(t.runs.c.project_id == self.get_project(project).id)
        if status:
            q = q.where(t.runs.c.status == Status(status).value)
        with self.tx() as conn:
            rows = conn.execute(q).mappings().all()
            regs = dict(conn.execute(select(t.metrics.c.run_id, t.metrics.c.full_name)).all())
        return [self._run(r, None, regs.get(r["id"])) for r in rows]

    def run_events(self, run_id: str, after: int = 0, limit: int = 1000) -> list[RunEvent]:
        """The run's log: status changes, stage progress, log lines and errors, oldest first."""
        self.get_run(run_id, history=False)
        with self.tx() as conn:
            after_p = literal(max(0, min(int(after), 2**63 - 1)), BigInteger)  # a 64-bit bind, even on PostgreSQL
            rows = conn.execute(select(t.run_events).where(t.run_events.c.run_id == run_id, t.run_events.c.id > after_p)
                                .order_by(t.run_events.c.id).limit(limit)).mappings().all()
        return [self._event_model(r) for r in rows]

    def run_report(self, run_id: str, fmt: str = "json") -> Any:
        """The run's evaluation report: a dict (json) or the text of report.html / report.md."""
        run = self.get_run(run_id, history=False)
        if fmt not in ("json", "html", "md"):
            raise AssayError("a report format json, html or md", f"'{fmt}'", "use ?format=html", code="invalid_input")
        url = f"{run.artifact_location}/report.{fmt}" if run.artifact_location else None
        if not url or not self.storage.exists(url):
            raise AssayError("a finished run's report", f"no report.{fmt} for run {run_id} ({run.status_title})",
                             "wait until the run is Fine-tuned", code="not_found")
        text = self.storage.read_bytes(url).decode("utf-8")
        return loads(text) if fmt == "json" else text

    @staticmethod
    def _event_model(r: Mapping[str, Any]) -> RunEvent:
        return RunEvent(id=r["id"], at=to_time(r["at"]), kind=r["kind"], status=r["status"], stage=r["stage"],
                        fraction=r["fraction"], message=r["message"])

    def _run(self, row: Mapping[str, Any], events: Any, registered: str | None) -> Run:
        st = Status(row["status"])
        return Run(
            id=row["id"], project_id=row["project_id"], name=row["name"], metric_name=row["metric_name"], status=st,
            status_title=st.title, stage=row["stage"], progress=row["progress"], message=row["message"],
            failure_reason=row["failure_reason"], metrics_summary=loads(row["metrics_summary"]),
            artifact_location=row["artifact_location"], cancel_requested=bool(row["cancel_requested"]),
            worker_id=row["worker_id"], heartbeat_at=to_time(row["heartbeat_at"]),
            config=self._public_config(loads(row["config"], {})),
            created_at=to_time(row["created_at"]), started_at=to_time(row["started_at"]),
            finished_at=to_time(row["finished_at"]), updated_at=to_time(row["updated_at"]),
            history=[self._event_model(e) for e in events] if events is not None else None, registered_as=registered)

    @staticmethod
    def _public_config(config: dict[str, Any]) -> dict[str, Any]:
        """A stored run config as its readers see it: a provider the server resolved by name shows
        that name only (not the operator's options), and no provider shows an endpoint, key variable
        or cache path."""
        names = config.pop(SERVER_NAMES, None) or {}
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
        with self.tx() as conn:
            raw = conn.execute(select(t.runs.c.config).where(t.runs.c.id == run_id)).scalar()
        if raw is None:
            raise not_found("run", run_id, "list runs with GET /v1/runs")
        data = loads(raw, {})
        data.pop(SERVER_NAMES, None)
        return data

    # --- changing status --------------------------------------------------------------------
    def _event(self, conn: Any, run_id: str, kind: str, *, status: Status | None = None, stage: str | None = None,
               fraction: float | None = None, message: str = "") -> None:
        conn.execute(insert(t.run_events).values(run_id=run_id, at=self.now(), kind=kind,
                                                  status=status.value if status else None, stage=stage,
                                                  fraction=fraction, message=message[:4000]))

    def _locked(self, conn: Any, run_id: str) -> Mapping[str, Any]:
        row = conn.execute(select(t.runs).where(t.runs.c.id == run_id).with_for_update()).mappings().first()
        if row is None:
            raise not_found("run", run_id, "list runs with GET /v1/runs")
        return row

    def _set_status(self, conn: Any, row: Mapping[str, Any], new: Status, message: str = "",
                    **values: Any) -> None:
        cur = Status(row["status"])
        check_transition(cur, new, row["id"])
        now = self.now()
        if new.final or new == Status.fine_tuned:
            values.setdefault("finished_at", now)
        conn.execute(update(t.runs).where(t.runs.c.id == row["id"]).values(
            status=new.value, message=message or new.title, updated_at=now, **values))
        self._event(conn, row["id"], "status", status=new, message=message or new.title)

    def cancel_run(self, run_id: str) -> Run:
        """Cancel a queued run at once; ask the worker to stop a running one."""
        with self.tx() as conn:
            row = self._locked(conn, run_id)
            st = Status(row["status"])
            if st == Status.cancelled:
                pass
            elif st == Status.queued and row["worker_id"] is None:
                self._set_status(conn, row, Status.cancelled, "cancelled before it started", cancel_requested=1)
            elif st.active:
                conn.execute(update(t.runs).where(t.runs.c.id == run_id).values(cancel_requested=1,
                                                                                updated_at=self.now()))
                self._event(conn, run_id, "log", message="cancel requested; the worker stops at its next step")
            else:
                check_transition(st, Status.cancelled, run_id)
        return self.get_run(run_id)

    # --- the worker's side ------------------------------------------------------------------
    def claim_run(self, worker_id: str, *, pid: int | None = None, host: str | None = None,
                  run_id: str | None = None) -> Run | None:
        """Atomically take the oldest queued run (or ``run_id``) for this worker; None if none."""
        now = self.now()
        with self.tx() as conn:
            q = (select(t.runs.c.id).where(t.runs.c.status == Status.queued.value, t.runs.c.worker_id.is_(None),
                                           t.runs.c.cancel_requested == 0)
                 .order_by(t.runs.c.created_at).limit(1).with_for_update(skip_locked=True))
            if run_id:
                q = q.where(t.runs.c.id == run_id)
            rid = conn.execute(q).scalar()
            if rid is None:
                return None
            location = self.storage.url("runs", rid)
            res = conn.execute(update(t.runs).where(t.runs.c.id == rid, t.runs.c.worker_id.is_(None),
                                                    t.runs.c.status == Status.queued.value).values(
                worker_id=worker_id, worker_pid=pid if pid is not None else os.getpid(),
                worker_host=host or socket.gethostname(), heartbeat_at=now, started_at=now, updated_at=now,
                stage="preparing", message="claimed by worker", artifact_location=location))
            if res.rowcount != 1:
                return None
            self._event(conn, rid, "log", message=f"claimed by worker {worker_id} (pid {pid or os.getpid()})")
        return self.get_run(rid)

    def heartbeat(self, run_id: str, worker_id: str) -> bool:
        """Record that the worker is alive; returns whether a cancel was requested."""
        with self.tx() as conn:
            res = conn.execute(update(t.runs).where(t.runs.c.id == run_id, t.runs.c.worker_id == worker_id,
                                                    t.runs.c.status.in_([s.value for s in CHAIN[:4]]))
                               .values(heartbeat_at=self.now()))
            if res.rowcount != 1:
                raise RunLost(run_id)
            return bool(conn.execute(select(t.runs.c.cancel_requested).where(t.runs.c.id == run_id)).scalar())

    def report_stage(self, run_id: str, worker_id: str, stage: str, fraction: float | None, message: str,
                     *, log: bool = True) -> None:
        """Move the run to the status ``stage`` implies (walking the chain) and store progress."""
        target = STAGE_STATUS.get(stage)
        lo, hi = STAGE_SPAN.get(stage, (0.0, 1.0))
        progress = lo + (hi - lo) * min(max(fraction or 0.0, 0.0), 1.0)
        with self.tx() as conn:
            row = self._locked(conn, run_id)
            cur = Status(row["status"])
            if row["worker_id"] != worker_id or not cur.active:
                raise RunLost(run_id)
            if target is not None and CHAIN.index(target) > CHAIN.index(cur):
                steps = [s for s in CHAIN[CHAIN.index(cur) + 1:CHAIN.index(target) + 1]
                         if s != Status.generating_data or s == target]
                for s in steps:
                    self._set_status(conn, row, s, f"{s.title}: {message}" if s == target else s.title)
                    row = {**row, "status": s.value}
            conn.execute(update(t.runs).where(t.runs.c.id == run_id).values(
                stage=stage, progress=max(progress, row["progress"]), message=message or stage,
                heartbeat_at=self.now(), updated_at=self.now()))
            if log:
                self._event(conn, run_id, "stage", stage=stage, fraction=fraction, message=message)

    def log_run(self, run_id: str, message: str, kind: str = "log") -> None:
        with self.tx() as conn:
            self._event(conn, run_id, kind, message=message)

    def finish_run(self, run_id: str, worker_id: str, *, artifact_location: str,
                   summary: Mapping[str, Any] | None) -> Run:
        """Training finished: Data ready / Training → Fine-tuned with the report's headline figures."""
        with self.tx() as conn:
            row = self._locked(conn, run_id)
            if row["worker_id"] != worker_id or not Status(row["status"]).active:
                raise RunLost(run_id)
            for s in CHAIN[CHAIN.index(Status(row["status"])) + 1:]:
                if s == Status.generating_data:
                    continue
                self._set_status(conn, row, s, "fine-tuned: evaluator and report saved" if s == Status.fine_tuned
                                 else s.title)
                row = {**row, "status": s.value}
            conn.execute(update(t.runs).where(t.runs.c.id == run_id).values(
                progress=1.0, stage="done", artifact_location=artifact_location,
                metrics_summary=dumps(dict(summary)) if summary else None))
        return self.get_run(run_id)

    def fail_run(self, run_id: str, reason: str, *, worker_id: str | None = None, cancelled: bool = False,
                 artifact_location: str | None = None) -> Run:
        """End a run as Failed (with its reason) or Cancelled; partial outputs stay where they are."""
        with self.tx() as conn:
            row = self._locked(conn, run_id)
            if worker_id is not None and row["worker_id"] != worker_id:
                raise RunLost(run_id)
            values: dict[str, Any] = {"failure_reason": None if cancelled else reason}
            if artifact_location:
                values["artifact_location"] = artifact_location
            self._set_status(conn, row, Status.cancelled if cancelled else Status.failed, reason, **values)
            if not cancelled:
                self._event(conn, run_id, "error", message=reason)
        return self.get_run(run_id)

    def recover_stale(self, stale_after: float = 60.0, *, exclude_worker: str | None = None) -> list[str]:
        """Mark Failed every active run whose worker stopped: no heartbeat for ``stale_after``
        seconds, or (same host) its process is gone. Returns the run ids it failed."""
        host = socket.gethostname()
        failed = []
        with self.tx() as conn:
            candidates = conn.execute(select(t.runs.c.id).where(
                t.runs.c.status.in_([s.value for s in CHAIN[:4]]), t.runs.c.worker_id.is_not(None))).scalars().all()
        for rid in candidates:
            with self.tx() as conn:
                row = self._locked(conn, rid)
                if not Status(row["status"]).active or row["worker_id"] in (None, exclude_worker):
                    continue
                beat = row["heartbeat_at"] or row["started_at"] or 0.0
                why = None
                if row["worker_host"] == host and row["worker_pid"] and not pid_alive(row["worker_pid"]):
                    why = f"its process (pid {row['worker_pid']} on {host}) is gone"
                elif time.time() - beat > stale_after:
                    why = f"no heartbeat since {_iso(beat)} (more than {stale_after:.0f}s)"
                if why is None:
                    continue
                st = Status(row["status"])
                reason = (f"the worker {row['worker_id']} stopped while the run was {st.title} "
                          f"(stage {row['stage'] or '-'}, {row['progress'] * 100:.0f}%): {why}. "
                          f"Partial outputs are kept at {row['artifact_location'] or '-'}; start a new run to retry")
                self._set_status(conn, row, Status.failed, reason, failure_reason=reason)
                self._event(conn, rid, "error", message=reason)
                failed.append(rid)
        return failed

    # --- worker liveness and the queue -------------------------------------------------------
    def worker_seen(self, worker_id: str, *, pid: int | None = None, host: str | None = None,
                    run_id: str | None = None, stopped: bool = False) -> None:
        """A worker's own heartbeat, idle or busy (``GET /v1/health`` reports it)."""
        now = self.now()
        values = {"last_seen": now, "run_id": run_id, "stopped_at": now if stopped else None}
        with self.tx() as conn:
            res = conn.execute(update(t.workers).where(t.workers.c.id == worker_id).values(**values))
            if res.rowcount == 0:
                conn.execute(insert(t.workers).values(id=worker_id, host=host or socket.gethostname(),
                                                      pid=pid if pid is not None else os.getpid(), started_at=now,
                                                      **values))

    def worker_gone(self, pid: int, host: str | None = None) -> None:
        """A supervisor saw the worker process ``pid`` exit: its liveness row is closed."""
        with self.tx() as conn:
            conn.execute(update(t.workers).where(t.workers.c.pid == pid, t.workers.c.host == (host or socket.gethostname()),
                                                 t.workers.c.stopped_at.is_(None)).values(stopped_at=self.now()))

    def workers_status(self, stale_after: float = 60.0, *, recent: float = 3600.0) -> list[dict[str, Any]]:
        """Workers seen in the last ``recent`` seconds: alive when seen within ``stale_after``
        (and, on this host, their process exists)."""
        now = self.now()
        host = socket.gethostname()
        with self.tx() as conn:
            rows = conn.execute(select(t.workers).where(t.workers.c.last_seen > now - recent)
                                .order_by(t.workers.c.started_at)).mappings().all()
        out = []
        for r in rows:
            age = now - r["last_seen"]
            alive = r["stopped_at"] is None and age <= stale_after and not (
                r["host"] == host and not pid_alive(r["pid"]))
            out.append({"id": r["id"], "host": r["host"], "pid": r["pid"], "alive": alive,
                        "seconds_since_seen": round(age, 1), "run_id": r["run_id"],
                        "stopped": r["stopped_at"] is not None})
        return out

    def queue_depth(self) -> int:
        with self.tx() as conn:
            return int(conn.execute(select(func.count()).select_from(t.runs).where(
                t.runs.c.status == Status.queued.value, t.runs.c.worker_id.is_(None))).scalar() or 0)

    def queue_position(self, run_id: str) -> int | None:
        """1 for the next run a worker will claim; None when the run is not waiting."""
        run = self.get_run(run_id, history=False)
        if run.status != Status.queued or run.worker_id is not None:
            return None
        with self.tx() as conn:
            mine = select(t.runs.c.created_at).where(t.runs.c.id == run_id).scalar_subquery()
            ahead = conn.execute(select(func.count()).select_from(t.runs).where(
                t.runs.c.status == Status.queued.value, t.runs.c.worker_id.is_(None),
                t.runs.c.cancel_requested == 0, t.runs.c.created_at < mine)).scalar()
        return int(ahead or 0) + 1

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
                rows = self.dataset_rows(ref[len(DATASET_REF):], apply_review=key == "train_set")
                d[key] = str(write_rows(rows, workdir / "inputs" / f"{key}.jsonl"))
        data["output"] = str(output_dir)
        return config_from_dict(data, source=f"run {run.id}")
