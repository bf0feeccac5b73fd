"""Append-only schema migrations for the registry database.

Each step is ``(version, name, statements)``. A released step is never edited: change the
schema by appending a new step. Statements are plain SQL that SQLite and PostgreSQL both
accept; ``{serial}`` becomes the dialect's auto-increment primary key. Timestamps are epoch
seconds (``DOUBLE PRECISION``), JSON is stored as ``TEXT``, booleans as ``INTEGER`` 0/1.
The ``schema_version`` table records which steps were applied and when; the shared runner
``assay._migrate`` applies the steps (tests/core/test_schema_pins.py pins the resulting schema).
"""

from __future__ import annotations

from typing import Any

from .. import _migrate
from .._migrate import Migration

MIGRATIONS: list[Migration] = [
    Migration(1, "initial schema", [
        """CREATE TABLE projects (
            id TEXT PRIMARY KEY,
            name TEXT NOT NULL UNIQUE,
            description TEXT NOT NULL DEFAULT '',
            created_at DOUBLE PRECISION NOT NULL
        )""",
        """CREATE TABLE datasets (
            id TEXT PRIMARY KEY,
            project_id TEXT NOT NULL REFERENCES projects(id),
            name TEXT NOT NULL,
            kind TEXT NOT NULL,
            format TEXT NOT NULL,
            filename TEXT NOT NULL,
            content_hash TEXT NOT NULL,
            file_sha256 TEXT NOT NULL,
            size_bytes BIGINT NOT NULL,
            row_count INTEGER NOT NULL,
            dropped_duplicates INTEGER NOT NULL DEFAULT 0,
            label_counts TEXT NOT NULL DEFAULT '{}',
            warnings TEXT NOT NULL DEFAULT '[]',
            metric TEXT,
            columns_map TEXT NOT NULL DEFAULT '{}',
            label_map TEXT NOT NULL DEFAULT '{}',
            location TEXT NOT NULL,
            original_location TEXT NOT NULL,
            created_at DOUBLE PRECISION NOT NULL
        )""",
        "CREATE INDEX ix_datasets_project ON datasets (project_id)",
        """CREATE TABLE runs (
            id TEXT PRIMARY KEY,
            project_id TEXT NOT NULL REFERENCES projects(id),
            name TEXT NOT NULL,
            metric_name TEXT NOT NULL,
            config TEXT NOT NULL,
            status TEXT NOT NULL,
            stage TEXT,
            progress DOUBLE PRECISION NOT NULL DEFAULT 0,
            message TEXT NOT NULL DEFAULT '',
            failure_reason TEXT,
            metrics_summary TEXT,
            artifact_location TEXT,
            cancel_requested INTEGER NOT NULL DEFAULT 0,
            worker_id TEXT,
            worker_host TEXT,
            worker_pid INTEGER,
            heartbeat_at DOUBLE PRECISION,
            created_at DOUBLE PRECISION NOT NULL,
            started_at DOUBLE PRECISION,
            finished_at DOUBLE PRECISION,
            updated_at DOUBLE PRECISION NOT NULL
        )""",
        "CREATE INDEX ix_runs_status ON runs (status)",
        "CREATE INDEX ix_runs_project ON runs (project_id)",
        """CREATE TABLE run_events (
            id {serial},
            run_id TEXT NOT NULL REFERENCES runs(id),
            at DOUBLE PRECISION NOT NULL,
            kind TEXT NOT NULL,
            status TEXT,
            stage TEXT,
            fraction DOUBLE PRECISION,
            message TEXT NOT NULL DEFAULT ''
        )""",
        "CREATE INDEX ix_run_events_run ON run_events (run_id, id)",
        """CREATE TABLE metrics (
            id TEXT PRIMARY KEY,
            name TEXT NOT NULL,
            version INTEGER NOT NULL,
            full_name TEXT NOT NULL UNIQUE,
            project_id TEXT NOT NULL REFERENCES projects(id),
            run_id TEXT NOT NULL UNIQUE REFERENCES runs(id),
            description TEXT NOT NULL DEFAULT '',
            spec TEXT NOT NULL,
            labels TEXT NOT NULL,
            threshold DOUBLE PRECISION,
            operator TEXT NOT NULL DEFAULT '>=',
            artifact_location TEXT NOT NULL,
            artifact_sha256 TEXT NOT NULL,
            summary TEXT,
            immutable INTEGER NOT NULL DEFAULT 1,
            created_at DOUBLE PRECISION NOT NULL,
            UNIQUE (name, version)
        )""",
        """CREATE TABLE review_items (
            id TEXT PRIMARY KEY,
            dataset_id TEXT NOT NULL REFERENCES datasets(id),
            position INTEGER NOT NULL,
            row_data TEXT NOT NULL,
            proposed_label TEXT,
            created_at DOUBLE PRECISION NOT NULL,
            UNIQUE (dataset_id, position)
        )""",
        """CREATE TABLE review_decisions (
            id {serial},
            item_id TEXT NOT NULL REFERENCES review_items(id),
            decision TEXT NOT NULL,
            label TEXT,
            reviewer TEXT NOT NULL DEFAULT '',
            note TEXT NOT NULL DEFAULT '',
            created_at DOUBLE PRECISION NOT NULL
        )""",
        "CREATE INDEX ix_review_decisions_item ON review_decisions (item_id, id)",
        """CREATE TABLE api_keys (
            id TEXT PRIMARY KEY,
            name TEXT NOT NULL,
            prefix TEXT NOT NULL,
            key_hash TEXT NOT NULL UNIQUE,
            created_at DOUBLE PRECISION NOT NULL,
            last_used_at DOUBLE PRECISION,
            revoked_at DOUBLE PRECISION
        )""",
    ]),
    Migration(2, "project members and roles, worker liveness, per-file artifact hashes", [
        "ALTER TABLE api_keys ADD COLUMN global_role TEXT",
        "UPDATE api_keys SET global_role = 'admin'",
        """CREATE TABLE key_projects (
            key_id TEXT NOT NULL REFERENCES api_keys(id),
            project_id TEXT NOT NULL REFERENCES projects(id),
            role TEXT NOT NULL,
            created_at DOUBLE PRECISION NOT NULL,
            PRIMARY KEY (key_id, project_id)
        )""",
        "CREATE INDEX ix_key_projects_project ON key_projects (project_id)",
        "ALTER TABLE metrics ADD COLUMN artifact_files TEXT",
        """CREATE TABLE workers (
            id TEXT PRIMARY KEY,
            host TEXT NOT NULL,
            pid INTEGER NOT NULL,
            started_at DOUBLE PRECISION NOT NULL,
            last_seen DOUBLE PRECISION NOT NULL,
            run_id TEXT,
            stopped_at DOUBLE PRECISION
        )""",
    ]),
    Migration(3, "judge-prompt tuning jobs kept across server restarts", [
        """CREATE TABLE judge_tunings (
            id TEXT PRIMARY KEY,
            project_id TEXT NOT NULL REFERENCES projects(id),
            metric_name TEXT NOT NULL,
            status TEXT NOT NULL,
            owner TEXT NOT NULL,
            created_at DOUBLE PRECISION NOT NULL,
            updated_at DOUBLE PRECISION NOT NULL,
            job TEXT NOT NULL
        )""",
        "CREATE INDEX ix_judge_tunings_metric ON judge_tunings (metric_name, created_at)",
        "CREATE INDEX ix_judge_tunings_status ON judge_tunings (status)",
    ]),
]

LATEST = _migrate.latest(MIGRATIONS)


def current_version(conn: Any) -> int:
    """The registry schema version of a SQLAlchemy engine or connection (0: empty database)."""
    return _migrate.current_version(conn, table="schema_version")


def migrate(engine: Any) -> list[int]:
    """Apply the steps the database has not seen, in one locked transaction; returns their versions."""
    return _migrate.migrate(engine, MIGRATIONS, table="schema_version")
