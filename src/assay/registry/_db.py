"""The registry database: where it lives, how to connect, and its tables (SQLAlchemy Core).

SQLite at ``$ASSAY_HOME/assay.db`` by default (``ASSAY_HOME`` defaults to ``~/.assay``);
PostgreSQL (or anything SQLAlchemy speaks) by URL, e.g. ``postgresql://user@host/assay``.
The tables below mirror what ``_migrations.MIGRATIONS`` creates; the schema test checks
that they agree.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .._files import assay_home
from ..errors import AssayError, require

require("sqlalchemy", "the registry database", extra="registry")

from sqlalchemy import (  # noqa: E402
    BigInteger,
    Column,
    Engine,
    Float,
    Integer,
    MetaData,
    Table,
    Text,
    create_engine,
    event,
)

metadata = MetaData()


def _ts(name: str, nullable: bool = True) -> Column:
    return Column(name, Float, nullable=nullable)


projects = Table(
    "projects", metadata,
    Column("id", Text, primary_key=True),
    Column("name", Text, nullable=False, unique=True),
    Column("description", Text, nullable=False),
    _ts("created_at", False),
)

datasets = Table(
    "datasets", metadata,
    Column("id", Text, primary_key=True),
    Column("project_id", Text, nullable=False),
    Column("name", Text, nullable=False),
    Column("kind", Text, nullable=False),
    Column("format", Text, nullable=False),
    Column("filename", Text, nullable=False),
    Column("content_hash", Text, nullable=False),
    Column("file_sha256", Text, nullable=False),
    Column("size_bytes", BigInteger, nullable=False),
    Column("row_count", Integer, nullable=False),
    Column("dropped_duplicates", Integer, nullable=False),
    Column("label_counts", Text, nullable=False),
    Column("warnings", Text, nullable=False),
    Column("metric", Text),
    Column("columns_map", Text, nullable=False),
    Column("label_map", Text, nullable=False),
    Column("location", Text, nullable=False),
    Column("original_location", Text, nullable=False),
    _ts("created_at", False),
)

runs = Table(
    "runs", metadata,
    Column("id", Text, primary_key=True),
    Column("project_id", Text, nullable=False),
    Column("name", Text, nullable=False),
    Column("metric_name", Text, nullable=False),
    Column("config", Text, nullable=False),
    Column("status", Text, nullable=False),
    Column("stage", Text),
    Column("progress", Float, nullable=False),
    Column("message", Text, nullable=False),
    Column("failure_reason", Text),
    Column("metrics_summary", Text),
    Column("artifact_location", Text),
    Column("cancel_requested", Integer, nullable=False),
    Column("worker_id", Text),
    Column("worker_host", Text),
    Column("worker_pid", Integer),
    _ts("heartbeat_at"),
    _ts("created_at", False),
    _ts("started_at"),
    _ts("finished_at"),
    _ts("updated_at", False),
)

run_events = Table(
    "run_events", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("run_id", Text, nullable=False),
    _ts("at", False),
    Column("kind", Text, nullable=False),
    Column("status", Text),
    Column("stage", Text),
    Column("fraction", Float),
    Column("message", Text, nullable=False),
)

metrics = Table(
    "metrics", metadata,
    Column("id", Text, primary_key=True),
    Column("name", Text, nullable=False),
    Column("version", Integer, nullable=False),
    Column("full_name", Text, nullable=False, unique=True),
    Column("project_id", Text, nullable=False),
    Column("run_id", Text, nullable=False, unique=True),
    Column("description", Text, nullable=False),
    Column("spec", Text, nullable=False),
    Column("labels", Text, nullable=False),
    Column("threshold", Float),
    Column("operator", Text, nullable=False),
    Column("artifact_location", Text, nullable=False),
    Column("artifact_sha256", Text, nullable=False),
    Column("summary", Text),
    Column("immutable", Integer, nullable=False),
    _ts("created_at", False),
    Column("artifact_files", Text),  # JSON {relative path: sha256} recorded at registration
)

review_items = Table(
    "review_items", metadata,
    Column("id", Text, primary_key=True),
    Column("dataset_id", Text, nullable=False),
    Column("position", Integer, nullable=False),
    Column("row_data", Text, nullable=False),
    Column("proposed_label", Text),
    _ts("created_at", False),
)

review_decisions = Table(
    "review_decisions", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("item_id", Text, nullable=False),
    Column("decision", Text, nullable=False),
    Column("label", Text),
    Column("reviewer", Text, nullable=False),
    Column("note", Text, nullable=False),
    _ts("created_at", False),
)

api_keys = Table(
    "api_keys", metadata,
    Column("id", Text, primary_key=True),
    Column("name", Text, nullable=False),
    Column("prefix", Text, nullable=False),
    Column("key_hash", Text, nullable=False, unique=True),
    _ts("created_at", False),
    _ts("last_used_at"),
    _ts("revoked_at"),
    Column("global_role", Text),  # "admin" for an operator key (every project); None: scoped to key_projects
)

key_projects = Table(
    "key_projects", metadata,
    Column("key_id", Text, primary_key=True),
    Column("project_id", Text, primary_key=True),
    Column("role", Text, nullable=False),
    _ts("created_at", False),
)

workers = Table(
    "workers", metadata,
    Column("id", Text, primary_key=True),
    Column("host", Text, nullable=False),
    Column("pid", Integer, nullable=False),
    _ts("started_at", False),
    _ts("last_seen", False),
    Column("run_id", Text),
    _ts("stopped_at"),
)

judge_tunings = Table(
    "judge_tunings", metadata,
    Column("id", Text, primary_key=True),
    Column("project_id", Text, nullable=False),
    Column("metric_name", Text, nullable=False),
    Column("status", Text, nullable=False),
    Column("owner", Text, nullable=False),
    _ts("created_at", False),
    _ts("updated_at", False),
    Column("job", Text, nullable=False),
)


def default_url() -> str:
    """``$ASSAY_DATABASE_URL``, else SQLite at ``$ASSAY_HOME/assay.db``."""
    return os.environ.get("ASSAY_DATABASE_URL") or f"sqlite:///{assay_home() / 'assay.db'}"


def normalize_url(url: str | None) -> str:
    """A SQLAlchemy URL: a bare path means SQLite; ``postgresql://`` uses psycopg 3."""
    url = url or default_url()
    if "://" not in url:
        return f"sqlite:///{Path(url).expanduser().resolve()}"
    if url.startswith(("postgresql://", "postgres://")):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


