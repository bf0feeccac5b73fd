"""The monitor's SQLite store: traces, verdicts with their route, human reviews, ingest problems.

Reviews are append-only, several per verdict (several reviewers, replaced labels, judges' labels);
which of them make a verdict's people's label is decided in ``_consensus``.

Migrations are append-only: never edit one that has shipped, add a new one at the end
(tests/core/test_schema_pins.py pins the schema). The shared runner ``assay._migrate`` applies
them and records them in the ``_migrations`` table.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any, Iterable, Mapping

from .. import _migrate
from .._migrate import Migration, split_script
from ..errors import AssayError
from ._consensus import MAJORITY, TIE, clean_reviewer, summarize_reviews

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
]
_TABLE = "_migrations"  # the monitor's version table since its first release
# a person's review, not a judge's (reviewer ``judge:...``, see ``_consensus``); LIKE ignores ASCII case
_HUMAN = "(reviewer IS NULL OR reviewer NOT LIKE 'judge:%')"


def default_db() -> Path:
    from .._files import assay_home

    return assay_home() / "monitor.db"


def _j(v: Any) -> str | None:
    return None if v is None else json.dumps(v, ensure_ascii=False, default=str)


def _unj(v: str | None) -> Any:
    return None if v is None else json.loads(v)


class Store:
    """One SQLite file; safe to share between the threads of one process."""

    def __init__(self, path: str | Path | None = None):
        self.path = Path(path) if path else default_db()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.db = sqlite3.connect(str(self.path), check_same_thread=False, timeout=30)
        except sqlite3.Error as exc:
            raise AssayError("a writable SQLite file for the monitor", f"{self.path} ({exc})",
                             "pass --db with a writable path", code="invalid_input") from None
        self.db.row_factory = sqlite3.Row
        self.lock = threading.RLock()
        with self.lock:
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")  # durable with WAL up to the last checkpoint
            self.db.execute("PRAGMA foreign_keys=ON")
        self.migrate()

    # --- schema ---------------------------------------------------------------------------------
    def version(self) -> int:
        """The schema version of this database (0: empty)."""
        with self.lock:
            return _migrate.current_version(self.db, table=_TABLE)

    def migrate(self, upto: int | None = None) -> int:
        """Apply the migrations not applied yet (up to ``upto``); returns the schema version."""
        latest = _migrate.latest(MIGRATIONS)
        with self.lock:
            current = self.version()
            if current > latest:
                raise AssayError(f"a monitor database at schema version <= {latest}", f"version {current}",
                                 "upgrade assay, or use another --db", code="invalid_input")
            _migrate.migrate(self.db, MIGRATIONS, table=_TABLE, upto=upto)
            return self.version()

    def close(self) -> None:
        with self.lock:
            self.db.close()

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
        sql += " ORDER BY received_at, rowid" + (f" LIMIT {int(limit)}" if limit else "")
        return [Trace.from_dict(json.loads(r["trace_json"])) for r in self._all(sql, [since] if since is not None else [])]

    def session_traces(self, session_id: str) -> list[Any]:
        from ..traces import Trace

        return [Trace.from_dict(json.loads(r["trace_json"]))
                for r in self._all("SELECT trace_json FROM traces WHERE session_id=? ORDER BY rowid", (session_id,))]

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
        """Verdict rows with their reviews (see ``_consensus``): ``review_label`` is the people's label
        (the consensus of each reviewer's latest label; None without one), ``review_status``,
        ``reviews`` (each person's current label), ``judges`` (judge -> label); ``reviewer``,
        ``review_note`` and ``reviewed_at`` are those of the latest person's review."""
        rows = self._all("SELECT v.* FROM verdicts v " + where + " " + order + " " + limit, args)
        by_verdict = self._reviews_of([r["id"] for r in rows])
        for r in rows:
            r["details"] = _unj(r.pop("details_json"))
            r["row"] = _unj(r.pop("row_json"))
            r["passed"] = bool(r["passed"])
            r.update(summarize_reviews(by_verdict.get(r["id"], [])))
        return rows

    def _reviews_of(self, verdict_ids: list[int]) -> dict[int, list[dict[str, Any]]]:
        out: dict[int, list[dict[str, Any]]] = {}
        with self.lock:
            for i in range(0, len(verdict_ids), 500):
                part = verdict_ids[i:i + 500]
                for r in self.db.execute(f"SELECT * FROM reviews WHERE verdict_id IN ({','.join('?' * len(part))})"
                                         " ORDER BY id", part):
                    out.setdefault(r["verdict_id"], []).append(dict(r))
        return out

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
            where.append(f"NOT EXISTS (SELECT 1 FROM reviews WHERE verdict_id=v.id AND {_HUMAN})")
        return self._verdict_rows("WHERE " + " AND ".join(where), args,
                                  limit=f"LIMIT {int(limit)}" if limit else "")

    def add_review(self, verdict_id: int, label: str, reviewer: str | None = None, note: str | None = None) -> int:
        """Append a review (nothing is ever overwritten): a reviewer's latest review is their label."""
        cur = self._exec("INSERT INTO reviews (verdict_id, label, reviewer, note, created_at) VALUES (?, ?, ?, ?, ?)",
                         (verdict_id, label, clean_reviewer(reviewer), note, time.time()))
        return int(cur.lastrowid)

    def reviews(self, verdict_id: int) -> list[dict[str, Any]]:
        """Every review of one verdict, replaced ones and judges' included, oldest first."""
        return self._all("SELECT * FROM reviews WHERE verdict_id=? ORDER BY id", (verdict_id,))

    def reviewed(self, metric: str | None = None) -> list[dict[str, Any]]:
        """Verdicts with a people's label (the consensus of their reviewers), oldest first. A verdict
        whose reviewers are tied is left out (it is in :meth:`disagreements`)."""
        where, args = f"WHERE EXISTS (SELECT 1 FROM reviews WHERE verdict_id=v.id AND {_HUMAN})", []
        if metric:
            where += " AND v.metric=?"
            args.append(metric)
        return [v for v in self._verdict_rows(where, args) if v["review_label"] is not None]

    def disagreements(self, metric: str | None = None, *, pending: bool = True, limit: int | None = 50
                      ) -> list[dict[str, Any]]:
        """Verdicts whose reviewers disagree (oldest first): when ``pending``, only those without a
        consensus (a tie), which need a deciding review; else also those a majority settled."""
        where = [f"v.id IN (SELECT verdict_id FROM reviews WHERE {_HUMAN} GROUP BY verdict_id"
                 " HAVING COUNT(DISTINCT COALESCE(reviewer, '')) >= 2)"]
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
        return {r["reason"]: r["n"] for r in self._all("SELECT reason, SUM(count) AS n FROM problems GROUP BY reason")}

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
