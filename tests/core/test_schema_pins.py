"""One schema pin for every SQLite-backed store (registry, monitor store, provider request cache).

For each store a fresh database is made through the store's own code path, its schema is dumped
from ``sqlite_master`` and compared with the text committed in tests/fixtures/schemas/<store>.sql.
The pin also lists a hash of each released migration step, so an edited step is caught even when
the resulting schema looks the same. Regenerate the pins after appending a step with
``ASSAY_UPDATE_SCHEMA_PINS=1 python -m pytest tests/core/test_schema_pins.py``.
"""

from __future__ import annotations

import difflib
import hashlib
import os
import re
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple

import pytest

from assay import _migrate
from assay._migrate import Migration

PINS = Path(__file__).parents[1] / "fixtures" / "schemas"
UPDATE = "ASSAY_UPDATE_SCHEMA_PINS"


class StoreCase(NamedTuple):
    steps: Sequence[Migration]
    table: str  # the version table
    module: str  # where the steps live, for the failure message
    old_table_ddl: str  # the version table as the runner before assay._migrate created it
    make: Callable[[Path], None]  # create/open a database at a path through the store's real code


def _make_registry(path: Path) -> None:
    from assay.registry import make_engine, migrate

    engine = make_engine(f"sqlite:///{path}")
    try:
        migrate(engine)
    finally:
        engine.dispose()


def _make_monitor(path: Path) -> None:
    from assay.monitor import Store

    Store(path).close()


def _make_cache(path: Path) -> None:
    from assay.providers._cache import RequestCache

    RequestCache(path).close()


_DDL = "CREATE TABLE IF NOT EXISTS {} (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at {} NOT NULL)"


def _cases() -> dict[str, StoreCase]:
    from assay.monitor._store import MIGRATIONS as monitor_steps
    from assay.providers._cache import MIGRATIONS as cache_steps
    from assay.registry import MIGRATIONS as registry_steps

    return {
        "registry": StoreCase(registry_steps, "schema_version", "src/assay/registry/_migrations.py",
                              _DDL.format("schema_version", "DOUBLE PRECISION"), _make_registry),
        "monitor": StoreCase(monitor_steps, "_migrations", "src/assay/monitor/_store.py",
                             _DDL.format("_migrations", "REAL"), _make_monitor),
        "provider_cache": StoreCase(cache_steps, "schema_version", "src/assay/providers/_cache.py",
                                    _DDL.format("schema_version", "DOUBLE PRECISION"), _make_cache),
    }


CASES = _cases()
STORES = sorted(CASES)


def _step_hash(step: Migration) -> str:
    return hashlib.sha256("\n;\n".join(step.statements).encode()).hexdigest()


def _dump(db: sqlite3.Connection) -> str:
    """The schema as normalized text: one object per block, sorted, whitespace made canonical."""
    order = {"table": 0, "index": 1, "view": 2, "trigger": 3}
    rows = db.execute("SELECT type, name, sql FROM sqlite_master WHERE sql IS NOT NULL"
                      " AND name NOT LIKE 'sqlite_%'").fetchall()
    blocks = []
    for _, _, sql in sorted(rows, key=lambda r: (order.get(r[0], 9), r[1])):
        lines = [ln.strip() for ln in sql.strip().splitlines() if ln.strip()]
        blocks.append("\n".join([lines[0], *("  " + ln for ln in lines[1:])]) + ";")
    return "\n".join(blocks) + "\n"


def _render(store: str, case: StoreCase, schema: str) -> str:
    head = [f"-- The schema of a fresh {store} database, pinned by tests/core/test_schema_pins.py.",
            f"-- Never edit a released step: append a Migration to {case.module}, then regenerate",
            f"-- this file with {UPDATE}=1 python -m pytest tests/core/test_schema_pins.py and commit it."]
    head += [f"-- step {s.version} sha256:{_step_hash(s)} {s.name}" for s in case.steps]
    return "\n".join(head) + "\n" + schema