def _has_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return any(_has_nul(v) for v in value)
    return False


def _refuse_nul(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool) -> None:
    """PostgreSQL cannot store a NUL character in TEXT and SQLite would store it silently; refuse it
    the same way on both, as bad input (HTTP 422), before it reaches the database."""
    if _has_nul(parameters):
        raise AssayError("text without NUL characters", "a NUL character (\\x00) in a name, id or text field",
                         "remove the NUL character from the request", code="invalid_input")


def make_engine(url: str | None = None) -> Engine:
    """An engine for the registry. SQLite gets WAL, a busy timeout, and ``BEGIN IMMEDIATE``
    transactions so that read-then-write sequences (claiming a run) never race. Text with a NUL
    character is refused on every dialect (see ``_refuse_nul``)."""
    engine = _make_engine(url)
    event.listen(engine, "before_cursor_execute", _refuse_nul)
    return engine


def _make_engine(url: str | None = None) -> Engine:
    url = normalize_url(url)
    if url.startswith("sqlite"):
        path = url.split(":///", 1)[1] if ":///" in url else ""
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.isolation_level = None  # let SQLAlchemy's "begin" event issue BEGIN
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        @event.listens_for(engine, "begin")
        def _on_begin(conn: Any) -> None:
            conn.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    if url.startswith("postgresql"):
        require("psycopg", "a PostgreSQL registry", extra="registry", package="psycopg[binary]")
    try:
        return create_engine(url, pool_pre_ping=True)
    except Exception as exc:  # bad URL or unknown driver
        raise AssayError("a database URL such as sqlite:///path/assay.db or postgresql://user@host/db",
                         f"'{url}' ({exc})", "pass --db with a valid URL", code="invalid_config") from None
