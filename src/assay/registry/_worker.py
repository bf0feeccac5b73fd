"""The worker: claims queued runs, executes them through an Executor, heartbeats, records
progress, failure reasons and cancellation, and fails runs whose worker died.

Executors
---------
An executor runs one job and reports back through two callbacks::

    class Executor(Protocol):
        def execute(self, job: RunJob, on_status, should_stop) -> result   # .artifact_dir, .report

``LocalExecutor`` calls :func:`assay.train.train` in this process. To send runs elsewhere, write
an executor whose ``execute`` submits ``job.config.to_yaml()`` (its data files are local paths
in ``job.workdir``: upload them or point the config at shared storage) and then relays the remote
side's progress to ``on_status`` and polls ``should_stop`` until the remote run ends:

* Ray: ``ray.remote(train_entry).remote(config_yaml)`` where ``train_entry`` calls
  ``assay.train.train`` on the cluster and writes the artifact to the registry's fsspec root;
  forward progress with a Ray queue/actor, cancel with ``ray.cancel``.
* Kubernetes: create a Job running ``assay train CONFIG`` with the config in a ConfigMap and
  ``--output`` on shared storage; map pod phases to ``on_status`` and delete the Job on cancel.

In both cases the worker process stays the one place that talks to the registry, so
heartbeats, crash recovery and status transitions work the same as for local runs.
"""

from __future__ import annotations

import logging
import os
import secrets
import shutil
import socket
import tempfile
import threading
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Protocol

from ..config import Config
from ..errors import AssayError, Cancelled
from ._metrics import _summary
from ._models import Run
from ._queue import RunLost
from ._service import Registry

log = logging.getLogger("assay.worker")

OnStatus = Callable[[str, "float | None", str], None]
ShouldStop = Callable[[], bool]


@dataclass
class RunJob:
    run_id: str
    config: Config  # data files resolved to local paths, ``output`` set
    output_dir: Path
    workdir: Path


class Executor(Protocol):
    def execute(self, job: RunJob, on_status: OnStatus, should_stop: ShouldStop) -> Any: ...


class LocalExecutor:
    """Runs the job in this process with ``train_fn`` (default :func:`assay.train.train`)."""

    def __init__(self, train_fn: Callable[..., Any] | None = None):
        self.train_fn = train_fn

    def execute(self, job: RunJob, on_status: OnStatus, should_stop: ShouldStop) -> Any:
        fn = self.train_fn
        if fn is None:
            from ..train import train as fn
        return fn(job.config, progress=False, on_status=on_status, should_stop=should_stop)


def _is_cancel(exc: BaseException) -> bool:
    return isinstance(exc, Cancelled)


class _RunLog(logging.Handler):
    """Copies the ``assay`` logger's records into the run's log while it executes."""

    def __init__(self, registry: Registry, run_id: str):
        super().__init__(logging.INFO)
        self.registry, self.run_id, self._busy = registry, run_id, False

    def emit(self, record: logging.LogRecord) -> None:
        if self._busy or record.name.startswith("assay.worker"):
            return
        self._busy = True
        try:
            self.registry.runs.log(self.run_id, f"{record.levelname.lower()}: {record.getMessage()}")
        except Exception:  # never let logging break a run
            pass
        finally:
            self._busy = False


