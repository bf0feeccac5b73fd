"""The monitor's SQLite store: migrations (pinned in tests/core/test_schema_pins.py), verdicts, reviews, problems."""

from __future__ import annotations

import sqlite3

import pytest

from assay.errors import AssayError
from assay.monitor import MIGRATIONS, Store
from assay.monitor._store import default_db


def _schema(db: sqlite3.Connection) -> dict[str, list[str]]:
    tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table' AND name NOT LIKE 'sqlite_%'")]
    return {t: [c[1] for c in db.execute(f"PRAGMA table_info({t})")] for t in sorted(tables)}


def test_fresh_database_schema(tmp_path):
    s = Store(tmp_path / "m.db")
    assert s.version() == len(MIGRATIONS)
    schema = _schema(s.db)
    assert set(schema) >= {"_migrations", "checks", "traces", "verdicts", "reviews", "problems", "runs"}
    assert schema["verdicts"][:14] == ["id", "trace_id", "metric", "kind", "label", "passed", "score", "confidence",
                                       "route", "route_reason", "reason", "details_json", "row_json", "created_at"]
    assert "run_id" in schema["verdicts"]
    assert schema["reviews"] == ["id", "verdict_id", "label", "reviewer", "note", "created_at"]
    s.close()


def test_old_database_is_upgraded_in_place(tmp_path):
    path = tmp_path / "old.db"
    s = Store.__new__(Store)  # a database left at version 1 by an older assay
    s.path, s.db = path, sqlite3.connect(str(path), check_same_thread=False)
    s.db.row_factory = sqlite3.Row
    import threading

    s.lock = threading.RLock()
    assert s.migrate(upto=1) == 1
    s.db.execute("INSERT INTO verdicts (trace_id, metric, kind, label, passed, route, created_at)"
                 " VALUES ('t1', 'pii', 'evaluator', 'true', 0, 'review', 1.0)")
    s.db.commit()
    s.close()
    s2 = Store(path)
    assert s2.version() == len(MIGRATIONS)
    rows = s2.verdicts("pii")
    assert rows[0]["trace_id"] == "t1" and rows[0]["run_id"] is None
    s2.close()


def test_newer_database_is_refused(tmp_path):
    s = Store(tmp_path / "m.db")
    s.db.execute("INSERT INTO _migrations VALUES (99, 'future', 0)")
    s.db.commit()
    s.close()
    with pytest.raises(AssayError, match="upgrade assay"):
        Store(tmp_path / "m.db")


def test_default_db_under_assay_home(tmp_path, monkeypatch):
    monkeypatch.setenv("ASSAY_HOME", str(tmp_path / "home"))
    assert default_db() == tmp_path / "home" / "monitor.db"
    s = Store()
    assert s.path.exists()
    s.close()


# the store's API on SQLite and PostgreSQL: test_monitor_workers.py::test_store_api
