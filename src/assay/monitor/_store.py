"""The monitor's store: traces, verdicts with their route, human reviews, ingest problems, and the
queue of traces waiting for a worker (``_queue.TraceQueue``).

One SQLite file (``monitor.db``, a path or ``sqlite:///path``) or one PostgreSQL database by URL
(``postgresql://user@host/db``, the registry's forms; see ``_sql``): the same tables, the same steps.

Reviews are append-only, several per verdict (several reviewers, replaced labels, judges' labels);
the ``reviews`` table is read and written only through ``assay.review``'s store (``VerdictReviews``,
``self.review_store``), and which reviews make a verdict's people's label is ``assay.review``'s
consensus rule. This module keeps the table's schema (the migrations below).

Migrations are append-only: never edit one that has shipped, add a new one at the end
(tests/core/test_schema_pins.py pins the schema). The shared runner ``assay._migrate`` applies
them and records them in the ``_migrations`` table. Steps 1-3 were written for SQLite only and are
released: PostgreSQL runs them as :func:`postgres_steps` words them (same versions, names, tables,
columns and indexes); every later step is written once in SQL both accept (``{serial}`` is the
dialect's auto-increment key) and runs as it is on both.
"""

from __future__ import annotations

import json
import re
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any, Iterable, Mapping

from .. import _migrate
from .._migrate import Migration, split_script
from ..errors import AssayError
from ..review import MAJORITY, TIE, VerdictReviews, summarize_reviews
from ._sql import PgConnection, connect_postgres, is_postgres, sqlite_path

MIGRATIONS: list[Migration] = [
    Migration(1, "initial", split_script("""
CREATE TABLE checks (
  name TEXT PRIMARY KEY, kind TEXT NOT NULL, spec_json TEXT, source TEXT, severity TEXT,
  eval_kappa REAL, baseline_json TEXT, updated_at REAL NOT NULL);
CREATE TABLE traces (
  trace_id TEXT PRIMARY KEY, session_id TEXT, source TEXT, received_at REAL NOT NULL, trace_json TEXT NOT NULL);
CREATE TABLE verdicts (
  id INTEGER PRIMARY KEY AUTOINCREMENT, trace_id TEXT NOT NULL, metric TEXT NOT NULL, kind TEXT NOT NULL,
  label TEXT, passed INTEGER NOT NULL, score REAL, confidence REAL, route TEXT NOT NULL, route_reason TEXT,
  reason TEXT, details_json TEXT, row_json TEXT, created_at REAL NOT NULL, UNIQUE (trace_id, metric));
CREATE INDEX verdicts_metric_time ON verdicts (metric, created_at);
CREATE INDEX verdicts_route ON verdicts (route, metric);
CREATE TABLE reviews (
  id INTEGER PRIMARY KEY AUTOINCREMENT, verdict_id INTEGER NOT NULL REFERENCES verdicts (id),
  label TEXT NOT NULL, reviewer TEXT, note TEXT, created_at REAL NOT NULL);
CREATE INDEX reviews_verdict ON reviews (verdict_id);
CREATE TABLE problems (
  id INTEGER PRIMARY KEY AUTOINCREMENT, source TEXT, reason TEXT NOT NULL, count INTEGER NOT NULL,
  examples_json TEXT, created_at REAL NOT NULL);
""")),
    Migration(2, "monitor_runs", split_script("""
CREATE TABLE runs (
  id INTEGER PRIMARY KEY AUTOINCREMENT, started_at REAL NOT NULL, finished_at REAL, settings_json TEXT,
  summary_json TEXT);
ALTER TABLE verdicts ADD COLUMN run_id INTEGER REFERENCES runs (id);
""")),
    # Span-level verdicts: span_id (NULL for a trace or session verdict); one verdict per (trace, span,
    # metric). SQLite cannot drop the inline UNIQUE (trace_id, metric), so the table is rebuilt with
    # the same ids; reviews keep pointing at them (their foreign key is checked at commit).
    Migration(3, "span_verdicts", split_script("""
PRAGMA defer_foreign_keys = ON;
CREATE TEMP TABLE verdicts_before_spans AS SELECT * FROM verdicts;
DROP TABLE verdicts;
CREATE TABLE verdicts (
  id INTEGER PRIMARY KEY AUTOINCREMENT, trace_id TEXT NOT NULL, metric TEXT NOT NULL, kind TEXT NOT NULL,
  label TEXT, passed INTEGER NOT NULL, score REAL, confidence REAL, route TEXT NOT NULL, route_reason TEXT,
  reason TEXT, details_json TEXT, row_json TEXT, created_at REAL NOT NULL, run_id INTEGER REFERENCES runs (id),
  span_id TEXT);
INSERT INTO verdicts (id, trace_id, metric, kind, label, passed, score, confidence, route, route_reason, reason,
  details_json, row_json, created_at, run_id)
  SELECT id, trace_id, metric, kind, label, passed, score, confidence, route, route_reason, reason,
  details_json, row_json, created_at, run_id FROM verdicts_before_spans ORDER BY id;
DROP TABLE verdicts_before_spans;
CREATE UNIQUE INDEX verdicts_subject ON verdicts (trace_id, COALESCE(span_id, ''), metric);
CREATE INDEX verdicts_metric_time ON verdicts (metric, created_at);
CREATE INDEX verdicts_route ON verdicts (route, metric);
""")),
    # The queue between the ingest side (``assay monitor --queue``) and workers (``assay monitor worker``):
    # one row per enqueued trace until a worker has stored its verdicts. A worker claims a batch for
    # ``lease_until``; a batch whose lease ran out (its worker died) is claimable again.
    Migration(4, "trace_queue", split_script("""
CREATE TABLE pending_traces (
  id {serial}, trace_id TEXT NOT NULL, source TEXT, enqueued_at DOUBLE PRECISION NOT NULL, trace_json TEXT NOT NULL,
  claimed_by TEXT, claimed_at DOUBLE PRECISION, lease_until DOUBLE PRECISION, attempts INTEGER NOT NULL DEFAULT 0,
  error TEXT);
CREATE INDEX pending_traces_lease ON pending_traces (lease_until);
""")),
]
SQLITE_ONLY = 3  # the last step written for SQLite alone (see postgres_steps)
# Step 3 rebuilt the verdicts table because SQLite cannot drop an inline UNIQUE; PostgreSQL alters it
# (its reviews keep their foreign key, the two indexes of step 1 stay).
_PG_SPAN_VERDICTS = (
    "ALTER TABLE verdicts ADD COLUMN span_id TEXT",
    "ALTER TABLE verdicts DROP CONSTRAINT verdicts_trace_id_metric_key",
    "CREATE UNIQUE INDEX verdicts_subject ON verdicts (trace_id, COALESCE(span_id, ''), metric)",
)
_TABLE = "_migrations"  # the monitor's version table since its first release


