"""Helpers of the worker, reaper and server-restart tests (not a test module), and a test worker.

``python tests/registry/_worker_util.py --db URL --artifacts ROOT --marks DIR`` runs a registry worker
whose run is *busy* in its evaluating stage, as a real training's evaluation is for minutes: it spins
pure-Python loops and C calls that hold the GIL (see ``_spin``) until ``DIR/release`` exists, and
a while into it holds a write transaction on its run's row in another database connection for
``--hold`` seconds (SQLite: the database's write lock; PostgreSQL: the row's lock), writing
``DIR/holding`` once the lock is held and ``DIR/held`` when it lets go.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

from sqlalchemy import select, text
from sqlalchemy.exc import DBAPIError

from assay.registry import LocalExecutor, Registry, Worker
from assay.registry import _db as t
from assay.registry._db import make_engine
from assay.testing import MockEvaluator, mock_train

BUSY_WORKER = Path(__file__).resolve()


def wait_for(pred: Callable[[], Any], timeout: float = 60.0, every: float = 0.1) -> Any:
    """``pred()``'s first truthy value, polled every ``every`` seconds; AssertionError after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = pred()
        if value:
            return value
        time.sleep(every)
    raise AssertionError("condition not reached in time")


def ok(fn: Callable[[], Any]) -> Any:
    """``fn()``, or None when it raises (a server not up yet)."""
    try:
        return fn()
    except Exception:
        return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve_cmd(port: int, db: str, artifacts: Path, *args: str) -> list[str]:
    """``assay serve`` on 127.0.0.1:``port`` as a child process's command line."""
    return [sys.executable, "-c", "import sys; from assay.cli import main; sys.argv[0]='assay'; main()", "serve",
            "--port", str(port), "--db", db, "--artifacts", str(artifacts), *args]


def stop_between_writes(proc: subprocess.Popen, reg: Registry, run_id: str) -> None:
    """SIGSTOP ``proc`` at a moment it holds no lock on its run's row: on PostgreSQL a process stopped
    inside a write transaction keeps the row locked (SQLite: stop it while another connection holds the
    write lock, then it holds nothing)."""
    for _ in range(100):
        os.kill(proc.pid, signal.SIGSTOP)
        if reg.dialect != "postgresql":
            return
        try:
            with reg.tx() as conn:
                conn.execute(select(t.runs.c.id).where(t.runs.c.id == run_id).with_for_update(nowait=True)).all()
            return
        except DBAPIError:  # stopped mid-write: let it finish and try again
            os.kill(proc.pid, signal.SIGCONT)
            time.sleep(0.05)
    raise AssertionError(f"could not stop pid {proc.pid} between two writes")


def end(proc: subprocess.Popen) -> None:
    """Resume (if stopped), terminate and reap a child process."""
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGCONT)
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _spin() -> int:
    """Busy work that holds the GIL: a pure-Python loop (the interpreter hands the GIL over every 5 ms)
    and a regular expression that backtracks for ~0.1 s in one C call (which never hands it over)."""
    re.match(r"(a+)+$", "a" * 21 + "b")
    return sum(i * i for i in range(20000))


class BusyExecutor(LocalExecutor):
    """The mock training whose evaluating stage is busy (see the module docstring)."""

    def __init__(self, db: str, marks: Path, hold: float):
        super().__init__()
        self.db, self.marks, self.hold = db, marks, hold

    def busy(self, run_id: str) -> None:
        start = time.monotonic()
        while time.monotonic() - start < 0.5:
            _spin()
        engine = make_engine(self.db)
        with engine.begin() as conn:  # a long write in another connection
            conn.execute(text("UPDATE runs SET message = message WHERE id = :id"), {"id": run_id})
            (self.marks / "holding").write_text(str(time.time()))
            held = time.monotonic()
            while time.monotonic() - held < self.hold:
                _spin()
        engine.dispose()
        (self.marks / "held").write_text(str(time.time()))
        while not (self.marks / "release").exists():
            _spin()

    def execute(self, job: Any, on_status: Any, should_stop: Any) -> Any:
        def status(stage: str, fraction: float | None, message: str) -> None:
            on_status(stage, fraction, message)
            if stage == "evaluating":
                self.busy(job.run_id)

        return mock_train(job.config, progress=False, on_status=status, should_stop=should_stop, steps=2)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--db", required=True)
    p.add_argument("--artifacts", required=True)
    p.add_argument("--marks", required=True, type=Path)
    p.add_argument("--hold", type=float, default=5.0)
    p.add_argument("--heartbeat", type=float, default=0.5)
    p.add_argument("--stale-after", type=float, default=30.0)
    a = p.parse_args()
    reg = Registry(a.db, a.artifacts, load_evaluator=MockEvaluator.from_pretrained)
    worker = Worker(reg, BusyExecutor(a.db, a.marks, a.hold), heartbeat_interval=a.heartbeat,
                    stale_after=a.stale_after)
    print(f"busy worker {worker.worker_id} ready", flush=True)
    worker.run()


if __name__ == "__main__":
    main()
