"""A persistent SQLite cache of provider requests: a re-run of the same requests costs nothing.

Keyed by provider, endpoint, model and the full request payload; the value is the raw
response body. Schema changes are append-only migrations recorded in ``schema_version`` and
applied by the shared runner ``assay._migrate`` (tests/core/test_schema_pins.py pins the schema).
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

from .. import _migrate
from .._migrate import Migration

MIGRATIONS: list[Migration] = [
    Migration(1, "requests", [
        """CREATE TABLE requests (
            key TEXT PRIMARY KEY,
            provider TEXT NOT NULL,
            model TEXT NOT NULL,
            request TEXT NOT NULL,
            response TEXT NOT NULL,
            input_tokens INTEGER NOT NULL DEFAULT 0,
            output_tokens INTEGER NOT NULL DEFAULT 0,
            created_at DOUBLE PRECISION NOT NULL
        )""",
        "CREATE INDEX ix_requests_model ON requests (provider, model)",
    ]),
]


def request_key(provider: str, endpoint: str | None, model: str, payload: Any) -> str:
    body = json.dumps({"provider": provider, "endpoint": endpoint or "", "model": model, "payload": payload},
                      sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(body.encode()).hexdigest()


class RequestCache:
    """Thread-safe get/put of raw responses by request key."""

    def __init__(self, path: str | Path):
        self.path = Path(path).expanduser()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(self.path), check_same_thread=False, timeout=30)
        with self._lock:
            try:
                self._db.execute("PRAGMA journal_mode=WAL")
            except sqlite3.OperationalError:  # pragma: no cover - e.g. a read-only or network file system
                pass
            migrate(self._db)

    def get(self, key: str) -> Any | None:
        with self._lock:
            row = self._db.execute("SELECT response FROM requests WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else None

    def put(self, key: str, provider: str, model: str, request: Any, response: Any,
            input_tokens: int = 0, output_tokens: int = 0) -> None:
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO requests VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (key, provider, model, json.dumps(request, ensure_ascii=False, default=str),
                 json.dumps(response, ensure_ascii=False), int(input_tokens), int(output_tokens), time.time()),
            )
            self._db.commit()

    def count(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM requests").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self._db.close()


def migrate(db: sqlite3.Connection) -> int:
    """Apply the missing migrations; returns the schema version."""
    _migrate.migrate(db, MIGRATIONS, table="schema_version")
    return _migrate.latest(MIGRATIONS)


_OPEN: dict[str, RequestCache] = {}
_OPEN_LOCK = threading.Lock()


def open_cache(path: str | Path) -> RequestCache:
    """One shared RequestCache per file in this process."""
    key = str(Path(path).expanduser().resolve())
    with _OPEN_LOCK:
        if key not in _OPEN:
            _OPEN[key] = RequestCache(key)
        return _OPEN[key]