def postgres_steps(steps: list[Migration] = MIGRATIONS) -> list[Migration]:
    """The steps as PostgreSQL runs them: the SQLite-only steps (1-3) reworded (an autoincrement key is
    ``{serial}``, ``REAL`` is ``DOUBLE PRECISION``, ``INTEGER`` is ``BIGINT``, no ``PRAGMA``; step 3 alters
    the table it rebuilt), the later ones as they are."""
    out = []
    for step in steps:
        if step.version > SQLITE_ONLY:
            out.append(step)
            continue
        if step.name == "span_verdicts":
            out.append(Migration(step.version, step.name, _PG_SPAN_VERDICTS))
            continue
        words = []
        for sql in step.statements:
            if sql.upper().startswith("PRAGMA"):
                continue
            sql = sql.replace("INTEGER PRIMARY KEY AUTOINCREMENT", "{serial}")
            words.append(re.sub(r"\bINTEGER\b", "BIGINT", re.sub(r"\bREAL\b", "DOUBLE PRECISION", sql)))
        out.append(Migration(step.version, step.name, tuple(words)))
    return out


def default_db() -> Path:
    from .._files import assay_home

    return assay_home() / "monitor.db"


def _j(v: Any) -> str | None:
    return None if v is None else json.dumps(v, ensure_ascii=False, default=str)


def _unj(v: str | None) -> Any:
    return None if v is None else json.loads(v)


