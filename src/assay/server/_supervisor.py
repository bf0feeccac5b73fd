"""``assay serve``'s worker processes: started, watched, reaped and restarted; stale runs failed.

Every ``check_every`` seconds the supervisor polls each worker process (which also reaps an exited
one, so no zombie is left), starts a replacement for one that died (with a growing delay if it
keeps dying), and asks the registry to fail runs whose worker stopped: at once when the worker's
process on this host is gone, else when its heartbeat is older than ``stale_after`` seconds and a
reaper noted the worker quiet at least ``stale_after / 2`` seconds before (see
``assay.registry._queue``: a worker whose beats were held up by the same stall that held up the
reaper, a long write locking the database, gets time to beat). A run's outputs are never removed.
"""

from __future__ import annotations

import logging
import subprocess
import threading
import time
from typing import Any, Callable

log = logging.getLogger("assay.server")


class Supervisor:
    def __init__(self, registry: Any, start: Callable[[], subprocess.Popen], n: int, *, stale_after: float = 60.0,
                 check_every: float = 1.0):
        self.registry = registry
        self.start_fn = start
        self.stale_after = stale_after
        self.check_every = check_every
        self.procs: list[subprocess.Popen] = [start() for _ in range(n)]
        self.restarts = [0] * n
        self.next_start = [0.0] * n
        self.failed_runs: list[str] = []
        self.last_check: float | None = None
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._loop, name="assay-supervisor", daemon=True)

    def start(self) -> "Supervisor":
        self._thread.start()
        return self

    def status(self) -> dict[str, Any]:
        with self._lock:
            procs = [{"pid": p.pid, "alive": p.poll() is None, "restarts": r}
                     for p, r in zip(self.procs, self.restarts)]
        return {"processes": procs, "stale_after_s": self.stale_after, "runs_failed_by_reaper": len(self.failed_runs),
                "last_check_age_s": None if self.last_check is None else round(time.time() - self.last_check, 1)}

    def check(self) -> None:
        """One round: reap and restart dead workers, fail runs of stopped workers."""
        now = time.time()
        with self._lock:
            for i, p in enumerate(self.procs):
                code = p.poll()  # reaps an exited child
                if code is None or self._stop.is_set():
                    continue
                if self.next_start[i] == 0.0:
                    delay = min(30.0, 0.5 * 2 ** min(self.restarts[i], 6))
                    self.next_start[i] = now + (0.0 if self.restarts[i] == 0 else delay)
                    log.warning("worker pid %s exited with %s; restarting", p.pid, code)
                    try:
                        self.registry.runs.worker_gone(p.pid)
                    except Exception as exc:  # advisory
                        log.warning("could not record the worker's exit: %s", exc)
                if now >= self.next_start[i]:
                    self.procs[i] = self.start_fn()
                    self.restarts[i] += 1
                    self.next_start[i] = 0.0
        try:
            failed = self.registry.runs.recover_stale(self.stale_after)
        except Exception as exc:  # a database hiccup: next round
            log.warning("stale-run check failed: %s", exc)
            failed = []
        for rid in failed:
            log.warning("run %s: its worker stopped; marked Failed", rid)
        self.failed_runs += failed
        self.last_check = time.time()

    def _loop(self) -> None:
        while not self._stop.wait(self.check_every):
            self.check()

    def stop(self, timeout: float = 30.0) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        with self._lock:
            for p in self.procs:
                p.terminate()
            for p in self.procs:
                try:
                    p.wait(timeout=timeout)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
