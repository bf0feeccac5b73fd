"""Where a monitor store lives, and the PostgreSQL connection it uses.

A store is a SQLite file (a plain path or ``sqlite:///path``, as always) or a PostgreSQL database by
URL, in the registry's forms (``postgresql://user@host/db``, ``postgres://``, ``postgresql+psycopg://``;
``assay.registry``'s ``normalize_url`` reads them). SQLAlchemy and psycopg are optional extras
(``assay[registry]`` + ``psycopg[binary]``), imported only when a PostgreSQL URL is opened.

:class:`PgConnection` is the part of ``sqlite3.Connection`` that the store and
``assay.review.VerdictReviews`` use, over one psycopg connection: ``?`` parameters; ``with db:`` is one
transaction (committed on success, rolled back on error; nested: a savepoint), any other statement
commits by itself; rows read by column name or position (``dict(row)`` works); ``cursor.lastrowid``
of an ``INSERT`` into a table with a serial ``id`` (the statement gets ``RETURNING id``); SQLite's
``INSERT OR IGNORE`` becomes ``ON CONFLICT DO NOTHING`` and ``LIKE`` (case-blind in SQLite) ``ILIKE``.
"""

from __future__ import annotations

import re
import sqlite3
import sys
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

from ..errors import AssayError, require

POSTGRES_SCHEMES = ("postgresql://", "postgres://", "postgresql+")
# the monitor's tables with a serial id: an INSERT into one returns the new id (cursor.lastrowid)
SERIAL_TABLES = frozenset({"verdicts", "reviews", "problems", "runs", "pending_traces"})
_INSERT = re.compile(r"^\s*INSERT\s+(OR\s+IGNORE\s+)?INTO\s+(\w+)", re.IGNORECASE)
_LIKE = re.compile(r"\bLIKE\b")


def is_postgres(target: Any) -> bool:
    """Whether ``target`` (a path or URL) names a PostgreSQL database."""
    return isinstance(target, str) and target.lower().startswith(POSTGRES_SCHEMES)


def driver_errors() -> tuple[type[BaseException], ...]:
    """A database that is down, locked or gone: sqlite3's and (when loaded) psycopg's operational errors."""
    pg = sys.modules.get("psycopg")
    return (sqlite3.OperationalError, *((pg.OperationalError,) if pg is not None else ()))


def store_target(target: str | Path) -> str | Path:
    """A monitor store setting as :class:`Store` takes it: a PostgreSQL URL stays a string (``Path`` would
    fold its ``//``), anything else is a SQLite path."""
    return str(target) if is_postgres(str(target)) else sqlite_path(target)


def store_exists(target: str | Path) -> bool:
    """Whether there is a store to open: a PostgreSQL URL always (opening it says when it is unreachable),
    a SQLite file when the file exists."""
    return is_postgres(str(target)) or sqlite_path(target).exists()


def sqlite_path(target: str | Path) -> Path:
    """The SQLite file of a plain path or a ``sqlite:///path`` URL; any other URL is refused."""
    text = str(target)
    if text.startswith("sqlite:///"):
        return Path(text[len("sqlite:///"):]).expanduser()
    if "://" in text:
        raise AssayError("a monitor store: a SQLite path (or sqlite:///path) or a postgresql:// URL", f"'{text}'",
                         "pass --db/--store with a file path or postgresql://user@host/db", code="invalid_input")
    return Path(text).expanduser()


@lru_cache(maxsize=256)
def pg_sql(sql: str, returning: bool = True) -> tuple[str, bool]:
    """A statement written for ``sqlite3`` in psycopg's terms, and whether it returns the new row's id."""
    m = _INSERT.match(sql)
    out = _LIKE.sub("ILIKE", sql).replace("%", "%%").replace("?", "%s")
    returns_id = False
    if m:
        if m.group(1):
            out = _INSERT.sub(f"INSERT INTO {m.group(2)}", out, count=1) + " ON CONFLICT DO NOTHING"
        if returning and m.group(2).lower() in SERIAL_TABLES and "RETURNING" not in out.upper():
            out += " RETURNING id"
            returns_id = True
    return out, returns_id


