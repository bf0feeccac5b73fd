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

Heartbeats
----------
While a run executes, a thread of its own (:class:`_Beat`) beats every ``heartbeat_interval``
seconds through a database connection of its own: never the work's connections, never between the
work's steps, and a failed beat (a locked database, a dropped connection) is logged and retried at
once instead of waiting for the next interval. Progress reports from the work are advisory: a
database error there is logged, never fatal to the run. A worker whose process is stopped (SIGSTOP)
or killed stops beating and is failed by the reaper (see ``_queue.py`` for its rule); one that is busy
(pure-Python loops, a long write elsewhere in the database) keeps beating.

A worker that learns its run was failed while it still ran it (the reaper found it quiet) stops the
work at the next ``should_stop`` check, or, when the work ends first, keeps its result; either way
what it wrote stays in the run's folder (uploaded when the storage is remote) and the run's log says
where. The run stays Failed (statuses never go back).
"""

from __future__ import annotations

import logging
import os
import secrets
import shutil
import socket
import threading
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Protocol

from sqlalchemy import event
from sqlalchemy.engine import Engine

from ..config import Config
from ..errors import AssayError, Cancelled
from ._db import make_engine
from ._ingest import private_temp_dir, remove_dead_temp_dirs
from ._metrics import _summary
from ._models import Run
from ._queue import RunLost
from ._service import Registry

log = logging.getLogger("assay.worker")

OnStatus = Callable[[str, "float | None", str], None]
ShouldStop = Callable[[], bool]

BEAT_RETRY = 0.2  # seconds between tries of a heartbeat that failed (a locked database, a dropped connection)
BEAT_LOG_EVERY = 10.0  # seconds between the log lines of a heartbeat that keeps failing
BEATS_PER_STALE = 5  # at least this many heartbeats fit in ``stale_after``


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


def _log_to_stderr() -> None:
    """Where nothing configured logging (``assay worker``), the worker's own lines (a heartbeat held up,
    a run failed) go to stderr: the run-log handler on ``assay`` would otherwise keep Python's
    last-resort output from showing them while a run executes."""
    if not any(logging.getLogger(name).handlers for name in ("assay.worker", "assay", "")):
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s: %(message)s"))
        logging.getLogger("assay.worker").addHandler(handler)


def _is_cancel(exc: BaseException) -> bool:
    return isinstance(exc, Cancelled)


class _RunLog(logging.Handler):
    """Copies the ``assay`` logger's records into the run's log while it executes."""

    def __init__(self, registry: Registry, run_id: str):
        super().__init__(logging.INFO)
        self.registry, self.run_id, self._local = registry, run_id, threading.local()

    def filter(self, record: logging.LogRecord) -> bool:
        # before the handler's lock: the heartbeat thread's own lines never wait for a run-log write
        return not record.name.startswith("assay.worker") and super().filter(record)

    def emit(self, record: logging.LogRecord) -> None:
        if getattr(self._local, "busy", False):
            return
        self._local.busy = True
        try:
            self.registry.runs.log(self.run_id, f"{record.levelname.lower()}: {record.getMessage()}")
        except Exception:  # never let logging break a run
            pass
        finally:
            self._local.busy = False


def _lose(beat: "_Beat", run_id: str) -> None:
    if not beat.lost.is_set():
        log.warning("run %s is no longer this worker's (failed elsewhere?): stopping it", run_id)
    beat.lost.set()


class _Beat:
    """A run's heartbeat: a daemon thread with its own database connection (engine), beating every
    ``worker.heartbeat_interval`` seconds until stopped; ``cancel`` is set when a cancel is requested,
    ``lost`` when the run is no longer the worker's (failed by a reaper)."""

    def __init__(self, worker: "Worker", run_id: str):
        self.worker, self.run_id = worker, run_id
        self.cancel, self.lost, self.stop = threading.Event(), threading.Event(), threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True, name=f"heartbeat-{run_id}")

    def __enter__(self) -> "_Beat":
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop.set()
        self.thread.join(timeout=5)

    def _engine(self) -> Engine | None:
        """A connection of the heartbeat's own, that gives up waiting for a lock (SQLite: the database's,
        PostgreSQL: the run's row) after a few seconds, so a beat held up is logged and tried again;
        None (the registry's engine) for an in-memory SQLite database."""
        url = self.worker.registry.url
        if url.startswith("sqlite") and (url.rstrip("/").endswith(":memory:") or url.rstrip("/") == "sqlite:"):
            return None
        engine = make_engine(url)
        wait_ms = int(min(max(self.worker.heartbeat_interval * 2, 1.0), 10.0) * 1000)

        @event.listens_for(engine, "connect")
        def _lock_wait(dbapi_conn: Any, _record: Any) -> None:
            if engine.dialect.name == "sqlite":
                dbapi_conn.execute(f"PRAGMA busy_timeout={wait_ms}")
            elif engine.dialect.name == "postgresql":
                autocommit, dbapi_conn.autocommit = dbapi_conn.autocommit, True  # SET outside a transaction
                dbapi_conn.execute(f"SET lock_timeout = {wait_ms}")
                dbapi_conn.autocommit = autocommit

        return engine

    def _loop(self) -> None:
        w, failing_since, logged = self.worker, 0.0, 0.0
        engine = self._engine()
        wait = w.heartbeat_interval
        try:
            while not self.stop.wait(wait):
                try:
                    if w.registry.runs.heartbeat(self.run_id, w.worker_id, engine=engine, pid=os.getpid()):
                        self.cancel.set()
                except RunLost:
                    _lose(self, self.run_id)
                    return
                except Exception as exc:  # a locked database, a dropped connection: log, try again soon
                    now = time.monotonic()
                    failing_since = failing_since or now
                    if now - logged >= BEAT_LOG_EVERY:
                        logged = now
                        log.warning("heartbeat for run %s not written for %.1f s (%s: %s); retrying", self.run_id,
                                    now - failing_since, type(exc).__name__, (str(exc).splitlines() or [""])[0])
                    wait = BEAT_RETRY
                    continue
                if failing_since:
                    log.warning("heartbeat for run %s written again after %.1f s", self.run_id,
                                time.monotonic() - failing_since)
                failing_since, logged, wait = 0.0, 0.0, w.heartbeat_interval
        finally:
            if engine is not None:
                engine.dispose()


