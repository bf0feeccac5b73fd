"""The one schema-migration runner shared by every assay database (registry, monitor store,
provider request cache).

Each store owns an append-only list of :class:`Migration` steps numbered 1, 2, 3...; a released
step is never edited, a schema change is a new step at the end (tests/core/test_schema_pins.py pins
what a fresh database of each store looks like). :func:`migrate` applies the steps a database
has not seen, in order, in one transaction, and records each in a version table
``(version, name, applied_at)`` whose name the store chooses (the monitor keeps ``_migrations``,
the others ``schema_version``), so databases made by older assay versions open unchanged.

The runner works on a DB-API ``sqlite3.Connection`` and on a SQLAlchemy engine or connection
(SQLite or PostgreSQL). Statements may use ``{serial}`` for the dialect's auto-increment
primary key; on PostgreSQL one migrator at a time holds an advisory lock. This module imports
only the standard library (SQLAlchemy lazily, when given a SQLAlchemy object).
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, NamedTuple

__all__ = ["Migration", "current_version", "latest", "migrate", "split_script", "validate"]

_SERIAL = {"sqlite": "INTEGER PRIMARY KEY AUTOINCREMENT", "postgresql": "BIGSERIAL PRIMARY KEY"}
_PG_LOCK = 726107  # the registry's advisory-lock key since its first release: keep it
_Exec = Callable[[str, "dict[str, Any] | None"], list]


class Migration(NamedTuple):
    """One append-only schema step: ``statements`` run in order when ``version`` is missing."""

    version: int
    name: str
    statements: Sequence[str]


def split_script(script: str) -> tuple[str, ...]:
    """The statements of a ``;``-separated SQL script (no ``;`` inside literals)."""
    return tuple(s.strip() for s in script.split(";") if s.strip())


def validate(steps: Sequence[Migration]) -> None:
    """Raise ValueError unless the steps are numbered 1..N in order with distinct names."""
    versions = [s.version for s in steps]
    if versions != list(range(1, len(steps) + 1)):
        raise ValueError(f"migration versions must be 1..{len(steps)} in order, got {versions}")
    names = [s.name for s in steps]
    if len(set(names)) != len(names):
        raise ValueError(f"migration names must be distinct, got {names}")


def latest(steps: Sequence[Migration]) -> int:
    """The schema version a database has once every step is applied (0 for no steps)."""
    return steps[-1].version if steps else 0


def _table_name(table: str) -> str:
    if not table.isidentifier():
        raise ValueError(f"not a plain table name: {table!r}")
    return table


@contextmanager
def _session(target: Any, write: bool = True) -> Iterator[tuple[_Exec, str]]:
    """``(execute, dialect)`` inside one transaction on ``target``: committed on success, rolled
    back on error. A transaction the caller already opened is joined and left to the caller.
    A sqlite3 read (``write=False``) runs without opening a transaction."""
    if isinstance(target, sqlite3.Connection):
        def run(sql: str, params: dict[str, Any] | None = None) -> list:
            return target.execute(sql, params or {}).fetchall()

        own = write and (getattr(target, "autocommit", None) is False or not target.in_transaction)
        if own and not target.in_transaction:
            target.execute("BEGIN IMMEDIATE")  # writers queue here, so a second migrator sees our steps
        try:
            yield run, "sqlite"
        except BaseException:
            if own:
                target.rollback()
            raise
        if own:
            target.commit()
        return

    from sqlalchemy import text
    from sqlalchemy.engine import Engine

    @contextmanager
    def _begin() -> Iterator[Any]:
        if isinstance(target, Engine):
            with (target.begin() if write else target.connect()) as conn:
                yield conn
        elif target.in_transaction():
            yield target
        else:
            with target.begin():
                yield target

    with _begin() as conn:
        def run(sql: str, params: dict[str, Any] | None = None) -> list:
            result = conn.execute(text(sql), params or {})
            return result.fetchall() if result.returns_rows else []

        yield run, conn.dialect.name


def _read_version(run: _Exec, dialect: str, table: str) -> int:
    if dialect == "sqlite":
        exists = run("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = :t", {"t": table})
    else:
        exists = run("SELECT 1 FROM information_schema.tables WHERE table_schema = current_schema()"
                     " AND table_name = :t", {"t": table})
    if not exists:
        return 0
    return int(run(f"SELECT COALESCE(MAX(version), 0) FROM {table}")[0][0] or 0)


def current_version(target: Any, *, table: str = "schema_version") -> int:
    """The highest step recorded in ``table`` (0 when the table does not exist); writes nothing."""
    with _session(target, write=False) as (run, dialect):
        return _read_version(run, dialect, _table_name(table))


def migrate(target: Any, steps: Sequence[Migration], *, table: str = "schema_version",
            upto: int | None = None) -> list[int]:
    """Apply the steps (up to version ``upto``, default all) that ``table`` does not record yet,
    in order and in one transaction; returns the versions applied (``[]``: already up to date).

    ``target`` is a ``sqlite3.Connection`` or a SQLAlchemy engine/connection."""
    validate(steps)
    table = _table_name(table)
    applied: list[int] = []
    with _session(target) as (run, dialect):
        if dialect == "postgresql":  # one migrator at a time across processes
            run(f"SELECT pg_advisory_xact_lock({_PG_LOCK})")
        run(f"CREATE TABLE IF NOT EXISTS {table} (version INTEGER PRIMARY KEY, name TEXT NOT NULL, "
            "applied_at DOUBLE PRECISION NOT NULL)")
        have = _read_version(run, dialect, table)
        serial = _SERIAL.get(dialect, _SERIAL["postgresql"])
        for step in steps:
            if step.version <= have or (upto is not None and step.version > upto):
                continue
            for statement in step.statements:
                run(statement.replace("{serial}", serial))
            run(f"INSERT INTO {table} (version, name, applied_at) VALUES (:v, :n, :t)",
                {"v": step.version, "n": step.name, "t": time.time()})
            applied.append(step.version)
    return applied
