"""Issue 23, finding 5: nothing a killed server or a failed upload leaves behind outlives the next
start. Temporary upload folders carry their process's id and are removed once that process is gone;
a failed dataset insert removes its folder; dataset folders no row names are removed at start (only
those untouched for a minute: a younger one may be an insert under way in another process)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import pytest
from _registry_util import BINARY_MAP, make_registry, sample_test_set
from _worker_util import free_port, ok, serve_cmd, wait_for
from sqlalchemy import event

from assay.registry._ingest import private_temp_dir
from assay.server import create_app

OLD = time.time() - 2 * 3600  # an mtime two hours ago


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def _leftover(folder: Path, size: int = 1 << 20) -> Path:
    folder.mkdir(parents=True)
    (folder / "upload").write_bytes(b"x" * size)
    return folder


def _age(path: Path, mtime: float = OLD) -> Path:
    for p in [*path.rglob("*"), path]:
        os.utime(p, (mtime, mtime))
    return path


@pytest.fixture
def tmp_dir(tmp_path, monkeypatch):
    """The system's temporary folder, for this test: ``tmp_path / "tmp"``."""
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    return tmp


def _uploads(tmp: Path) -> list[str]:
    return sorted(p.name for p in tmp.glob("assay-upload-*"))


def test_server_start_removes_what_gone_processes_left(reg, tmp_dir):
    ours = private_temp_dir("upload")  # this process: alive, kept
    host = ours.name.split("-")[2]
    dead = _leftover(tmp_dir / f"assay-upload-{host}-{_dead_pid()}-a1b2c3d4")
    dead_run = _leftover(tmp_dir / f"assay-run-{host}-{_dead_pid()}-e5f6g7h8")
    other_host = _leftover(tmp_dir / f"assay-upload-{'0' * 8 if host != '0' * 8 else '1' * 8}-{_dead_pid()}-zz")
    legacy_old = _age(_leftover(tmp_dir / "assay-upload-k9l8m7n6"))  # an older assay's name, two hours old
    legacy_new = _leftover(tmp_dir / "assay-upload-p5q4r3s2")  # maybe an upload being read: kept
    unrelated = _age(_leftover(tmp_dir / "assay-notes"))
    datasets = Path(reg.storage.root) / "datasets"
    orphan = _age(_leftover(datasets / "ds_0123456789ab"))  # no row names it
    young = _leftover(datasets / "ds_ba9876543210")  # no row yet: an insert under way elsewhere
    kept = reg.datasets.add("demo", sample_test_set(40), "t.jsonl", metric="toxicity", label_map=BINARY_MAP)
    _age(datasets / kept.id)

    create_app(reg)

    assert not dead.exists() and not dead_run.exists() and not legacy_old.exists() and not orphan.exists()
    for path in (ours, other_host, legacy_new, unrelated, young, datasets / kept.id):
        assert path.exists(), path
    assert len(reg.datasets.rows(kept.id)) == kept.rows


def test_failed_insert_leaves_no_dataset_folder(reg, tmp_dir):
    def refuse(conn, cursor, statement, *args):
        if statement.lstrip().upper().startswith("INSERT INTO DATASETS"):
            raise OSError("disk full (the test)")

    datasets = Path(reg.storage.root) / "datasets"
    event.listen(reg.engine, "before_cursor_execute", refuse)
    try:
        with pytest.raises(OSError, match="the test"):
            reg.datasets.add("demo", sample_test_set(40), "t.jsonl", metric="toxicity", label_map=BINARY_MAP)
    finally:
        event.remove(reg.engine, "before_cursor_execute", refuse)
    assert not datasets.exists() or not list(datasets.iterdir())
    assert _uploads(tmp_dir) == []  # its temporary folder too
    ds = reg.datasets.add("demo", sample_test_set(40), "t.jsonl", metric="toxicity", label_map=BINARY_MAP)
    assert [p.name for p in datasets.iterdir()] == [ds.id] and _uploads(tmp_dir) == []


@pytest.mark.slow
def test_server_killed_during_ingest_leaves_nothing_after_restart(tmp_path):
    """SIGKILL `assay serve` while it reads a large upload: its temporary folders stay (the ~30 MB
    upload and the rows read so far); the next start removes them."""
    db = f"sqlite:///{tmp_path / 'assay.db'}"
    reg = make_registry(db, tmp_path)
    reg.projects.create("demo")
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    env = {**os.environ, "ASSAY_HOME": str(tmp_path), "TMPDIR": str(tmp)}
    port = free_port()
    cmd = serve_cmd(port, db, tmp_path / "artifacts", "--workers", "0")
    filler = "and so the message goes on " * 6
    body = "".join(json.dumps({"id": f"r{i}", "input": f"message {i} {filler}", "label": "true" if i % 3 else "false"})
                   + "\n" for i in range(150_000)).encode()
    serve = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_for(lambda: ok(lambda: httpx.get(f"http://127.0.0.1:{port}/v1/health", timeout=5).is_success),
                 timeout=120, every=0.3)
        threading.Thread(target=ok, daemon=True, args=(lambda: httpx.post(
            f"http://127.0.0.1:{port}/v1/projects/demo/datasets", data={"metric": "toxicity"},
            files={"file": ("big.jsonl", body)}, timeout=300),)).start()
        wait_for(lambda: any(p.stat().st_size > 0 for p in tmp.glob("assay-upload-*/rows.jsonl")), timeout=120,
                 every=0.05)  # the rows being read: ingest under way
        os.kill(serve.pid, signal.SIGKILL)
        serve.wait()
        left = _uploads(tmp)
        assert len(left) == 2 and all(f"-{serve.pid}-" in name for name in left)  # the spooled upload, the rows
        assert sum(f.stat().st_size for f in tmp.rglob("*") if f.is_file()) >= len(body)
        serve = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        wait_for(lambda: ok(lambda: httpx.get(f"http://127.0.0.1:{port}/v1/health", timeout=5).is_success),
                 timeout=120, every=0.3)
        assert _uploads(tmp) == []
        assert reg.datasets.list("demo") == [] and not (tmp_path / "artifacts" / "datasets").exists()
    finally:
        serve.terminate()
        out, _ = serve.communicate(timeout=60)
        reg.close()
    assert "left by a server or worker that is gone" in out, out[-3000:]
