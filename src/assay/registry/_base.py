"""Shared plumbing of the Registry: the core every component holds (engine, storage, providers,
clock), ids, JSON columns, errors."""

from __future__ import annotations

import json
import secrets
import time
from contextlib import contextmanager
from typing import Any, Iterator, Sequence

from ..errors import AssayError
from ._db import make_engine, normalize_url
from ._migrations import migrate
from ._storage import Storage


class InvalidRows(AssayError):
    """Rows that failed validation; ``rows`` lists each problem (row, id, field, problem)."""

    def __init__(self, source: str, problems: Sequence[Any], total_rows: int):
        self.rows = [p.to_dict() if hasattr(p, "to_dict") else dict(p) for p in problems]
        first = self.rows[0]
        where = f"row {first['row'] + 1} (id {first['id']})" if first["row"] >= 0 else source
        more = f" and {len(self.rows) - 1} more" if len(self.rows) > 1 else ""
        super().__init__(
            f"every row of {source} to be valid for the metric",
            f"{len(self.rows)} bad rows of {total_rows}: {first['problem']} in {where}{more}",
            "fix the listed rows (see error.rows), map columns with 'columns', or map labels with 'label_map'",
            code="invalid_rows",
        )

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = super().to_dict()
        out["rows"] = self.rows[:200]
        out["rows_total"] = len(self.rows)
        return out


def not_found(what: str, ref: str, fix: str) -> AssayError:
    return AssayError(f"an existing {what}", f"no {what} '{ref}'", fix, code="not_found")


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(6)}"


def dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=str, sort_keys=False)


def loads(value: str | None, default: Any = None) -> Any:
    if value in (None, ""):
        return default
    return json.loads(value)


class Core:
    """What every registry component shares: the database engine, the artifact storage, the
    providers a server allows, the clock, and whether run configs may name local files."""

    def __init__(self, url: str | None = None, artifacts: str | None = None, *, allow_local_paths: bool = False,
                 auto_migrate: bool = True, providers: Any = None):
        self.url = normalize_url(url)
        self.engine = make_engine(self.url)
        self.storage = Storage(artifacts)
        self.allow_local_paths = allow_local_paths
        # assay.providers.ServerProviders when serving: callers pick providers by name and can never set
        # endpoints, key variables or file paths (None: the local user's full control, as in the CLI)
        self.providers = providers
        if auto_migrate:
            migrate(self.engine)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @property
    def local_paths(self) -> bool:
        """Whether run configs may name files on this machine: only a local user's registry (the
        CLI, in-process), never one behind a server (``providers`` set), whatever host or auth."""
        return self.allow_local_paths and self.providers is None

    @contextmanager
    def tx(self) -> Iterator[Any]:
        with self.engine.begin() as conn:
            yield conn

    def close(self) -> None:
        self.engine.dispose()

    @staticmethod
    def now() -> float:
        return time.time()
