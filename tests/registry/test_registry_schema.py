"""The registry schema: migrations from empty produce exactly the tables the code uses, on
SQLite and PostgreSQL, and re-running is a no-op. The schema pin and the rule that released
steps never change are shared by all stores in tests/core/test_schema_pins.py."""

from __future__ import annotations

from sqlalchemy import inspect, text

from assay.registry import MIGRATIONS, SCHEMA_VERSION, make_engine, migrate
from assay.registry._db import metadata


def test_migrations_from_empty_match_the_tables(registry_db):
    engine = make_engine(registry_db)
    try:
        assert migrate(engine) == [v for v, _, _ in MIGRATIONS]
        assert SCHEMA_VERSION == MIGRATIONS[-1].version
        insp = inspect(engine)
        tables = set(insp.get_table_names())
        assert tables == set(metadata.tables) | {"schema_version"}
        for name, table in metadata.tables.items():
            cols = {c["name"]: c for c in insp.get_columns(name)}
            assert set(cols) == {c.name for c in table.columns}, name
            for c in table.columns:
                if not c.primary_key:
                    assert cols[c.name]["nullable"] == c.nullable, f"{name}.{c.name} nullability"
            pk = insp.get_pk_constraint(name)["constrained_columns"]
            assert pk == [c.name for c in table.primary_key.columns], name
        # the expected tables of the issue exist with their key columns
        ds_cols = {c["name"] for c in insp.get_columns("datasets")}
        assert {"content_hash", "row_count", "label_counts", "location"} <= ds_cols
        assert {"config", "status", "failure_reason", "metrics_summary", "artifact_location", "heartbeat_at"} <= {
            c["name"] for c in insp.get_columns("runs")}
        assert {"name", "version", "immutable", "run_id", "threshold", "operator"} <= {
            c["name"] for c in insp.get_columns("metrics")}
        assert {"key_hash"} <= {c["name"] for c in insp.get_columns("api_keys")}
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT version FROM schema_version ORDER BY version")).scalars().all()
        assert rows == [v for v, _, _ in MIGRATIONS]
        assert migrate(engine) == []  # idempotent
    finally:
        engine.dispose()


def test_serial_ids_work_on_both_dialects(registry_db):
    engine = make_engine(registry_db)
    try:
        migrate(engine)
        with engine.begin() as conn:
            conn.execute(text("INSERT INTO projects (id, name, description, created_at) VALUES ('p', 'p', '', 0)"))
            conn.execute(text("INSERT INTO runs (id, project_id, name, metric_name, config, status, progress, message,"
                              " cancel_requested, created_at, updated_at) VALUES ('r', 'p', 'r', 'm', '{}', 'queued',"
                              " 0, '', 0, 0, 0)"))
            for i in range(3):
                conn.execute(text("INSERT INTO run_events (run_id, at, kind, message) VALUES ('r', :i, 'log', 'x')"),
                             {"i": i})
            ids = conn.execute(text("SELECT id FROM run_events ORDER BY id")).scalars().all()
        assert len(ids) == 3 and ids == sorted(set(ids))
    finally:
        engine.dispose()
