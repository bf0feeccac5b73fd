"""Shared test setup: offline hubs, a private ASSAY_HOME, paths to the real data.

The tests mirror the package: ``tests/<stage>/`` holds the tests of ``assay.<stage>`` (``core/``: the
top-level modules: config, migrations, schema pins; and the layering). Shared helpers (``_registry_util``,
``_synth_util``, ``_train_util``) stay here, importable from every folder.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Starlette's TestClient sends `Host: testserver` (some httpx ASGI clients: `test`, `t`): the server's Host
# check (assay.server._origin) lets them in as an operator names a proxy's host. Set for the whole session
# (module-scoped apps too); tests of the default delete it.
os.environ["ASSAY_ALLOWED_HOSTS"] = "testserver,test,t"

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))  # the shared helpers, for tests in any subfolder
# Real labeled rows: small licensed subsets committed in tests/fixtures/data (see DATA_LICENSE.md there),
# so nothing skips in a clean clone; ASSAY_SHARED_DATA points the same tests at the full files.
FIXTURE_DATA = REPO / "tests" / "fixtures" / "data"
SHARED_DATA = Path(os.environ.get("ASSAY_SHARED_DATA") or FIXTURE_DATA)


@pytest.fixture
def shared_data() -> Path:
    return SHARED_DATA


@pytest.fixture(autouse=True)
def _assay_home(tmp_path_factory, monkeypatch):
    """Each test gets its own ASSAY_HOME unless it sets one; the model cache stays shared."""
    home = tmp_path_factory.mktemp("assay-home")
    monkeypatch.setenv("ASSAY_HOME", str(home))
    monkeypatch.setenv("ASSAY_MODEL_CACHE", os.environ.get("ASSAY_MODEL_CACHE", str(Path.home() / ".assay" / "models")))
    yield home


# --- registry databases (test_registry_*, test_api_*, test_worker_*) ----------------------------
def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def postgres_server():
    """A throwaway PostgreSQL cluster on 127.0.0.1 (binaries from /usr/lib/postgresql/*/bin)."""
    import glob
    import pwd
    import shutil
    import subprocess
    import tempfile

    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not found:
        pytest.skip("PostgreSQL binaries not found under /usr/lib/postgresql/*/bin")
    bindir = Path(found[-1]).parent
    base = Path(tempfile.mkdtemp(prefix="assay-pg-"))
    prefix: list[str] = []
    if os.geteuid() == 0:  # initdb refuses to run as root
        pg = pwd.getpwnam("postgres")
        os.chown(base, pg.pw_uid, pg.pw_gid)
        prefix = ["runuser", "-u", "postgres", "--"]
    port = _free_port()
    data = base / "data"
    run = lambda *cmd: subprocess.run([*prefix, *map(str, cmd)], check=True, capture_output=True, text=True)  # noqa: E731
    run(bindir / "initdb", "-D", data, "-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8")
    run(bindir / "pg_ctl", "-D", data, "-l", base / "log", "-w", "-t", "60", "-o",
        f"-p {port} -h 127.0.0.1 -k {base} -F -c fsync=off -c full_page_writes=off", "start")
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}"
    finally:
        subprocess.run([*prefix, str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
                       capture_output=True)
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def reg(tmp_path):
    """A SQLite registry in tmp_path with a project "demo" (a test file may define its own)."""
    from _registry_util import make_registry

    r = make_registry(f"sqlite:///{tmp_path / 'assay.db'}", tmp_path)
    r.projects.create("demo")
    yield r
    r.close()


@pytest.fixture
def pg_database(request):
    """A fresh, empty PostgreSQL database URL on the test server (dropped afterwards)."""
    import secrets

    import psycopg

    server = request.getfixturevalue("postgres_server")
    name = "t_" + secrets.token_hex(6)
    with psycopg.connect(f"{server}/postgres", autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    yield f"{server}/{name}"
    with psycopg.connect(f"{server}/postgres", autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture(params=["sqlite", "postgresql"])
def registry_db(request, tmp_path):
    """A fresh, empty registry database URL: SQLite in tmp_path, or a new PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'assay.db'}"
    return request.getfixturevalue("pg_database")