class Worker:
    """Claims and executes queued runs one at a time.

    ``heartbeat_interval``: how often the run's heartbeat (and cancel flag) is refreshed, at most
    ``stale_after / 5`` (so a few late beats never look like a stopped worker);
    ``stale_after``: a run whose worker has not beaten for this long is failed by any worker.
    """

    def __init__(self, registry: Registry, executor: Executor | None = None, *, worker_id: str | None = None,
                 poll_interval: float = 1.0, heartbeat_interval: float = 2.0, stale_after: float = 30.0):
        self.registry = registry
        self.executor = executor or LocalExecutor()
        self.worker_id = worker_id or f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(2)}"
        self.poll_interval = poll_interval
        self.heartbeat_interval = min(heartbeat_interval, stale_after / BEATS_PER_STALE)
        if self.heartbeat_interval < heartbeat_interval:
            log.info("heartbeat every %.2f s (not %.2f s): %d beats within --stale-after %.0f s",
                     self.heartbeat_interval, heartbeat_interval, BEATS_PER_STALE, stale_after)
        self.stale_after = stale_after
        self.stop_event = threading.Event()

    # --- loop -------------------------------------------------------------------------------
    def run(self, *, once: bool = False) -> int:
        """Work until stopped (or, with ``once``, until the queue is empty). Returns runs executed."""
        done = 0
        last_recover = last_seen = 0.0
        _log_to_stderr()
        for path in remove_dead_temp_dirs():
            log.warning("removed %s, left by a worker or server that is gone", path)
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
        workdir = private_temp_dir("run")
        run_url = run.artifact_location or storage.url("runs", run.id)
        out = storage.local_dir(run_url) if storage.local else workdir / "out"
        out.mkdir(parents=True, exist_ok=True)
        handler = _RunLog(reg, run.id)
        logging.getLogger("assay").addHandler(handler)
        artifact: Path | None = None
        try:
            with _Beat(self, run.id) as beat:
                try:
                    if beat.cancel.is_set() or reg.runs.heartbeat(run.id, wid):
                        raise Cancelled("cancelled before it started")
                    reg.runs.report_stage(run.id, wid, "preparing", 0.0, "resolving datasets")
                    cfg = reg.runs.resolve_config(run, workdir, out)
                    result = self.executor.execute(RunJob(run.id, cfg, out, workdir), self._on_status(run.id, beat),
                                                   lambda: beat.cancel.is_set() or beat.lost.is_set())
                    artifact = Path(result.artifact_dir)
                    if beat.lost.is_set():
                        raise RunLost(run.id)
                    if run.retrain_of:  # a retrain from reviews: the report compares it with the version it came from
                        from ._retrain import add_comparison

                        version = run.retrain_of.get("version")
                        self._on_status(run.id, beat)("evaluating", 1.0, f"comparing with {version} on its held-out rows")
                        add_comparison(reg, run, artifact, getattr(result, "evaluator", None), workdir)
                    location = self._store(artifact, out, run_url)
                    return reg.runs.finish(run.id, wid, artifact_location=location, summary=_summary(result.report))
                except RunLost:
                    return self._lost(run, artifact, out, run_url)
                except BaseException as exc:
                    if beat.lost.is_set() and not isinstance(exc, (KeyboardInterrupt, SystemExit)):
                        return self._lost(run, None, out, run_url)
                    cancelled = _is_cancel(exc) or (beat.cancel.is_set() and not beat.lost.is_set())
                    return self._fail(run, exc, cancelled=cancelled, out=out, run_url=run_url)
        finally:
            logging.getLogger("assay").removeHandler(handler)
            shutil.rmtree(workdir, ignore_errors=True)

    def _on_status(self, run_id: str, beat: _Beat) -> OnStatus:
        """The work's progress callback: stored at most every 0.5 s (logged every 2 s or on a new stage).
        Advisory: a database error is logged, and a run that is no longer ours sets ``beat.lost`` (the
        work stops at its next ``should_stop`` check; a stage that does not check finishes and is kept)."""
        reg, wid = self.registry, self.worker_id
        state: dict[str, Any] = {"stage": None, "logged": 0.0, "saved": 0.0}

        def on_status(stage: str, fraction: float | None, message: str) -> None:
            now = time.time()
            new_stage = stage != state["stage"]
            if beat.lost.is_set() or not (new_stage or now - state["saved"] > 0.5
                                          or (fraction is not None and fraction >= 1)):
                return
            log_it = new_stage or now - state["logged"] > 2.0
            try:
                reg.runs.report_stage(run_id, wid, stage, fraction, message or stage, log=log_it)
            except RunLost:
                _lose(beat, run_id)
                return
            except Exception as exc:  # progress is advisory; the heartbeat thread keeps the run alive
                log.warning("progress of run %s not recorded (%s: %s)", run_id, type(exc).__name__, exc)
                return
            state.update(stage=stage, saved=now, logged=now if log_it else state["logged"])

        return on_status

    def _store(self, artifact: Path, out: Path, run_url: str) -> str:
        """The run's outputs at ``run_url`` (copied there unless the work wrote them in place)."""
        storage = self.registry.storage
        if storage.local and artifact.resolve() == out.resolve():
            return run_url
        return storage.put_dir(artifact, run_url)

    def _lost(self, run: Run, artifact: Path | None, out: Path, run_url: str) -> Run:
        """The run was failed while this worker ran it: keep what the work wrote (the result when it
        finished, else its partial outputs) at the run's location and say so in the run's log."""
        reg = self.registry
        src = artifact if artifact is not None and artifact.exists() else out
        try:
            location = self._store(src, out, run_url) if src.exists() and any(src.iterdir()) else run_url
            reg.runs.late_result(run.id, self.worker_id, location=location, finished=artifact is not None)
        except Exception as exc:  # the run is not ours: nothing else to record
            log.warning("run %s: could not record what became of its work (%s)", run.id, exc)
        log.warning("run %s was failed while this worker ran it; its %s kept at %s", run.id,
                    "result is" if artifact is not None else "partial outputs are", run_url)
        return reg.runs.get(run.id)

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
        except RunLost:  # failed elsewhere meanwhile: keep what it wrote and say so
            result = self._lost(run, None, out, run_url)
        if isinstance(exc, (KeyboardInterrupt, SystemExit)):
            raise exc
        log.warning("run %s %s: %s", run.id, "cancelled" if cancelled else "failed", reason)
        return result