class Row(dict):
    """A result row: by column name (a dict) or by position, like ``sqlite3.Row``."""

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, int):
            return list(self.values())[key]
        return dict.__getitem__(self, key)


def _row_factory(cursor: Any) -> Any:
    names = [c.name for c in cursor.description or ()]
    return lambda values: Row(zip(names, values))


class PgCursor:
    """What one statement gave: ``rowcount``, ``lastrowid`` (an insert's new id) and its rows."""

    def __init__(self, cur: Any, returns_id: bool):
        self.cursor = cur
        self.rowcount = cur.rowcount
        self.lastrowid = None
        if returns_id:
            row = cur.fetchone()
            self.lastrowid = row[0] if row else None

    def fetchall(self) -> list[Row]:
        return self.cursor.fetchall() if self.cursor.description else []

    def fetchone(self) -> Row | None:
        return self.cursor.fetchone() if self.cursor.description else None

    def __iter__(self) -> Iterator[Row]:
        return iter(self.fetchall())


def _check_text(params: Sequence[Any]) -> tuple[Any, ...]:
    """PostgreSQL cannot store a NUL character in TEXT: refuse it as bad input, as the registry does."""
    if any(isinstance(p, str) and "\x00" in p for p in params):
        raise AssayError("text without NUL characters", "a NUL character (\\x00) in a trace id, name or text field",
                         "remove the NUL character", code="invalid_input")
    return tuple(params)


class PgConnection:
    """One psycopg connection (autocommit; ``with`` blocks are transactions) that reads like ``sqlite3``."""

    def __init__(self, conn: Any):
        self.conn = conn
        self._tx: list[Any] = []

    def execute(self, sql: str, params: Iterable[Any] = ()) -> PgCursor:
        query, returns_id = pg_sql(sql)
        return PgCursor(self.conn.execute(query, _check_text(list(params))), returns_id)

    def executemany(self, sql: str, seq: Iterable[Iterable[Any]]) -> None:
        query, _ = pg_sql(sql, returning=False)
        with self.conn.cursor() as cur:
            cur.executemany(query, [_check_text(list(p)) for p in seq])

    @property
    def in_transaction(self) -> bool:
        return bool(self._tx)

    def __enter__(self) -> "PgConnection":
        tx = self.conn.transaction()
        tx.__enter__()
        self._tx.append(tx)
        return self

    def __exit__(self, *exc: Any) -> bool:
        return bool(self._tx.pop().__exit__(*exc))

    def commit(self) -> None:
        """Nothing to do: a statement outside a ``with`` block commits by itself."""

    def rollback(self) -> None:
        """Nothing to do (see :meth:`commit`)."""

    def close(self) -> None:
        self.conn.close()


def connect_postgres(url: str) -> tuple[PgConnection, Any, str]:
    """``(connection, SQLAlchemy engine for the migration runner, the URL without its password)``."""
    require("sqlalchemy", "a PostgreSQL monitor store", extra="registry")
    psycopg = require("psycopg", "a PostgreSQL monitor store", extra="registry", package="psycopg[binary]")
    from ..registry._db import make_engine

    engine = make_engine(url)
    where = engine.url.render_as_string(hide_password=True)
    _, params = engine.dialect.create_connect_args(engine.url)
    params.pop("context", None)  # SQLAlchemy's adapters: the store passes plain values
    try:
        conn = psycopg.connect(**params, autocommit=True, row_factory=_row_factory)
    except psycopg.Error as exc:
        engine.dispose()
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise AssayError("a reachable PostgreSQL database for the monitor store", f"{where} ({reason})",
                         "check the URL, the server and the credentials", code="unreachable") from None
    return PgConnection(conn), engine, where
