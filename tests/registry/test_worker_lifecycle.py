"""The worker: statuses and progress, failures with reasons and partial outputs, cancel,
recovery of runs whose worker died (including kill -9 of a real worker process), and the reaper's
rule: a busy worker is never failed, a stopped one is, and a late finisher keeps its outputs."""

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
from _worker_util import BUSY_WORKER, end, free_port, ok, serve_cmd, stop_between_writes, wait_for

from assay.registry import LocalExecutor, Status, Worker
from assay.registry._storage import Storage
from assay.server._supervisor import Supervisor
from assay.testing import mock_train


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


def _training(reg, steps: int):
    """A run in Training on a worker thread (mock steps of 0.05 s): the run and the thread."""
    t, tr = add_binary_datasets(reg, "demo", 60, 60)
    run = reg.runs.create("demo", run_config(t, tr))
    th = threading.Thread(target=fake_worker(reg, steps=steps, step_seconds=0.05).run_once)
    th.start()
    wait_for(lambda: reg.runs.get(run.id).status == Status.training)
    return run, th


def test_cancel_stops_a_running_run(reg):
    run, th = _training(reg, 200)
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
    # no heartbeat: the first look writes a note in the run's log, a later one (half stale_after on) fails it
    first = wait_for(lambda: [e for e in reg.runs.events(b.id) if e.stage == "no-heartbeat"]
                      or reg.runs.recover_stale(stale_after=1) and None, timeout=30)
    assert "no heartbeat from the worker w-silent" in first[0].message
    assert reg.runs.get(b.id).status == Status.queued  # claimed, noted, not failed
    assert wait_for(lambda: reg.runs.recover_stale(stale_after=1), timeout=30) == [b.id]
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
        wait_for(lambda: reg.runs.get(run.id).status == Status.training and reg.runs.get(run.id).progress > 0.36,
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
    from assay.client import Client

    db = f"sqlite:///{tmp_path / 'assay.db'}"
    art = tmp_path / "artifacts"
    reg = make_registry(db, tmp_path)
    reg.projects.create("demo")
    t, tr = add_binary_datasets(reg, "demo", 60, 60)
    port = free_port()
    stale_after = 5.0
    cmd = serve_cmd(port, db, art, "--workers", "1", "--stale-after", str(stale_after),
                    "--worker-cmd", "python -m assay.testing --steps 40 --step-seconds 0.1 --heartbeat 0.2")
    serve = subprocess.Popen(cmd, env={**os.environ, "ASSAY_HOME": str(tmp_path)}, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True)
    try:
        c = Client(f"http://127.0.0.1:{port}", timeout=5)
        wait_for(lambda: ok(c.health), timeout=60, every=0.3)
        first = reg.runs.create("demo", run_config(t, tr))
        second = reg.runs.create("demo", run_config(t, tr))
        wait_for(lambda: reg.runs.get(first.id).status == Status.training, timeout=60)
        # (asked before the claim, the position raced the worker's poll: 2, or 1 once it had claimed the first)
        assert c.run_queue(second.id)["position"] == 1 and c.run_queue(first.id)["position"] is None
        h = c.health()
        assert h["status"] == "ok" and h["workers"]["alive"] == 1 and h["queue_depth"] == 1
        pid = h["supervisor"]["processes"][0]["pid"]
        os.kill(pid, signal.SIGKILL)
        killed = time.monotonic()
        out = wait_for(lambda: (r := reg.runs.get(first.id)).status == Status.failed and r, timeout=stale_after + 10)
        took = time.monotonic() - killed
        assert took <= stale_after + 3, took
        assert "stopped" in out.failure_reason and "Training" in out.failure_reason
        assert any(e.kind == "error" for e in reg.runs.events(first.id))
        # reaped: no zombie left behind. Within a round of the supervisor, not before the run reads Failed: the
        # round that failed it may have polled the worker just before the kill and reaps it on the next one.
        wait_for(lambda: not Path(f"/proc/{pid}").exists(), timeout=5)  # rounds are 1 s apart
        sup = wait_for(lambda: (s := c.health()["supervisor"]["processes"][0])["restarts"] == 1 and s["alive"] and s,
                        timeout=30)
        assert sup["pid"] != pid
        done = wait_for(lambda: (r := reg.runs.get(second.id)).status.final or r.status == Status.fine_tuned and r,
                         timeout=90, every=0.3)
        assert reg.runs.get(second.id).status == Status.fine_tuned, done
        assert c.health()["queue_depth"] == 0
    finally:
        serve.terminate()
        out, _ = serve.communicate(timeout=60)
        reg.close()
    assert "exited" in out and "marked Failed" in out, out[-3000:]



def test_one_cancelled_class_for_the_trainer_and_the_worker():
    """The trainer's Cancelled is the worker's (no match by class name)."""
    import assay.errors
    import assay.registry
    import assay.train
    from assay.registry._worker import _is_cancel

    assert assay.train.Cancelled is assay.registry.Cancelled is assay.errors.Cancelled
    assert _is_cancel(assay.train.Cancelled("stopped")) and not _is_cancel(RuntimeError("Cancelled"))


# --- the reaper's rule and late finishers -----------------------------------------------------------------
STALE = 4.0  # --stale-after of the reaper and the workers below (heartbeats every 0.5 s)
HOLD = STALE + 1.5  # the busy worker's write transaction: longer than stale_after


@pytest.mark.slow
def test_busy_worker_is_kept_and_a_stopped_one_reaped(registry_db, tmp_path):
    """Issue 23, finding 4: a worker busy for minutes in "evaluating" was failed as stopped. Two real
    workers under a real reaper (the supervisor's): one busy in its evaluating stage (pure-Python loops,
    and a write transaction on its run held longer than stale_after in another connection, which on
    SQLite locks the whole database, the reaper included), one stopped with SIGSTOP while that write is
    held. After the write, both runs have had no heartbeat for longer than stale_after; the stopped
    worker's run is failed within stale_after of the reaper looking again, the busy one never. Resumed
    (SIGCONT), the stopped worker learns its run was failed, stops it, and keeps its partial outputs."""
    reg = make_registry(registry_db, tmp_path)
    reg.projects.create("demo")
    t, tr = add_binary_datasets(reg, "demo", 60, 60)
    common = ["--db", registry_db, "--artifacts", str(tmp_path / "artifacts"), "--heartbeat", "0.5",
              "--stale-after", str(STALE)]
    env = {**os.environ, "ASSAY_HOME": str(tmp_path)}
    reaper = Supervisor(reg, lambda: None, 0, stale_after=STALE, check_every=0.5).start()
    procs: list[subprocess.Popen] = []
    try:
        stop_run = reg.runs.create("demo", run_config(t, tr))
        procs.append(subprocess.Popen([sys.executable, "-m", "assay.testing", *common, "--steps", "4000",
                                       "--step-seconds", "0.05"], env=env))
        wait_for(lambda: reg.runs.get(stop_run.id).status == Status.training, timeout=120)
        busy_run = reg.runs.create("demo", run_config(t, tr))
        procs.append(subprocess.Popen([sys.executable, str(BUSY_WORKER), *common, "--marks", str(tmp_path),
                                       "--hold", str(HOLD)], env=env))
        wait_for(lambda: (tmp_path / "holding").exists(), timeout=120)
        stop_between_writes(procs[0], reg, stop_run.id)
        stopped_at = time.monotonic()
        out = wait_for(lambda: (r := reg.runs.get(stop_run.id)).status == Status.failed and r, timeout=HOLD + 60)
        took = time.monotonic() - stopped_at
        assert took <= HOLD + STALE + 10, took  # the write held the reaper up to HOLD s, then stale_after at most
        assert "no heartbeat since" in out.failure_reason and "Training" in out.failure_reason
        assert any(e.stage == "no-heartbeat" for e in reg.runs.events(stop_run.id))  # noted first, then failed
        wait_for(lambda: (tmp_path / "held").exists(), timeout=60)
        busy_until = time.monotonic() + 2 * STALE  # still busy (pure Python) well past stale_after
        while time.monotonic() < busy_until:
            busy = reg.runs.get(busy_run.id)
            assert busy.status == Status.training and busy.stage == "evaluating", busy.failure_reason
            time.sleep(0.25)
        (tmp_path / "release").write_text("")
        done = wait_for(lambda: (r := reg.runs.get(busy_run.id)).status != Status.training and r, timeout=120)
        assert done.status == Status.fine_tuned, done.failure_reason
        assert not [e for e in reg.runs.events(busy_run.id) if e.kind == "error"]
        assert reaper.failed_runs == [stop_run.id]
        os.kill(procs[0].pid, signal.SIGCONT)
        late = wait_for(lambda: [e for e in reg.runs.events(stop_run.id) if "stopped it" in e.message], timeout=60)
        assert f"partial outputs are kept at {out.artifact_location}" in late[0].message
        assert "no heartbeat since" in late[0].message
        assert reg.runs.get(stop_run.id).status == Status.failed  # a failed run stays failed
        assert (Path(out.artifact_location) / "partial.txt").exists()  # never removed by the reaper
    finally:
        reaper.stop()
        for p in procs:
            end(p)
        reg.close()


def test_reaper_gives_the_worker_time_to_beat_after_a_stall(reg, monkeypatch):
    """The rule, on a clock the test moves: a reaper that could not look for ten minutes (a long write
    locked the database) only notes the run; the worker's beat, held up by the same stall, keeps it. A
    worker that stays quiet is noted at stale_after / 2 and failed once quiet for more than stale_after."""
    clock = [time.time()]
    monkeypatch.setattr(reg.core, "now", lambda: clock[0])
    t, tr = add_binary_datasets(reg, "demo", 60, 60)
    run = reg.runs.create("demo", run_config(t, tr))
    reg.runs.claim("w-far", pid=1, host="another-host", run_id=run.id)
    clock[0] += 600
    assert reg.runs.recover_stale(stale_after=60) == []
    notes = [e for e in reg.runs.events(run.id) if e.stage == "no-heartbeat"]
    assert len(notes) == 1 and "no heartbeat from the worker w-far" in notes[0].message
    clock[0] += 5
    assert reg.runs.heartbeat(run.id, "w-far") is False  # it beats: the note no longer counts
    failed_at = None
    for quiet in range(5, 100, 5):  # a reaper looking every 5 s
        clock[0] += 5
        if reg.runs.recover_stale(stale_after=60):
            failed_at = quiet
            break
    assert failed_at == 65  # the first look with more than 60 s of silence
    assert len([e for e in reg.runs.events(run.id) if e.stage == "no-heartbeat"]) == 2  # noted at 35 s
    assert reg.runs.get(run.id).status == Status.failed


@pytest.mark.parametrize("storage", ["local", "memory"])
def test_a_late_finisher_keeps_its_result_and_says_so(reg, storage):
    """A run failed while its work went on (the reaper found its worker quiet) is never failed by the work:
    its stages keep going (they used to raise RunLost at the next progress report, so 'saving' never
    wrote the artifact), the result is stored at the run's location, remote storage included, and the
    run's log says where; the run stays Failed."""
    if storage == "memory":
        reg.storage = Storage(f"memory://late-{os.getpid()}-{time.monotonic_ns()}")
    t, tr = add_binary_datasets(reg, "demo", 60, 60)
    run = reg.runs.create("demo", run_config(t, tr))
    reason = "the worker stopped: no heartbeat since 12:00 (the test plays the reaper)"

    def train(config, **kw):
        reg.runs.fail(run.id, reason)
        return mock_train(config, steps=0, **kw)  # no should_stop check left: it finishes

    out = Worker(reg, LocalExecutor(train), heartbeat_interval=0.2, stale_after=30).run_once()
    assert out.status == Status.failed and out.failure_reason == reason
    assert reg.storage.exists(f"{out.artifact_location}/evaluator.json")
    assert reg.runs.report(run.id)["n"] > 0  # the report reads as for any run
    late = [e for e in reg.runs.events(run.id) if "finished this run" in e.message]
    assert len(late) == 1 and f"kept at {out.artifact_location}" in late[0].message and reason in late[0].message


def test_worker_stops_a_run_failed_under_it_and_keeps_partial_outputs(reg):
    run, th = _training(reg, 400)
    reg.runs.fail(run.id, "failed by the test's reaper")
    th.join(timeout=60)
    assert not th.is_alive()
    out = reg.runs.get(run.id)
    assert out.status == Status.failed and out.failure_reason == "failed by the test's reaper"
    late = [e for e in reg.runs.events(run.id) if "stopped it" in e.message]
    assert len(late) == 1 and f"partial outputs are kept at {out.artifact_location}" in late[0].message
    assert (Path(out.artifact_location) / "partial.txt").exists()
    assert not (Path(out.artifact_location) / "evaluator.json").exists()  # stopped before the end


def test_progress_report_errors_never_fail_a_run(reg, monkeypatch):
    """A database error while storing progress (a locked database) is logged, not fatal: the
    heartbeat thread keeps the run alive."""
    from sqlalchemy.exc import OperationalError

    t, tr = add_binary_datasets(reg, "demo", 60, 60)
    run = reg.runs.create("demo", run_config(t, tr))
    real = reg.runs.report_stage

    def flaky(run_id, worker_id, stage, *a, **k):
        if stage == "training":
            raise OperationalError("UPDATE runs", {}, Exception("database is locked"))
        return real(run_id, worker_id, stage, *a, **k)

    monkeypatch.setattr(reg.runs, "report_stage", flaky)
    out = fake_worker(reg, steps=3).run_once()
    assert out.id == run.id and out.status == Status.fine_tuned