class Worker:
    """Claims and executes queued runs one at a time.

    ``heartbeat_interval``: how often the run's heartbeat (and cancel flag) is refreshed;
    ``stale_after``: a run whose worker has not beaten for this long is failed by any worker.
    """

    def __init__(self, registry: Registry, executor: Executor | None = None, *, worker_id: str | None = None,
                 poll_interval: float = 1.0, heartbeat_interval: float = 2.0, stale_after: float = 30.0):
        self.registry = registry
        self.executor = executor or LocalExecutor()
        self.worker_id = worker_id or f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(2)}"
        self.poll_interval = poll_interval
        self.heartbeat_interval = heartbeat_interval
        self.stale_after = stale_after
        self.stop_event = threading.Event()

    # --- loop -------------------------------------------------------------------------------
    def run(self, *, once: bool = False) -> int:
        """Work until stopped (or, with ``once``, until the queue is empty). Returns runs executed."""
        done = 0
        last_recover = last_seen = 0.0
        try:
            while not self.stop_event.is_set():
                if time.time() - last_seen > self.heartbeat_interval:
                    self._seen()
                    last_seen = time.time()
                if time.time() - last_recover > max(self.stale_after / 3, 1.0):
                    self.recover()
                    last_recover = time.time()
                run = self.registry.runs.claim(self.worker_id, pid=os.getpid())
                if run is not None:
                    self.execute(run)
                    done += 1
                    continue
                if once:
                    break
                self.stop_event.wait(self.poll_interval)
        finally:
            self._seen(stopped=True)
        return done

    def _seen(self, run_id: str | None = None, stopped: bool = False) -> None:
        try:
            self.registry.runs.worker_seen(self.worker_id, pid=os.getpid(), run_id=run_id, stopped=stopped)
        except Exception as exc:  # liveness is advisory: never let it stop the worker
            log.warning("could not record worker liveness: %s", exc)

    def run_once(self) -> Run | None:
        """Recover stale runs, then claim and execute one queued run (None if the queue is empty)."""
        self.recover()
        run = self.registry.runs.claim(self.worker_id, pid=os.getpid())
        return self.execute(run) if run is not None else None

    def recover(self) -> list[str]:
        failed = self.registry.runs.recover_stale(self.stale_after, exclude_worker=self.worker_id)
        for rid in failed:
            log.warning("run %s: its worker stopped; marked Failed", rid)
        return failed

    def stop(self) -> None:
        self.stop_event.set()

    # --- one run ----------------------------------------------------------------------------
    def execute(self, run: Run) -> Run:
        reg, wid = self.registry, self.worker_id
        storage = reg.storage
        workdir = Path(tempfile.mkdtemp(prefix=f"assay-{run.id}-"))
        run_url = run.artifact_location or storage.url("runs", run.id)
        out = storage.local_dir(run_url) if storage.local else workdir / "out"
        out.mkdir(parents=True, exist_ok=True)
        cancel, lost, stop_beat = threading.Event(), threading.Event(), threading.Event()
        beat = threading.Thread(target=self._beat, args=(run.id, cancel, lost, stop_beat), daemon=True,
                                name=f"heartbeat-{run.id}")
        beat.start()
        handler = _RunLog(reg, run.id)
        logging.getLogger("assay").addHandler(handler)
        state = {"stage": None, "logged": 0.0, "saved": 0.0}

        def on_status(stage: str, fraction: float | None, message: str) -> None:
            now = time.time()
            new_stage = stage != state["stage"]
            if not (new_stage or now - state["saved"] > 0.5 or (fraction is not None and fraction >= 1)):
                return
            log_it = new_stage or now - state["logged"] > 2.0
            reg.runs.report_stage(run.id, wid, stage, fraction, message or stage, log=log_it)
            state.update(stage=stage, saved=now, logged=now if log_it else state["logged"])

        def should_stop() -> bool:
            return cancel.is_set() or lost.is_set()

        try:
            if cancel.is_set() or reg.runs.heartbeat(run.id, wid):
                raise Cancelled("cancelled before it started")
            reg.runs.report_stage(run.id, wid, "preparing", 0.0, "resolving datasets")
            cfg = reg.runs.resolve_config(run, workdir, out)
            result = self.executor.execute(RunJob(run.id, cfg, out, workdir), on_status, should_stop)
            if lost.is_set():
                raise RunLost(run.id)
            artifact = Path(result.artifact_dir)
            if run.retrain_of:  # a retrain from reviews: the report compares it with the version it came from
                from ._retrain import add_comparison

                on_status("evaluating", 1.0, f"comparing with {run.retrain_of.get('version')} on its held-out rows")
                add_comparison(reg, run, artifact, getattr(result, "evaluator", None), workdir)
            location = run_url
            if not (storage.local and artifact.resolve() == out.resolve()):
                location = storage.put_dir(artifact, run_url)
            return reg.runs.finish(run.id, wid, artifact_location=location, summary=_summary(result.report))
        except RunLost:
            log.warning("run %s is no longer ours (marked failed elsewhere?)", run.id)
            return reg.runs.get(run.id)
        except BaseException as exc:
            if lost.is_set() and not isinstance(exc, (KeyboardInterrupt, SystemExit)):
                log.warning("run %s is no longer ours; stopped it", run.id)
                return reg.runs.get(run.id)
            return self._fail(run, exc, cancelled=_is_cancel(exc) or (cancel.is_set() and not lost.is_set()),
                              out=out, run_url=run_url)
        finally:
            stop_beat.set()
            beat.join(timeout=5)
            logging.getLogger("assay").removeHandler(handler)
            shutil.rmtree(workdir, ignore_errors=True)

    def _fail(self, run: Run, exc: BaseException, *, cancelled: bool, out: Path, run_url: str) -> Run:
        reg = self.registry
        if isinstance(exc, AssayError):
            reason = str(exc)
        elif isinstance(exc, (KeyboardInterrupt, SystemExit)):
            reason = f"the worker {self.worker_id} was stopped ({type(exc).__name__}) during the run"
        else:
            reason = f"{type(exc).__name__}: {exc}"
        location = None
        try:
            if not cancelled:
                reg.runs.log(run.id, "".join(traceback.format_exception(exc))[-3000:], kind="error")
            if not reg.storage.local and any(out.iterdir()):  # keep partial outputs
                location = reg.storage.put_dir(out, run_url)
            result = reg.runs.fail(run.id, "cancelled" if cancelled else reason, worker_id=self.worker_id,
                                   cancelled=cancelled, artifact_location=location)
        except RunLost:
            result = reg.runs.get(run.id)
        if isinstance(exc, (KeyboardInterrupt, SystemExit)):
            raise exc
        log.warning("run %s %s: %s", run.id, "cancelled" if cancelled else "failed", reason)
        return result

    def _beat(self, run_id: str, cancel: threading.Event, lost: threading.Event, stop: threading.Event) -> None:
        while not stop.wait(self.heartbeat_interval):
            try:
                self._seen(run_id)
                if self.registry.runs.heartbeat(run_id, self.worker_id):
                    cancel.set()
            except RunLost:
                lost.set()
                return
            except Exception as exc:  # a database hiccup: try again next beat
                log.warning("heartbeat for %s failed: %s", run_id, exc)
