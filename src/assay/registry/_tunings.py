"""Judge-prompt tuning jobs (``reg.tunings``): kept in the database, so a restart loses none.

A job is the JSON the REST API returns (``assay.server._judge_api.TuneJob``), written by the server
process that runs it (its ``owner``) at every change of status or progress. A server process that
starts calls :meth:`Tunings.interrupt`: jobs another process left queued or running are marked
failed (``interrupted``), since the thread that ran them is gone; their progress so far is kept.
``assay serve`` runs one API process per registry database, so those jobs have no live owner.
"""

from __future__ import annotations

from typing import Any, Mapping

from sqlalchemy import delete, insert, select, update

from ..errors import AssayError
from . import _db as t
from ._base import Core, dumps, loads

ACTIVE = ("queued", "running")


class Tunings:
    """``save``, ``get``, ``list`` and ``interrupt`` judge-tuning jobs (plain dicts)."""

    def __init__(self, core: Core):
        self.core = core

    def save(self, job: Mapping[str, Any], owner: str) -> None:
        """Insert or replace a job (``id``, ``project_id``, ``metric``, ``status``, ``created_at``, ...)."""
        values = {"project_id": job["project_id"], "metric_name": str(job["metric"]).rsplit("-v", 1)[0],
                  "status": job["status"], "owner": owner, "created_at": float(job["created_at"]),
                  "updated_at": self.core.now(), "job": dumps(dict(job))}
        with self.core.tx() as conn:
            done = conn.execute(update(t.judge_tunings).where(t.judge_tunings.c.id == job["id"]).values(**values))
            if not done.rowcount:
                conn.execute(insert(t.judge_tunings).values(id=job["id"], **values))

    def get(self, job_id: str) -> dict[str, Any] | None:
        with self.core.tx() as conn:
            row = conn.execute(select(t.judge_tunings.c.job).where(t.judge_tunings.c.id == job_id)).first()
        return loads(row[0]) if row else None

    def list(self, metric_name: str, limit: int = 100) -> list[dict[str, Any]]:
        """A metric's jobs (every version of it), newest first."""
        q = (select(t.judge_tunings.c.job).where(t.judge_tunings.c.metric_name == metric_name)
             .order_by(t.judge_tunings.c.created_at.desc()).limit(limit))
        with self.core.tx() as conn:
            return [loads(r[0]) for r in conn.execute(q)]

    def interrupt(self, owner: str) -> int:
        """Mark failed the queued or running jobs of owners other than ``owner``; returns how many."""
        q = select(t.judge_tunings.c.job).where(t.judge_tunings.c.status.in_(ACTIVE), t.judge_tunings.c.owner != owner)
        now = self.core.now()
        error = AssayError("the tuning to finish", "the server restarted while it ran (its progress so far is kept)",
                           "start the tuning again", code="interrupted").to_dict()
        n = 0
        with self.core.tx() as conn:
            for (raw,) in conn.execute(q).all():
                job = {**loads(raw), "status": "failed", "error": error, "finished_at": now}
                conn.execute(update(t.judge_tunings).where(t.judge_tunings.c.id == job["id"])
                             .values(status="failed", updated_at=now, job=dumps(job)))
                n += 1
        return n

    def prune(self, keep: int) -> None:
        """Drop the oldest finished jobs beyond the newest ``keep`` (active ones always stay)."""
        with self.core.tx() as conn:
            ids = conn.execute(select(t.judge_tunings.c.id).order_by(t.judge_tunings.c.created_at.desc())
                               .offset(keep)).scalars().all()
            if ids:
                conn.execute(delete(t.judge_tunings).where(t.judge_tunings.c.id.in_(ids),
                                                           t.judge_tunings.c.status.not_in(ACTIVE)))
