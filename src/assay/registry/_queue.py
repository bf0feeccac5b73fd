"""The worker's side of runs (part of ``reg.runs``, see ``_runs.py``): claiming a queued run,
heartbeats, stage progress, finishing, failing, recovering runs whose worker stopped, worker
liveness and the queue. Status changes go only along allowed transitions.

**The reaper's rule** (:meth:`RunQueue.recover_stale`). A run is failed at once when its worker's
process on this host is gone. A heartbeat older than ``stale_after`` fails it only once a reaper has
*seen* the worker quiet for a while: the first reaper to find no heartbeat for ``stale_after / 2``
writes a note in the run's log (a ``log`` event with stage ``QUIET``), and a reaper fails the run when
the heartbeat is older than ``stale_after`` and that note, written after the last heartbeat, is at
least ``stale_after / 2`` old. A worker that beats regularly is failed ``stale_after`` after it stops
(the note came half-way); but when the reaper itself could not look (the database was locked by a long
write, the reaper's process was starved), the worker whose beats were held up by the same stall gets
``stale_after / 2`` after the stall to beat before anyone fails its run.
"""

from __future__ import annotations

import os
import socket
from datetime import datetime, timezone
from typing import Any, Mapping

from sqlalchemy import func, insert, select, update
from sqlalchemy.engine import Engine

from . import _db as t
from ._base import Core, dumps, not_found
from ._models import CHAIN, Run, Status, check_transition

# Overall progress at the start of each training stage (the stage's own fraction fills the gap).
STAGE_SPAN = {"preparing": (0.0, 0.05), "generating": (0.05, 0.35), "training": (0.35, 0.85),
              "evaluating": (0.85, 0.95), "saving": (0.95, 1.0)}
# The run status each stage of assay.train.train implies.
STAGE_STATUS = {"preparing": None, "generating": Status.generating_data, "training": Status.training,
                "evaluating": Status.training, "saving": Status.training}


# The run-log note a reaper writes when a run's worker has gone quiet (``run_events.stage`` of a ``log`` event).
QUIET = "no-heartbeat"


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


