"""The monitor's SQLite store: migrations (pinned in tests/core/test_schema_pins.py), verdicts, reviews, problems."""

from __future__ import annotations

import sqlite3

import pytest

from assay.errors import AssayError
from assay.monitor import MIGRATIONS, Store, Verdict
from assay.monitor._store import default_db
from assay.traces import Problems


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


def test_verdicts_reviews_and_queue(tmp_path):
    s = Store(tmp_path / "m.db")
    s.register_check("pii", "evaluator", spec={"labels": ["true", "false"]}, eval_kappa=0.8)
    s.register_check("pii", "evaluator", spec={"labels": ["true", "false"]})  # keeps the kappa
    assert s.checks()["pii"]["eval_kappa"] == 0.8
    v = Verdict("t1", "pii", "evaluator", "true", False, score=0.55, confidence=0.55,
                probabilities={"true": 0.55, "false": 0.45}, row={"id": "t1", "input": "x"})
    vid = s.add_verdict(v, "review", "uncertain", created_at=100.0)
    assert s.add_verdict(v, "review", "uncertain") is None  # one verdict per (trace, metric)
    assert s.has_verdict("t1", "pii") and not s.has_verdict("t2", "pii")
    s.add_verdict(Verdict("t2", "pii", "evaluator", "false", True, score=0.1, confidence=0.9), "recorded", "pass")
    queue = s.review_queue()
    assert [q["id"] for q in queue] == [vid] and queue[0]["details"]["probabilities"]["true"] == 0.55
    s.add_review(vid, "false", "ana")
    s.add_review(vid, "true", "ana")  # a reviewer's latest label replaces theirs (both are kept)
    assert s.review_queue() == []
    got = s.reviewed("pii")
    assert len(got) == 1 and got[0]["review_label"] == "true" and got[0]["reviewer"] == "ana"
    s.add_review(vid, "false", "bo")  # another reviewer disagrees: a tie, no people's label (see test_agreement)
    assert s.reviewed("pii") == [] and [v["id"] for v in s.disagreements("pii")] == [vid]
    assert len(s.reviews(vid)) == 3
    assert s.route_counts() == {"pii": {"review:uncertain": 1, "recorded": 1}}
    p = Problems()
    p.add("invalid_json", "f:1", "bad")
    p.add("invalid_json", "f:2", "bad")
    s.add_problems("f", p)
    assert s.problem_counts() == {"invalid_json": 2}
    s.close()
