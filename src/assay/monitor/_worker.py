"""A monitor worker: claims batches of queued traces from a store and scores them (``assay monitor worker``).

    store = Store("postgresql://monitor@db/assay")          # each worker opens its own connection
    Worker(Monitor(["runs/pii"], store, RouteConfig())).run(idle_timeout=0)   # 0: stop when the queue is empty

Scoring is ``Monitor.process``, the code inline monitoring runs (the same checks, suites, routing and
verdict rows); the queue (claims, leases, finishing) is ``_queue.TraceQueue``. N workers on one
PostgreSQL store share the traffic: each batch is claimed by one of them, and a batch whose worker died
is claimed again once its lease runs out, its missing verdicts stored once.
"""

from __future__ import annotations

import os
import secrets
import socket
import time
from typing import Any, Callable

from ._pipeline import Monitor
from ._queue import TraceQueue


def worker_id() -> str:
    """``host:pid:random``: who holds a claim (unique even for two workers of one process)."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


class Worker:
    """Claim a batch, score it with ``monitor``, finish it; again, until told to stop.

    ``lease``: seconds a claimed batch stays this worker's (must exceed the time one batch takes);
    ``max_attempts``: claims of a trace before it is parked; ``clock``: the queue's time (default the
    monitor's)."""

    def __init__(self, monitor: Monitor, *, name: str | None = None, batch_size: int | None = None,
                 lease: float = 120.0, max_attempts: int = 5, clock: Callable[[], float] | None = None):
        self.monitor = monitor
        self.queue = TraceQueue(monitor.store, lease=lease, max_attempts=max_attempts, clock=clock or monitor.clock)
        self.name = name or worker_id()
        self.batch_size = batch_size or monitor.batch_size
        self.batches = 0
        self.finished = 0  # traces scored and taken off the queue by this worker

    def run_once(self, limit: int | None = None) -> int:
        """Claim one batch (up to ``limit`` traces), score it, finish it; how many traces (0: none free).

        A batch that fails is handed back (claimable at once by any worker) and the error raised."""
        claim = self.queue.claim(self.name, limit or self.batch_size)
        if not claim.ids:
            return 0
        try:
            self.monitor.process(claim.traces)
        except BaseException as exc:
            self.queue.release(self.name, claim.ids, f"{type(exc).__name__}: {exc}")
            raise
        self.queue.finish(claim)
        self.batches += 1
        self.finished += len(claim.ids)
        return len(claim.ids)

    def run(self, *, max_traces: int | None = None, idle_timeout: float | None = None, poll: float = 1.0,
            should_stop: Callable[[], bool] | None = None) -> dict[str, Any]:
        """Work until ``should_stop()``, ``max_traces`` scored, ``idle_timeout`` seconds without a free trace
        (0: stop once the queue is empty) or Ctrl-C / SIGTERM (the batch in hand is finished or handed back)."""
        store = self.monitor.store
        self.monitor.run_id = store.start_run({"worker": self.name, "queue": True, "lease": self.queue.lease,
                                               "route": self.monitor.router.config.model_dump(mode="json")})
        idle_since = time.monotonic()
        try:
            while not (should_stop and should_stop()):
                left = None if max_traces is None else max_traces - self.finished
                if left is not None and left <= 0:
                    break
                if self.run_once(min(self.batch_size, left) if left is not None else None):
                    idle_since = time.monotonic()
                    continue
                if idle_timeout is not None and time.monotonic() - idle_since >= idle_timeout:
                    break
                time.sleep(poll)
        except KeyboardInterrupt:
            pass
        finally:
            store.finish_run(self.monitor.run_id, self.summary())
        return self.summary()

    def summary(self) -> dict[str, Any]:
        """The monitor's summary with this worker's figures and the queue's state."""
        return {**self.monitor.summary(), "worker": {"name": self.name, "batches": self.batches,
                                                     "traces": self.finished}, "queue": self.queue.stats()}