class RunQueue:
    """Status changes and the worker's verbs of :class:`assay.registry.Runs` (which adds ``get``)."""

    core: Core

    def get(self, run_id: str, *, history: bool = True) -> Run:  # pragma: no cover - Runs.get
        raise NotImplementedError

    # --- changing status --------------------------------------------------------------------
    def _event(self, conn: Any, run_id: str, kind: str, *, status: Status | None = None, stage: str | None = None,
               fraction: float | None = None, message: str = "") -> None:
        conn.execute(insert(t.run_events).values(run_id=run_id, at=self.core.now(), kind=kind,
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
        now = self.core.now()
        if new.final or new == Status.fine_tuned:
            values.setdefault("finished_at", now)
        conn.execute(update(t.runs).where(t.runs.c.id == row["id"]).values(
            status=new.value, message=message or new.title, updated_at=now, **values))
        self._event(conn, row["id"], "status", status=new, message=message or new.title)

    # --- the worker's side ------------------------------------------------------------------
    def claim(self, worker_id: str, *, pid: int | None = None, host: str | None = None,
              run_id: str | None = None) -> Run | None:
        """Atomically take the oldest queued run (or ``run_id``) for this worker; None if none."""
        now = self.core.now()
        with self.core.tx() as conn:
            q = (select(t.runs.c.id).where(t.runs.c.status == Status.queued.value, t.runs.c.worker_id.is_(None),
                                           t.runs.c.cancel_requested == 0)
                 .order_by(t.runs.c.created_at).limit(1).with_for_update(skip_locked=True))
            if run_id:
                q = q.where(t.runs.c.id == run_id)
            rid = conn.execute(q).scalar()
            if rid is None:
                return None
            location = self.core.storage.url("runs", rid)
            res = conn.execute(update(t.runs).where(t.runs.c.id == rid, t.runs.c.worker_id.is_(None),
                                                    t.runs.c.status == Status.queued.value).values(
                worker_id=worker_id, worker_pid=pid if pid is not None else os.getpid(),
                worker_host=host or socket.gethostname(), heartbeat_at=now, started_at=now, updated_at=now,
                stage="preparing", message="claimed by worker", artifact_location=location))
            if res.rowcount != 1:
                return None
            self._event(conn, rid, "log", message=f"claimed by worker {worker_id} (pid {pid or os.getpid()})")
        return self.get(rid)

    def heartbeat(self, run_id: str, worker_id: str, *, engine: Engine | None = None, pid: int | None = None) -> bool:
        """Record that the worker is alive; returns whether a cancel was requested. ``engine``: the
        connection to beat through (the worker's heartbeat thread has its own, see ``_worker.py``);
        with ``pid`` the worker's liveness row is refreshed in the same transaction."""
        with (engine.begin() if engine is not None else self.core.tx()) as conn:
            res = conn.execute(update(t.runs).where(t.runs.c.id == run_id, t.runs.c.worker_id == worker_id,
                                                    t.runs.c.status.in_([s.value for s in CHAIN[:4]]))
                               .values(heartbeat_at=self.core.now()))
            if res.rowcount != 1:
                raise RunLost(run_id)
            if pid is not None:
                self._touch_worker(conn, worker_id, pid=pid, host=None, run_id=run_id, stopped=False)
            return bool(conn.execute(select(t.runs.c.cancel_requested).where(t.runs.c.id == run_id)).scalar())

    def report_stage(self, run_id: str, worker_id: str, stage: str, fraction: float | None, message: str,
                     *, log: bool = True) -> None:
        """Move the run to the status ``stage`` implies (walking the chain) and store progress."""
        target = STAGE_STATUS.get(stage)
        lo, hi = STAGE_SPAN.get(stage, (0.0, 1.0))
        progress = lo + (hi - lo) * min(max(fraction or 0.0, 0.0), 1.0)
        with self.core.tx() as conn:
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
                heartbeat_at=self.core.now(), updated_at=self.core.now()))
            if log:
                self._event(conn, run_id, "stage", stage=stage, fraction=fraction, message=message)

    def log(self, run_id: str, message: str, kind: str = "log") -> None:
        with self.core.tx() as conn:
            self._event(conn, run_id, kind, message=message)

    def finish(self, run_id: str, worker_id: str, *, artifact_location: str,
               summary: Mapping[str, Any] | None) -> Run:
        """Training finished: Data ready / Training → Fine-tuned with the report's headline figures."""
        with self.core.tx() as conn:
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
        return self.get(run_id)

    def fail(self, run_id: str, reason: str, *, worker_id: str | None = None, cancelled: bool = False,
             artifact_location: str | None = None) -> Run:
        """End a run as Failed (with its reason) or Cancelled; partial outputs stay where they are."""
        with self.core.tx() as conn:
            row = self._locked(conn, run_id)
            if worker_id is not None and (row["worker_id"] != worker_id or not Status(row["status"]).active):
                raise RunLost(run_id)
            values: dict[str, Any] = {"failure_reason": None if cancelled else reason}
            if artifact_location:
                values["artifact_location"] = artifact_location
            self._set_status(conn, row, Status.cancelled if cancelled else Status.failed, reason, **values)
            if not cancelled:
                self._event(conn, run_id, "error", message=reason)
        return self.get(run_id)

    def recover_stale(self, stale_after: float = 60.0, *, exclude_worker: str | None = None) -> list[str]:
        """Mark Failed every active run whose worker stopped: its process (on this host) is gone, or
        no heartbeat for ``stale_after`` seconds, confirmed as the module docstring says (a note in the
        run's log first). Partial outputs are never touched. Returns the run ids it failed."""
        host = socket.gethostname()
        failed = []
        with self.core.tx() as conn:
            candidates = conn.execute(select(t.runs.c.id).where(
                t.runs.c.status.in_([s.value for s in CHAIN[:4]]), t.runs.c.worker_id.is_not(None))).scalars().all()
        for rid in candidates:
            with self.core.tx() as conn:  # a row locked right now (its worker mid-write) waits for the next round
                row = conn.execute(select(t.runs).where(t.runs.c.id == rid).with_for_update(skip_locked=True)
                                   ).mappings().first()
                if row is None or not Status(row["status"]).active or row["worker_id"] in (None, exclude_worker):
                    continue
                why = self._stopped(conn, row, stale_after, host)
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

    def _stopped(self, conn: Any, row: Mapping[str, Any], stale_after: float, host: str) -> str | None:
        """Why the run's worker counts as stopped (None: it does not, yet). Writes the quiet note."""
        if row["worker_host"] == host and row["worker_pid"] and not pid_alive(row["worker_pid"]):
            return f"its process (pid {row['worker_pid']} on {host}) is gone"
        now = self.core.now()
        beat = row["heartbeat_at"] or row["started_at"] or 0.0
        if now - beat <= stale_after / 2:
            return None
        noted = conn.execute(select(func.min(t.run_events.c.at)).where(
            t.run_events.c.run_id == row["id"], t.run_events.c.kind == "log", t.run_events.c.stage == QUIET,
            t.run_events.c.at >= beat)).scalar()
        if noted is None:
            left = max(stale_after / 2, stale_after - (now - beat))
            self._event(conn, row["id"], "log", stage=QUIET, message=(
                f"no heartbeat from the worker {row['worker_id']} since {_iso(beat)} ({now - beat:.0f} s); "
                f"the run is failed if none comes in the next {left:.0f} s"))
            return None
        if now - beat > stale_after and now - noted >= stale_after / 2:
            return f"no heartbeat since {_iso(beat)} (more than {stale_after:.0f}s)"
        return None

    def late_result(self, run_id: str, worker_id: str, *, location: str, finished: bool) -> bool:
        """A worker learned that its run was failed while it still ran it (a reaper found it quiet):
        the run stays Failed and its log says what became of the work, kept at ``location``.
        ``finished``: the worker completed the run (else it stopped it). False if the run is not this
        worker's failed run."""
        with self.core.tx() as conn:
            row = self._locked(conn, run_id)
            if row["worker_id"] != worker_id or Status(row["status"]) != Status.failed:
                return False
            now = self.core.now()
            when = f"failed at {_iso(row['finished_at'])} ({row['failure_reason'] or row['message']})"
            if finished:
                message = (f"the worker {worker_id} finished this run at {_iso(now)}, after it had been {when}; "
                           f"its result (evaluator and report) is kept at {location}. A failed run stays failed: "
                           "start a new run to register a model")
            else:
                message = (f"the worker {worker_id} learned at {_iso(now)} that this run had been {when} and "
                           f"stopped it; partial outputs are kept at {location}")
            self._event(conn, run_id, "log", message=message)
        return True

    # --- worker liveness and the queue -------------------------------------------------------
    def worker_seen(self, worker_id: str, *, pid: int | None = None, host: str | None = None,
                    run_id: str | None = None, stopped: bool = False) -> None:
        """A worker's own heartbeat, idle or busy (``GET /v1/health`` reports it)."""
        with self.core.tx() as conn:
            self._touch_worker(conn, worker_id, pid=pid, host=host, run_id=run_id, stopped=stopped)

    def _touch_worker(self, conn: Any, worker_id: str, *, pid: int | None, host: str | None, run_id: str | None,
                      stopped: bool) -> None:
        now = self.core.now()
        values = {"last_seen": now, "run_id": run_id, "stopped_at": now if stopped else None}
        res = conn.execute(update(t.workers).where(t.workers.c.id == worker_id).values(**values))
        if res.rowcount == 0:
            conn.execute(insert(t.workers).values(id=worker_id, host=host or socket.gethostname(),
                                                  pid=pid if pid is not None else os.getpid(), started_at=now,
                                                  **values))

    def worker_gone(self, pid: int, host: str | None = None) -> None:
        """A supervisor saw the worker process ``pid`` exit: its liveness row is closed."""
        with self.core.tx() as conn:
            conn.execute(update(t.workers).where(t.workers.c.pid == pid, t.workers.c.host == (host or socket.gethostname()),
                                                 t.workers.c.stopped_at.is_(None)).values(stopped_at=self.core.now()))

    def workers_status(self, stale_after: float = 60.0, *, recent: float = 3600.0) -> list[dict[str, Any]]:
        """Workers seen in the last ``recent`` seconds: alive when seen within ``stale_after``
        (and, on this host, their process exists)."""
        now = self.core.now()
        host = socket.gethostname()
        with self.core.tx() as conn:
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
        with self.core.tx() as conn:
            return int(conn.execute(select(func.count()).select_from(t.runs).where(
                t.runs.c.status == Status.queued.value, t.runs.c.worker_id.is_(None))).scalar() or 0)

    def queue_position(self, run_id: str) -> int | None:
        """1 for the next run a worker will claim; None when the run is not waiting."""
        run = self.get(run_id, history=False)
        if run.status != Status.queued or run.worker_id is not None:
            return None
        with self.core.tx() as conn:
            mine = select(t.runs.c.created_at).where(t.runs.c.id == run_id).scalar_subquery()
            ahead = conn.execute(select(func.count()).select_from(t.runs).where(
                t.runs.c.status == Status.queued.value, t.runs.c.worker_id.is_(None),
                t.runs.c.cancel_requested == 0, t.runs.c.created_at < mine)).scalar()
        return int(ahead or 0) + 1