class Store:
    """One SQLite file or one PostgreSQL database; safe to share between the threads of one process.

    ``path``: a file path, ``sqlite:///path`` or a ``postgresql://`` URL (default
    ``$ASSAY_HOME/monitor.db``). Several processes (ingest, workers, the server) each open their own
    ``Store`` on one database. ``path`` is then the URL without its password (what summaries show)."""

    def __init__(self, path: str | Path | None = None):
        self.lock = threading.RLock()
        target = path if path not in (None, "") else default_db()
        if is_postgres(target):
            self.db, self._engine, where = connect_postgres(str(target))
            self.path: Path | str = where
        else:
            self.path = sqlite_path(target)
            self.db = self._open_sqlite(self.path)
        self.review_store = VerdictReviews(self.db, self.lock)  # every read and write of the reviews table
        try:
            self.migrate()
        except BaseException:
            self.close()
            raise

    def _open_sqlite(self, path: Path) -> sqlite3.Connection:
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            db = sqlite3.connect(str(path), check_same_thread=False, timeout=30)
        except sqlite3.Error as exc:
            raise AssayError("a writable SQLite file for the monitor", f"{path} ({exc})",
                             "pass --db with a writable path", code="invalid_input") from None
        db.row_factory = sqlite3.Row
        with self.lock:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")  # durable with WAL up to the last checkpoint
            db.execute("PRAGMA foreign_keys=ON")
        return db

    @property
    def is_postgres(self) -> bool:
        """Whether the store is a PostgreSQL database (else a SQLite file)."""
        return isinstance(self.db, PgConnection)

    # --- schema ---------------------------------------------------------------------------------
    def _migrator(self) -> Any:
        """What the migration runner works on: the sqlite3 connection, or a SQLAlchemy engine."""
        return getattr(self, "_engine", None) or self.db

    def version(self) -> int:
        """The schema version of this database (0: empty)."""
        with self.lock:
            return _migrate.current_version(self._migrator(), table=_TABLE)

    def migrate(self, upto: int | None = None) -> int:
        """Apply the migrations not applied yet (up to ``upto``); returns the schema version."""
        latest = _migrate.latest(MIGRATIONS)
        with self.lock:
            current = self.version()
            if current > latest:
                raise AssayError(f"a monitor database at schema version <= {latest}", f"version {current}",
                                 "upgrade assay, or use another --db", code="invalid_input")
            steps = postgres_steps() if self.is_postgres else MIGRATIONS
            _migrate.migrate(self._migrator(), steps, table=_TABLE, upto=upto)
            return self.version()

    def close(self) -> None:
        with self.lock:
            self.db.close()
            engine = getattr(self, "_engine", None)
            if engine is not None:
                engine.dispose()

    def _exec(self, sql: str, args: Iterable[Any] = ()) -> sqlite3.Cursor:
        with self.lock, self.db:
            return self.db.execute(sql, tuple(args))

    def _all(self, sql: str, args: Iterable[Any] = ()) -> list[dict[str, Any]]:
        with self.lock:
            return [dict(r) for r in self.db.execute(sql, tuple(args)).fetchall()]

    # --- checks ---------------------------------------------------------------------------------
    def register_check(self, name: str, kind: str, *, spec: Mapping[str, Any] | None = None, source: str | None = None,
                       severity: str | None = None, eval_kappa: float | None = None,
                       baseline: Mapping[str, Any] | None = None) -> None:
        """Record a check; an existing baseline is kept unless a new one is given."""
        self._exec(
            "INSERT INTO checks (name, kind, spec_json, source, severity, eval_kappa, baseline_json, updated_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (name) DO UPDATE SET kind=excluded.kind,"
            " spec_json=excluded.spec_json, source=excluded.source, severity=excluded.severity,"
            " eval_kappa=COALESCE(excluded.eval_kappa, checks.eval_kappa),"
            " baseline_json=COALESCE(excluded.baseline_json, checks.baseline_json), updated_at=excluded.updated_at",
            (name, kind, _j(spec), source, severity, eval_kappa, _j(baseline), time.time()))

    def set_baseline(self, name: str, baseline: Mapping[str, Any]) -> None:
        self._exec("UPDATE checks SET baseline_json=?, updated_at=? WHERE name=?", (_j(baseline), time.time(), name))

    def checks(self) -> dict[str, dict[str, Any]]:
        out = {}
        for r in self._all("SELECT * FROM checks ORDER BY name"):
            r["spec"] = _unj(r.pop("spec_json"))
            r["baseline"] = _unj(r.pop("baseline_json"))
            out[r["name"]] = r
        return out

    # --- traces and verdicts --------------------------------------------------------------------
    def add_trace(self, trace: Any, received_at: float | None = None) -> None:
        self.add_traces([trace], received_at)

    def add_traces(self, traces: Iterable[Any], received_at: float | None = None) -> None:
        """Store traces (one transaction); a trace id already stored is kept as it was."""
        now = received_at or time.time()
        items = []
        for t in traces:
            d = t.to_dict() if hasattr(t, "to_dict") else dict(t)
            items.append((d["trace_id"], d.get("session_id"), d.get("source"), now, _j(d)))
        with self.lock, self.db:
            self.db.executemany("INSERT OR IGNORE INTO traces VALUES (?, ?, ?, ?, ?)", items)

    def traces(self, *, since: float | None = None, limit: int | None = None) -> list[Any]:
        """Stored traces (oldest first), e.g. to re-evaluate what production sent."""
        from ..traces import Trace

        sql = "SELECT trace_json FROM traces" + (" WHERE received_at>=?" if since is not None else "")
        sql += f" ORDER BY received_at, {self._arrival}"
        sql += f" LIMIT {int(limit)}" if limit else ""
        return [Trace.from_dict(json.loads(r["trace_json"])) for r in self._all(sql, [since] if since is not None else [])]

    def session_traces(self, session_id: str) -> list[Any]:
        from ..traces import Trace

        return [Trace.from_dict(json.loads(r["trace_json"]))
                for r in self._all("SELECT trace_json FROM traces WHERE session_id=? ORDER BY "
                                   + ("received_at, trace_id" if self.is_postgres else "rowid"),
                                   (session_id,))]

    @property
    def _arrival(self) -> str:
        """Ties in ``received_at`` (one batch) in arrival order on SQLite; PostgreSQL has no rowid."""
        return "trace_id" if self.is_postgres else "rowid"

    def has_verdict(self, trace_id: str, metric: str, span_id: str | None = None) -> bool:
        """Whether ``metric`` already judged the trace (``span_id``: that span of it)."""
        return bool(self.scored(metric, [trace_id if span_id is None else (trace_id, span_id)]))

    def scored(self, metric: str, subjects: Iterable[str | tuple[str, str | None]]) -> set[Any]:
        """The subjects among ``subjects`` that already have a verdict for ``metric``.

        A subject is a trace id (a trace or session verdict) or a ``(trace_id, span_id)`` pair (a
        span verdict); the answer holds them as they were given."""
        keys = list(dict.fromkeys(subjects))
        found: set[Any] = set()
        with self.lock:
            for i in range(0, len(keys), 500):
                part = keys[i:i + 500]
                tids = list(dict.fromkeys(k if isinstance(k, str) else k[0] for k in part))
                q = ("SELECT trace_id, COALESCE(span_id, '') FROM verdicts WHERE metric=?"
                     f" AND trace_id IN ({','.join('?' * len(tids))})")
                have = {(r[0], r[1]) for r in self.db.execute(q, [metric, *tids])}
                found.update(k for k in part if ((k, "") if isinstance(k, str) else (k[0], k[1] or "")) in have)
        return found

    def add_verdict(self, v: Any, route: str, route_reason: str = "", *, created_at: float | None = None,
                    run_id: int | None = None) -> int | None:
        """Store a verdict; returns its id, or None when (trace, span, metric) was already stored."""
        return self.add_verdicts([(v, route, route_reason)], created_at=created_at, run_id=run_id)[0]

    def add_verdicts(self, items: Iterable[tuple[Any, str, str]], *, created_at: float | None = None,
                     run_id: int | None = None) -> list[int | None]:
        """Store (verdict, route, route_reason) items in one transaction; ids (None: already stored)."""
        now = created_at or time.time()
        ids: list[int | None] = []
        with self.lock, self.db:
            for v, route, route_reason in items:
                details = {**(v.details or {}), **({"probabilities": v.probabilities} if v.probabilities else {})}
                cur = self.db.execute(
                    "INSERT OR IGNORE INTO verdicts (trace_id, span_id, metric, kind, label, passed, score, confidence,"
                    " route, route_reason, reason, details_json, row_json, created_at, run_id)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (v.trace_id, getattr(v, "span_id", None), v.metric, v.kind, v.label, int(bool(v.passed)),
                     v.score, v.confidence, route, route_reason, v.reason, _j(details), _j(v.row), now, run_id))
                ids.append(cur.lastrowid if cur.rowcount else None)
        return ids

    def verdict(self, verdict_id: int) -> dict[str, Any] | None:
        rows = self._verdict_rows("WHERE v.id=?", (verdict_id,))
        return rows[0] if rows else None

    def verdicts(self, metric: str | None = None, *, since: float | None = None, until: float | None = None,
                 trace_id: str | None = None, route: str | None = None, span_id: str | None = None
                 ) -> list[dict[str, Any]]:
        where, args = [], []
        for cond, val in (("v.metric=?", metric), ("v.created_at>=?", since), ("v.created_at<?", until),
                          ("v.trace_id=?", trace_id), ("v.route=?", route), ("v.span_id=?", span_id)):
            if val is not None:
                where.append(cond)
                args.append(val)
        return self._verdict_rows(("WHERE " + " AND ".join(where)) if where else "", args)

    def _verdict_rows(self, where: str, args: Iterable[Any], order: str = "ORDER BY v.id", limit: str = ""
                      ) -> list[dict[str, Any]]:
        """Verdict rows with their reviews (see ``assay.review``): ``review_label`` is the people's label
        (the consensus of each reviewer's latest label; None without one), ``review_status``,
        ``reviews`` (each person's current label), ``judges`` (judge -> label); ``reviewer``,
        ``review_note`` and ``reviewed_at`` are those of the latest person's review."""
        rows = self._all("SELECT v.* FROM verdicts v " + where + " " + order + " " + limit, args)
        by_verdict = self.review_store.rows([r["id"] for r in rows])
        for r in rows:
            r["details"] = _unj(r.pop("details_json"))
            r["row"] = _unj(r.pop("row_json"))
            r["passed"] = bool(r["passed"])
            r.update(summarize_reviews(by_verdict.get(r["id"], [])))
        return rows

    def review_queue(self, metric: str | None = None, *, pending: bool = True, limit: int | None = 50
                     ) -> list[dict[str, Any]]:
        """Verdicts routed to review (oldest first); only those without a person's label when ``pending``
        (a judge's label, reviewer ``judge:...``, leaves a verdict pending)."""
        where = ["v.route='review'"]
        args: list[Any] = []
        if metric:
            where.append("v.metric=?")
            args.append(metric)
        if pending:
            where.append("NOT " + VerdictReviews.PERSON_REVIEWED)
        return self._verdict_rows("WHERE " + " AND ".join(where), args,
                                  limit=f"LIMIT {int(limit)}" if limit else "")

    def add_review(self, verdict_id: int, label: str, reviewer: str | None = None, note: str | None = None) -> int:
        """Append a review (nothing is ever overwritten): a reviewer's latest review is their label."""
        return self.review_store.add(verdict_id, label, reviewer, note)

    def reviews(self, verdict_id: int) -> list[dict[str, Any]]:
        """Every review of one verdict, replaced ones and judges' included, oldest first."""
        return self.review_store.rows([verdict_id]).get(verdict_id, [])

    def reviewed(self, metric: str | None = None) -> list[dict[str, Any]]:
        """Verdicts with a people's label (the consensus of their reviewers), oldest first. A verdict
        whose reviewers are tied is left out (it is in :meth:`disagreements`)."""
        where, args = "WHERE " + VerdictReviews.PERSON_REVIEWED, []
        if metric:
            where += " AND v.metric=?"
            args.append(metric)
        return [v for v in self._verdict_rows(where, args) if v["review_label"] is not None]

    def disagreements(self, metric: str | None = None, *, pending: bool = True, limit: int | None = 50
                      ) -> list[dict[str, Any]]:
        """Verdicts whose reviewers disagree (oldest first): when ``pending``, only those without a
        consensus (a tie), which need a deciding review; else also those a majority settled."""
        where = [VerdictReviews.DISPUTED]
        args: list[Any] = []
        if metric:
            where.append("v.metric=?")
            args.append(metric)
        keep = {TIE} if pending else {TIE, MAJORITY}
        found = [v for v in self._verdict_rows("WHERE " + " AND ".join(where), args) if v["review_status"] in keep]
        return found[:int(limit)] if limit else found

    # --- ingest problems and runs ---------------------------------------------------------------
    def add_problems(self, source: str, problems: Any) -> None:
        for reason, n in problems.counts.items():
            self._exec("INSERT INTO problems (source, reason, count, examples_json, created_at) VALUES (?, ?, ?, ?, ?)",
                       (source, reason, n, _j(problems.examples.get(reason, [])), time.time()))

    def problem_counts(self) -> dict[str, int]:
        rows = self._all("SELECT reason, SUM(count) AS n FROM problems GROUP BY reason")
        return {r["reason"]: int(r["n"]) for r in rows}  # PostgreSQL's SUM is a numeric

    def start_run(self, settings: Mapping[str, Any]) -> int:
        return int(self._exec("INSERT INTO runs (started_at, settings_json) VALUES (?, ?)",
                              (time.time(), _j(settings))).lastrowid)

    def finish_run(self, run_id: int, summary: Mapping[str, Any]) -> None:
        self._exec("UPDATE runs SET finished_at=?, summary_json=? WHERE id=?", (time.time(), _j(summary), run_id))

    def route_counts(self) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {}
        for r in self._all("SELECT metric, route, route_reason, COUNT(*) AS n FROM verdicts"
                           " GROUP BY metric, route, route_reason"):
            key = r["route"] if r["route"] != "review" else f"review:{r['route_reason']}"
            out.setdefault(r["metric"], {})[key] = r["n"]
        return out
