"""The queue of traces between the ingest side and the monitor workers: ``pending_traces`` in the store.

The ingest side (``assay monitor --queue``, the ingest server with ``--queue``) only enqueues; workers
(``assay monitor worker``, :class:`assay.monitor._worker.Worker`) claim batches, score them and finish them.
Several workers, each with its own connection, share one store without scoring a trace twice:

- **claim**: a worker takes up to N rows that nobody holds (no lease, or a lease that ran out) and
  holds them until ``now + lease``. On PostgreSQL one statement (:data:`CLAIM_POSTGRES`):
  ``WITH picked AS (SELECT id ... ORDER BY id LIMIT n FOR UPDATE SKIP LOCKED) UPDATE ... RETURNING``:
  concurrent workers skip each other's rows instead of waiting on them (a CTE with ``FOR UPDATE``
  runs once, so a claim never takes more than n rows). On SQLite the select and the
  update run in one ``BEGIN IMMEDIATE`` transaction (one writer at a time).
- **finish**: the worker stores the verdicts (idempotent: one verdict per (trace, span, metric), the
  store's unique index, and ``Monitor.process`` skips what is already scored), then deletes its rows,
  only those it still holds.
- **crash**: a dead worker's rows become claimable when their lease runs out; the next worker scores
  what is missing and stores nothing twice. A row claimed ``max_attempts`` times without finishing (a
  trace that kills its worker) is parked: :meth:`TraceQueue.stats` counts it under ``failed``.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

from ..traces import Trace

CLAIM_POSTGRES = (
    "WITH picked AS (SELECT id FROM pending_traces WHERE (lease_until IS NULL OR lease_until <= ?) AND attempts < ?"
    " ORDER BY id LIMIT ? FOR UPDATE SKIP LOCKED)"
    " UPDATE pending_traces AS p SET claimed_by = ?, claimed_at = ?, lease_until = ?, attempts = p.attempts + 1"
    " FROM picked WHERE p.id = picked.id RETURNING p.id, p.trace_json")
CLAIM_SQLITE_SELECT = (
    "SELECT id, trace_json FROM pending_traces WHERE (lease_until IS NULL OR lease_until <= ?) AND attempts < ?"
    " ORDER BY id LIMIT ?")
CLAIM_SQLITE_UPDATE = (
    "UPDATE pending_traces SET claimed_by = ?, claimed_at = ?, lease_until = ?, attempts = attempts + 1"
    " WHERE id IN ({ids})")


@dataclass
class Claim:
    """A batch one worker holds until ``lease_until``: the queue rows' ids and their traces, in queue order."""

    worker: str
    ids: list[int]
    traces: list[Trace]
    lease_until: float
    broken: list[int] = field(default_factory=list)  # rows whose trace could not be read back (parked)


def _marks(n: int) -> str:
    return ",".join("?" * n)


class TraceQueue:
    """The ``pending_traces`` table of one :class:`~assay.monitor.Store` (its connection and lock).

    ``lease``: seconds a claimed batch stays a worker's (longer than scoring a batch takes);
    ``max_attempts``: claims of one row before it is parked; ``clock``: the time (tests move it)."""

    def __init__(self, store: Any, *, lease: float = 120.0, max_attempts: int = 5,
                 clock: Callable[[], float] = time.time):
        if lease <= 0 or max_attempts < 1:
            raise ValueError("lease must be > 0 seconds and max_attempts >= 1")
        self.store, self.lease, self.max_attempts, self.clock = store, float(lease), int(max_attempts), clock

    def enqueue(self, traces: Iterable[Any], source: str | None = None) -> int:
        """Put finished traces in the queue (one transaction); how many."""
        now = self.clock()
        items = []
        for t in traces:
            d = t.to_dict() if hasattr(t, "to_dict") else dict(t)
            items.append((d["trace_id"], source, now, json.dumps(d, ensure_ascii=False, default=str)))
        if items:
            with self.store.lock, self.store.db:
                self.store.db.executemany("INSERT INTO pending_traces (trace_id, source, enqueued_at, trace_json)"
                                          " VALUES (?, ?, ?, ?)", items)
        return len(items)

    def claim(self, worker: str, limit: int) -> Claim:
        """Take up to ``limit`` rows nobody holds (oldest first) for ``worker`` until now + lease."""
        now = self.clock()
        until = now + self.lease
        db = self.store.db
        with self.store.lock:
            if self.store.is_postgres:
                with db:
                    args = (now, self.max_attempts, int(limit), worker, now, until)
                    rows = db.execute(CLAIM_POSTGRES, args).fetchall()
            else:
                rows = self._claim_sqlite(worker, now, until, int(limit))
        claim = Claim(worker, [], [], until)
        for r in sorted(rows, key=lambda r: r[0]):
            try:
                claim.traces.append(Trace.from_dict(json.loads(r[1])))
                claim.ids.append(int(r[0]))
            except (ValueError, TypeError, KeyError):
                claim.broken.append(int(r[0]))
        if claim.broken:
            self.release(worker, claim.broken, "the queued trace could not be read back", park=True)
        return claim

    def _claim_sqlite(self, worker: str, now: float, until: float, limit: int) -> list[Any]:
        db = self.store.db
        db.execute("BEGIN IMMEDIATE")  # the one writer: no other claim sees these rows as free
        try:
            rows = db.execute(CLAIM_SQLITE_SELECT, (now, self.max_attempts, limit)).fetchall()
            if rows:
                ids = [r[0] for r in rows]
                db.execute(CLAIM_SQLITE_UPDATE.format(ids=_marks(len(ids))), (worker, now, until, *ids))
            db.commit()
        except BaseException:
            db.rollback()
            raise
        return rows

    def finish(self, claim: Claim) -> int:
        """Delete the claim's rows that its worker still holds (its verdicts are stored); how many."""
        return self._update(claim.worker, claim.ids, "DELETE FROM pending_traces")

    def release(self, worker: str, ids: list[int], error: str, *, park: bool = False) -> int:
        """Hand rows back (a failed batch): claimable again at once, or never again when ``park``."""
        sets = "lease_until = NULL, claimed_by = NULL" + (f", attempts = {self.max_attempts}" if park else "")
        return self._update(worker, ids, f"UPDATE pending_traces SET {sets}, error = ?", error[:500])

    def _update(self, worker: str, ids: list[int], head: str, *args: Any) -> int:
        n = 0
        with self.store.lock, self.store.db:
            for i in range(0, len(ids), 500):
                part = ids[i:i + 500]
                n += self.store.db.execute(f"{head} WHERE claimed_by = ? AND id IN ({_marks(len(part))})",
                                           (*args, worker, *part)).rowcount
        return n

    def stats(self) -> dict[str, int]:
        """Rows ``ready`` to claim, ``leased`` (a worker holds them), ``failed`` (parked after max_attempts)."""
        now = self.clock()
        sql = ("SELECT COUNT(*) AS total,"
               " SUM(CASE WHEN lease_until > ? THEN 1 ELSE 0 END) AS leased,"
               " SUM(CASE WHEN (lease_until IS NULL OR lease_until <= ?) AND attempts >= ? THEN 1 ELSE 0 END) AS failed"
               " FROM pending_traces")
        with self.store.lock:
            r = self.store.db.execute(sql, (now, now, self.max_attempts)).fetchone()
        total, leased, failed = (int(r[i] or 0) for i in range(3))
        return {"ready": total - leased - failed, "leased": leased, "failed": failed}
