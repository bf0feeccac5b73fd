"""The shared migration runner (assay._migrate) on its own: ordering, ``upto``, one transaction,
step-list validation, and both connection kinds (sqlite3 and SQLAlchemy)."""

from __future__ import annotations

import sqlite3

import pytest

from assay._migrate import Migration, current_version, migrate, split_script, validate

STEPS = [
    Migration(1, "a", ["CREATE TABLE a (id {serial}, x TEXT)"]),
    Migration(2, "b", split_script("CREATE TABLE b (y TEXT); CREATE INDEX ix_b ON b (y);")),
]


def _tables(db: sqlite3.Connection) -> set[str]:
    return {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'"
                                     " AND name NOT LIKE 'sqlite_%'")}


def test_upto_then_the_rest_then_nothing(tmp_path):
    db = sqlite3.connect(tmp_path / "x.db")
    assert current_version(db) == 0
    assert migrate(db, STEPS, upto=1) == [1]
    assert _tables(db) == {"schema_version", "a"}
    assert migrate(db, STEPS, table="schema_version") == [2]
    assert migrate(db, STEPS) == []
    assert current_version(db) == 2 and not db.in_transaction
    db.execute("INSERT INTO a (x) VALUES ('v')")  # {serial} became an auto-increment key
    assert db.execute("SELECT id FROM a").fetchone()[0] == 1
    db.close()


def test_a_failing_step_rolls_back_everything(tmp_path):
    db = sqlite3.connect(tmp_path / "x.db")
    bad = [STEPS[0], Migration(2, "bad", ["CREATE TABLE c (z TEXT)", "NOT SQL"])]
    with pytest.raises(sqlite3.OperationalError):
        migrate(db, bad, table="_migrations")
    assert _tables(db) == set() and current_version(db, table="_migrations") == 0
    db.close()


def test_step_lists_must_be_append_only():
    with pytest.raises(ValueError, match="1..2"):
        validate([STEPS[1], STEPS[0]])
    with pytest.raises(ValueError, match="distinct"):
        validate([Migration(1, "a", []), Migration(2, "a", [])])
    with pytest.raises(ValueError, match="table name"):
        migrate(sqlite3.connect(":memory:"), STEPS, table="x; DROP TABLE a")


def test_sqlalchemy_engine_and_connection(tmp_path):
    from sqlalchemy import create_engine, text

    engine = create_engine(f"sqlite:///{tmp_path / 'x.db'}")
    try:
        assert migrate(engine, STEPS, upto=1) == [1]
        with engine.connect() as conn:
            assert current_version(conn) == 1
            assert migrate(conn, STEPS) == [2]
        assert current_version(engine) == 2
        with engine.connect() as conn:
            assert conn.execute(text("SELECT COUNT(*) FROM schema_version")).scalar() == 2
    finally:
        engine.dispose()
