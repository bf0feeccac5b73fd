"""Projects (``reg.projects``): the named folders that hold datasets, runs and metrics."""

from __future__ import annotations

from typing import Any, Mapping

from sqlalchemy import func, insert, or_, select

from ..errors import AssayError
from . import _db as t
from ._base import Core, new_id, not_found
from ._models import Project, to_time


class Projects:
    """``create``, ``get`` (by id or name) and ``list`` projects."""

    def __init__(self, core: Core):
        self.core = core

    def create(self, name: str, description: str = "") -> Project:
        name = (name or "").strip()
        if not name or len(name) > 100:
            raise AssayError("a project name of 1 to 100 characters", f"'{name}'", "choose a short name",
                             code="invalid_input")
        with self.core.tx() as conn:
            if conn.execute(select(t.projects.c.id).where(t.projects.c.name == name)).first():
                raise AssayError("a new project name", f"a project named '{name}' already exists",
                                 "choose another name or use the existing project", code="conflict")
            pid = new_id("prj")
            conn.execute(insert(t.projects).values(id=pid, name=name, description=description or "",
                                                   created_at=self.core.now()))
        return self.get(pid)

    def get(self, ref: str) -> Project:
        """A project by id or name."""
        with self.core.tx() as conn:
            row = conn.execute(select(t.projects).where(or_(t.projects.c.id == ref, t.projects.c.name == ref))
                               ).mappings().first()
            if row is None:
                raise not_found("project", ref, "list projects with GET /v1/projects or create one")
            return self._project(conn, row)

    def list(self) -> list[Project]:
        with self.core.tx() as conn:
            rows = conn.execute(select(t.projects).order_by(t.projects.c.created_at)).mappings().all()
            return [self._project(conn, r) for r in rows]

    @staticmethod
    def _project(conn: Any, row: Mapping[str, Any]) -> Project:
        n_runs = conn.execute(select(func.count()).select_from(t.runs).where(t.runs.c.project_id == row["id"])
                              ).scalar()
        n_ds = conn.execute(select(func.count()).select_from(t.datasets)
                            .where(t.datasets.c.project_id == row["id"])).scalar()
        return Project(id=row["id"], name=row["name"], description=row["description"],
                       created_at=to_time(row["created_at"]), runs=n_runs, datasets=n_ds)