def _pinned_steps(text: str) -> dict[int, str]:
    return {int(m[1]): m[2] for m in re.finditer(r"^-- step (\d+) sha256:([0-9a-f]{64}) ", text, re.MULTILINE)}


@contextmanager
def _open(path: Path) -> Iterator[sqlite3.Connection]:
    db = sqlite3.connect(path)
    try:
        yield db
    finally:
        db.close()


def _fresh(tmp_path: Path, store: str) -> tuple[StoreCase, Path]:
    case = CASES[store]
    path = tmp_path / f"{store}.db"
    case.make(path)
    return case, path


@pytest.mark.parametrize("store", STORES)
def test_schema_matches_the_pin(store, tmp_path):
    case, path = _fresh(tmp_path, store)
    _migrate.validate(case.steps)  # versions 1..N in order, distinct names: steps are only appended
    with _open(path) as db:
        got = _render(store, case, _dump(db))
    pin, rel = PINS / f"{store}.sql", f"tests/fixtures/schemas/{store}.sql"
    want = pin.read_text() if pin.exists() else ""

    hashes = {s.version: _step_hash(s) for s in case.steps}
    edited = [v for v, h in _pinned_steps(want).items() if hashes.get(v) != h]
    hint = (f"if step {edited[0]} was never released, delete its '-- step' line from {rel} and rerun"
            if edited else "")
    assert not edited, (f"{store}: released migration step(s) {edited} in {case.module} were edited or removed. "
                        f"Released steps never change: revert the edit and append a new Migration instead ({hint}).")
    if os.environ.get(UPDATE) and got != want:
        PINS.mkdir(parents=True, exist_ok=True)
        pin.write_text(got)
        want = got
    diff = "".join(difflib.unified_diff(want.splitlines(True), got.splitlines(True), rel, "fresh database"))
    assert got == want, (
        f"the schema of a fresh {store} database differs from the pin {rel}.\n"
        f"If the change is intended: make it a new Migration appended to {case.module} (never edit a released "
        f"one), then run {UPDATE}=1 python -m pytest tests/core/test_schema_pins.py and commit the updated pin.\n{diff}")


@pytest.mark.parametrize("store", STORES)
def test_reopening_and_rerunning_is_a_no_op(store, tmp_path):
    case, path = _fresh(tmp_path, store)
    with _open(path) as db:
        before = _dump(db), db.execute(f"SELECT * FROM {case.table} ORDER BY version").fetchall()
    case.make(path)  # the store's own code path again
    with _open(path) as db:
        assert _migrate.migrate(db, case.steps, table=case.table) == []  # the runner itself
        after = _dump(db), db.execute(f"SELECT * FROM {case.table} ORDER BY version").fetchall()
        assert _migrate.current_version(db, table=case.table) == _migrate.latest(case.steps)
    assert after == before
    assert [r[0] for r in after[1]] == [s.version for s in case.steps]


@pytest.mark.parametrize("store", STORES)
def test_database_from_the_old_runner_opens(store, tmp_path):
    """A database left at step 1 by the runner each store had before assay._migrate (same
    version table, same columns) opens without re-applying anything and is brought up to date."""
    case = CASES[store]
    path = tmp_path / f"{store}.db"
    with _open(path) as db:
        db.execute(case.old_table_ddl)
        assert _migrate.migrate(db, case.steps, table=case.table, upto=1) == [1]
        first = db.execute(f"SELECT * FROM {case.table}").fetchall()
    case.make(path)
    with _open(path) as db:
        rows = db.execute(f"SELECT * FROM {case.table} ORDER BY version").fetchall()
        ddl = db.execute("SELECT sql FROM sqlite_master WHERE name = ?", (case.table,)).fetchone()[0]
    assert rows[:1] == first  # step 1 was not applied again
    assert [r[0] for r in rows] == [s.version for s in case.steps]
    assert ddl == case.old_table_ddl.replace("IF NOT EXISTS ", "")  # the old version table is kept as it was
