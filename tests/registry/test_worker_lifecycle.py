"""The worker: statuses and progress, failures with reasons and partial outputs, cancel,
recovery of runs whose worker died (including kill -9 of a real worker process)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from _registry_util import add_binary_datasets, fake_worker, finished_run, make_registry, run_config

from assay.registry import Status


def _wait_for(pred, timeout=60.0, every=0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = pred()
        if value:
            return value
        time.sleep(every)
    raise AssertionError("condition not reached in time")


def test_run_goes_through_statuses(reg):
    t, tr = add_binary_datasets(reg, "demo", 80, 120)
    run = reg.runs.create("demo", run_config(t, tr))
    out = fake_worker(reg).run_once()
    assert out.id == run.id and out.status == Status.fine_tuned and out.progress == 1.0
    assert [h.status for h in out.history] == ["queued", "data_ready", "training", "fine_tuned"]
    assert out.metrics_summary and "kappa" in out.metrics_summary
    assert out.started_at and out.finished_at and out.finished_at >= out.started_at
    stages = [e.stage for e in reg.runs.events(run.id) if e.kind == "stage"]
    assert {"preparing", "training", "evaluating", "saving"} <= set(stages)
    art = Path(out.artifact_location)
    assert {"evaluator.json", "report.json", "report.html", "report.md"} <= {p.name for p in art.iterdir()}
    assert reg.runs.report(run.id)["n"] > 0 and "<html" in reg.runs.report(run.id, "html").lower()
    assert fake_worker(reg).run_once() is None  # queue empty


def test_generation_status_when_no_training_set(reg):
    t, _ = add_binary_datasets(reg, "demo", 80, 10)
    cfg = run_config(t)
    cfg["generate"] = {"model": "mock/teacher", "target_size": 10}
    reg.runs.create("demo", cfg)
    out = fake_worker(reg).run_once()
    assert [h.status for h in out.history] == ["queued", "generating_data", "data_ready", "training", "fine_tuned"]


def test_failure_records_reason_and_keeps_partial_outputs(reg):
    t, tr = add_binary_datasets(reg, "demo", 60, 60)
    reg.runs.create("demo", run_config(t, tr))
    out = fake_worker(reg, fail_at_step=1).run_once()
    assert out.status == Status.failed
    assert out.failure_reason == "RuntimeError: mock training failed at step 1"
    assert (Path(out.artifact_location) / "partial.txt").exists()
    errors = [e for e in reg.runs.events(out.id) if e.kind == "error"]
    assert any("Traceback" in e.message for e in errors)
    assert out.history[-1].status == "failed"


def test_unexpected_exception_fails_with_its_type(reg):
    t, tr = add_binary_datasets(reg, "demo", 60, 60)
    reg.runs.create("demo", run_config(t, tr))
    out = fake_worker(reg, steps="many").run_once()  # mock_train raises a TypeError
    assert out.status == Status.failed and out.failure_reason.startswith("TypeError")


def test_cancel_stops_a_running_run(reg):
    t, tr = add_binary_datasets(reg, "demo", 60, 60)
    run = reg.runs.create("demo", run_config(t, tr))
    w = fake_worker(reg, steps=200, step_seconds=0.05)
    th = threading.Thread(target=w.run_once)
    th.start()
    _wait_for(lambda: reg.runs.get(run.id).status == Status.training)
    assert reg.runs.cancel(run.id).cancel_requested
    th.join(timeout=30)
    out = reg.runs.get(run.id)
    assert out.status == Status.cancelled and out.failure_reason is None
    assert out.history[-1].status == "cancelled"


def test_recover_dead_and_silent_workers(reg):
    t, tr = add_binary_datasets(reg, "demo", 60, 60)
    a = reg.runs.create("demo", run_config(t, tr))
    b = reg.runs.create("demo", run_config(t, tr))
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    reg.runs.claim("w-dead", pid=dead.pid, run_id=a.id)
    reg.runs.report_stage(a.id, "w-dead", "training", 0.5, "step 5/10")
    reg.runs.claim("w-silent", pid=1, host="another-host", run_id=b.id)
    assert reg.runs.recover_stale(stale_after=60) == [a.id]  # b still has a fresh heartbeat
    ra = reg.runs.get(a.id)
    assert ra.status == Status.failed and "is gone" in ra.failure_reason and "Training" in ra.failure_reason
    time.sleep(1.2)
    assert reg.runs.recover_stale(stale_after=1) == [b.id]
    assert "no heartbeat since" in reg.runs.get(b.id).failure_reason


@pytest.mark.slow
def test_kill_9_worker_mid_training(registry_db, tmp_path):
    """A worker killed with SIGKILL mid-training: on restart the run is Failed with a reason,
    and registered metrics and datasets are untouched."""
    reg = make_registry(registry_db, tmp_path)
    metric = reg.metrics.register(finished_run(reg), "tox")
    datasets = {d.id: d.content_hash for d in reg.datasets.list("demo")}
    t, tr = add_binary_datasets(reg, "demo", 60, 60)
    run = reg.runs.create("demo", run_config(t, tr))
    cmd = [sys.executable, "-m", "assay.testing", "--db", registry_db, "--artifacts",
           str(tmp_path / "artifacts"), "--steps", "2000", "--step-seconds", "0.05", "--heartbeat", "0.2"]
    worker = subprocess.Popen(cmd, env={**os.environ})
    try:
        _wait_for(lambda: reg.runs.get(run.id).status == Status.training and reg.runs.get(run.id).progress > 0.36,
                  timeout=120)
    finally:
        os.kill(worker.pid, signal.SIGKILL)
        worker.wait()
    stuck = reg.runs.get(run.id)
    assert stuck.status == Status.training  # nobody updated it after the kill
    restarted = subprocess.run(cmd + ["--once"], env={**os.environ}, timeout=120, capture_output=True, text=True)
    assert restarted.returncode == 0, restarted.stderr
    out = reg.runs.get(run.id)
    assert out.status == Status.failed
    assert f"pid {worker.pid}" in out.failure_reason and "is gone" in out.failure_reason
    assert "Training" in out.failure_reason and out.artifact_location in out.failure_reason
    assert (Path(out.artifact_location) / "partial.txt").exists()  # partial outputs kept
    # nothing registered or uploaded was lost
    again = reg.metrics.get("tox")
    assert again.full_name == metric.full_name and reg.storage.dir_sha256(again.artifact_location) == \
        metric.artifact_sha256
    assert reg.metrics.score("tox", ["you idiot"])[0].label in ("true", "false")
    for did, h in datasets.items():
        assert reg.datasets.get(did).content_hash == h and len(reg.datasets.rows(did)) > 0
    reg.close()


@pytest.mark.slow
def test_sigkill_worker_under_live_serve(tmp_path):
    """Issue 8, finding 4: SIGKILL a worker while `assay serve` stays up. Its run becomes Failed
    with the reason within the stated time (--stale-after 5 here), the worker is reaped (no
    zombie) and restarted, /v1/health reports it, and the next queued run completes."""
    import socket

    from assay.client import Client

    db = f"sqlite:///{tmp_path / 'assay.db'}"
    art = tmp_path / "artifacts"
    reg = make_registry(db, tmp_path)
    reg.projects.create("demo")
    t, tr = add_binary_datasets(reg, "demo", 60, 60)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    stale_after = 5.0
    cmd = [sys.executable, "-c", "import sys; from assay.cli import main; sys.argv[0]='assay'; main()", "serve",
           "--port", str(port), "--db", db, "--artifacts", str(art), "--workers", "1",
           "--stale-after", str(stale_after),
           "--worker-cmd", "python -m assay.testing --steps 40 --step-seconds 0.1 --heartbeat 0.2"]
    serve = subprocess.Popen(cmd, env={**os.environ, "ASSAY_HOME": str(tmp_path)}, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True)
    try:
        c = Client(f"http://127.0.0.1:{port}", timeout=5)
        _wait_for(lambda: _ok(c.health), timeout=60, every=0.3)
        first = reg.runs.create("demo", run_config(t, tr))
        second = reg.runs.create("demo", run_config(t, tr))
        assert c.run_queue(second.id)["position"] == 2
        _wait_for(lambda: reg.runs.get(first.id).status == Status.training, timeout=60)
        h = c.health()
        assert h["status"] == "ok" and h["workers"]["alive"] == 1 and h["queue_depth"] == 1
        pid = h["supervisor"]["processes"][0]["pid"]
        os.kill(pid, signal.SIGKILL)
        killed = time.monotonic()
        out = _wait_for(lambda: (r := reg.runs.get(first.id)).status == Status.failed and r, timeout=stale_after + 10)
        took = time.monotonic() - killed
        assert took <= stale_after + 3, took
        assert "stopped" in out.failure_reason and "Training" in out.failure_reason
        assert any(e.kind == "error" for e in reg.runs.events(first.id))
        assert not Path(f"/proc/{pid}").exists()  # reaped: no zombie left behind
        sup = _wait_for(lambda: (s := c.health()["supervisor"]["processes"][0])["restarts"] == 1 and s["alive"] and s,
                        timeout=30)
        assert sup["pid"] != pid
        done = _wait_for(lambda: (r := reg.runs.get(second.id)).status.final or r.status == Status.fine_tuned and r,
                         timeout=90, every=0.3)
        assert reg.runs.get(second.id).status == Status.fine_tuned, done
        assert c.health()["queue_depth"] == 0
    finally:
        serve.terminate()
        out, _ = serve.communicate(timeout=60)
        reg.close()
    assert "exited" in out and "marked Failed" in out, out[-3000:]


def _ok(fn):
    try:
        return fn()
    except Exception:
        return None


def test_one_cancelled_class_for_the_trainer_and_the_worker():
    """The trainer's Cancelled is the worker's (no match by class name)."""
    import assay.errors
    import assay.registry
    import assay.train
    from assay.registry._worker import _is_cancel

    assert assay.train.Cancelled is assay.registry.Cancelled is assay.errors.Cancelled
    assert _is_cancel(assay.train.Cancelled("stopped")) and not _is_cancel(RuntimeError("Cancelled"))
