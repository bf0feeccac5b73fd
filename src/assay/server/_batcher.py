"""Micro-batching of score requests, one queue per metric version: a request that finds the
scoring thread idle is scored at once, alone (an idle server adds no latency); requests that
arrive while it is busy queue, and the next evaluator call takes all of them (up to ``max_rows``
rows), so batches grow exactly with the load.

The wait window (``max_wait_ms``) is used only under load: when the previous call for the version
carried several requests and ended moments ago (the clients it answered are about to send again),
the next call waits at most ``max_wait_ms``, and only until as many requests as last time are in,
so a closed loop of N clients keeps riding in batches of N instead of alternating 1 and N-1. A lone
request on an idle queue never waits it.

Threads: one scoring thread is the process's inference owner. It takes the queued requests itself
as soon as a call ends, without a round trip through the event loop (under load that loop is busy
parsing and answering requests: the next call used to wait behind it, 50 ms per call at 64 clients),
and hands each caller its results with ``call_soon_threadsafe``. Its torch intra-op threads are the
usable cores less one (``assay._cpu.serve_threads``), so the event loop keeps a core.

Several metrics, one body: when a call is taken, the queued requests of other versions whose evaluators
run the same frozen body (MiniLM, SmolLM2: ``evaluator._shared``) ride in the same round, one evaluator
call per version inside one shared-body scope, so the body runs once per distinct text; each version's
callers are answered as soon as its own call ends. ``score_many`` queues one request per version at once
(``POST /v1/guard`` with several metrics), so they are always taken together.

Memory: every evaluator call runs on that one thread (not asyncio's default pool, where each of
many threads got its own malloc arena and the arenas kept the freed tensors' pages: server RSS grew
with every batch and was not returned). When the queues go idle the process hands free heap pages
back to the system (``malloc_trim``, glibc only).
"""

from __future__ import annotations

import asyncio
import ctypes
import sys
import threading
import time
from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Callable

from ..evaluator._shared import SharedScorer, body_keys
from ..registry import MetricVersion, Registry, ScoreResult

LOAD_GAP_S = 0.1  # a queue whose last multi-request call ended longer ago than this is idle: no window
TRIM_EVERY_S = 1.0  # idle heap trimming at most this often


@dataclass
class BatchStats:
    batches: int = 0
    requests: int = 0
    rows: int = 0
    largest_batch_requests: int = 0
    largest_batch_rows: int = 0
    immediate: int = 0  # calls dispatched without waiting (the scorer was idle, or the queue was)
    windowed: int = 0  # calls that held the wait window under load
    scoring_ms: int = 0  # wall time inside the evaluator calls, on the scoring thread
    scoring_cpu_ms: int = 0  # that thread's CPU time in them (less than scoring_ms: waits for the GIL or cores)
    dispatch_ms: int = 0  # from a call's end to the next call's start while requests were queued (window included)
    shared: int = 0  # calls scored in one shared-body round with other versions' calls (evaluator._shared)

    def to_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


@dataclass
class _Queue:
    """The queued requests of one metric version on one event loop."""

    version: MetricVersion
    loop: asyncio.AbstractEventLoop
    pending: deque = field(default_factory=deque)  # (rows, asyncio future, arrival number)
    stats: BatchStats = field(default_factory=BatchStats)
    last_requests: int = 0  # requests in the previous call
    last_end: float = float("-inf")  # time.monotonic() the previous call ended
    backlog_since: float | None = None  # the previous call's end, when requests were queued then

    def rows(self) -> int:
        return sum(len(item[0]) for item in self.pending)


class ScoreBatcher:
    """One collecting queue per metric version; one scoring thread for all of them."""

    def __init__(self, registry: Registry, *, max_rows: int = 64, max_wait_ms: float = 10.0,
                 threads: int | None = None):
        self.registry = registry
        self.max_rows = max(1, int(max_rows))
        self.max_wait = max(0.0, max_wait_ms / 1000.0)
        self.threads = threads  # torch intra-op threads of the scoring thread (None: assay._cpu.serve_threads)
        self._queues: dict[str, _Queue] = {}
        self._calls: deque = deque()  # (fn, concurrent Future): other work for the scoring thread
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._closed = False
        self._trim = _malloc_trim()
        self._trimmed = 0.0
        self._arrivals = 0

    # --- the event loop's side ------------------------------------------------------------------
    def stats(self) -> dict[str, dict[str, int]]:
        with self._cond:
            return {name: q.stats.to_dict() for name, q in self._queues.items()}

    async def score(self, version: MetricVersion, rows: list[dict[str, Any]]) -> tuple[list[ScoreResult], dict]:
        """Score ``rows``; returns the results and the size of the batch they rode in."""
        (out,) = await self.score_many([(version, rows)])
        return out

    async def score_many(self, items: list[tuple[MetricVersion, list[dict[str, Any]]]]) -> list[tuple[list[ScoreResult],
                                                                                                     dict]]:
        """Score each (version, rows), queued at once so that versions on one frozen body share its forward;
        returns each item's results and the size of the batch they rode in, in order."""
        loop = asyncio.get_running_loop()
        futs: list[asyncio.Future] = []
        with self._cond:
            self._check_open()
            for version, rows in items:
                q = self._queues.get(version.full_name)
                if q is None or q.loop is not loop:
                    stats = q.stats if q is not None else BatchStats()
                    q = self._queues[version.full_name] = _Queue(version=version, loop=loop, stats=stats)
                self._arrivals += 1
                futs.append(loop.create_future())
                q.pending.append((rows, futs[-1], self._arrivals))
            self._start()
            self._cond.notify()
        return list(await asyncio.gather(*futs))

    def call(self, fn: Callable[[], Any]) -> Future:
        """Run ``fn()`` on the scoring thread (between evaluator calls); a concurrent Future of its result."""
        out: Future = Future()
        with self._cond:
            self._check_open()
            self._calls.append((fn, out))
            self._start()
            self._cond.notify()
        return out

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("the score batcher is closed")

    def _start(self) -> None:
        """Start the scoring thread (under the lock)."""
        if self._thread is None and not self._closed:
            self._thread = threading.Thread(target=self._run, name="assay-score", daemon=True)
            self._thread.start()

    # --- the scoring thread -------------------------------------------------------------------
    def _init_scorer(self) -> None:
        """The scoring thread's start: torch's intra-op threads set from this thread (OpenMP keeps the
        count per calling thread), so the event loop keeps a core (:func:`assay._cpu.serve_threads`)."""
        from .._cpu import apply_threads, serve_threads

        want = self.threads or serve_threads()
        self.threads = apply_threads(want) if want else None

    def _run(self) -> None:
        try:
            self._init_scorer()
        except Exception:  # noqa: BLE001 - torch missing or a bad setting: score with torch's own threads
            self.threads = None
        while True:
            with self._cond:
                while not self._closed and not self._calls and not self._ready():
                    self._cond.wait()
                if self._closed:
                    self._fail_all(RuntimeError("the score batcher is closed"))
                    return
                work = self._calls.popleft() if self._calls else None
                taken = None if work else self._take()
            if work is not None:
                fn, out = work
                if out.set_running_or_notify_cancel():
                    try:
                        out.set_result(fn())
                    except BaseException as exc:  # noqa: BLE001 - handed to the caller
                        out.set_exception(exc)
                continue
            if taken is not None:
                self._score_round(*taken)
            self._maybe_trim()

    def _ready(self) -> bool:
        return any(q.pending for q in self._queues.values())

    def _take(self) -> tuple[_Queue, list] | None:
        """(queue, requests) for the next call, under the lock: the queue whose first request
        is oldest; under load, wait up to ``max_wait`` for as many requests as its last call had."""
        qs = [q for q in self._queues.values() if q.pending]
        if not qs:
            return None
        q = min(qs, key=lambda x: x.pending[0][2])  # the oldest waiting request's version first
        windowed = False
        now = time.monotonic()
        if (self.max_wait > 0 and q.last_requests > 1 and now - q.last_end <= LOAD_GAP_S
                and len(q.pending) < q.last_requests):
            windowed = True  # under load: the clients of the last call are sending again; wait (briefly)
            deadline = now + self.max_wait
            while (len(q.pending) < q.last_requests and q.rows() < self.max_rows and not self._closed
                   and not self._calls):
                wait = deadline - time.monotonic()
                if wait <= 0:
                    break
                self._cond.wait(wait)
        return q, self._pop(q, windowed)

    def _pop(self, q: _Queue, windowed: bool = False) -> list:
        """The next call's requests of ``q`` (up to ``max_rows`` rows), counted in its stats (under the lock)."""
        batch: list = []
        n = 0
        while q.pending and (not batch or n + len(q.pending[0][0]) <= self.max_rows):
            item = q.pending.popleft()
            batch.append(item)
            n += len(item[0])
        s = q.stats
        s.batches += 1
        s.requests += len(batch)
        s.rows += n
        s.largest_batch_requests = max(s.largest_batch_requests, len(batch))
        s.largest_batch_rows = max(s.largest_batch_rows, n)
        if windowed:
            s.windowed += 1
        else:
            s.immediate += 1
        return batch

    def _evaluator(self, version: MetricVersion) -> Any:
        """The version's evaluator as the registry keeps it (None: it cannot say; the call reports why)."""
        get = getattr(self.registry.metrics, "evaluator", None)
        try:
            return get(version) if get is not None else None
        except Exception:  # noqa: BLE001 - scoring the version raises it to its callers
            return None

    def _score_round(self, q: _Queue, batch: list) -> None:
        """``q``'s call and, in one shared-body scope, a call for every other version with queued requests
        whose evaluator runs one of the same frozen bodies (evaluator._shared), oldest request first."""
        ev = self._evaluator(q.version)
        keys = body_keys(ev) if ev is not None else frozenset()
        if not keys:
            self._score(q, batch)
            return
        with self._cond:
            others = sorted((o for o in self._queues.values() if o is not q and o.pending),
                            key=lambda o: o.pending[0][2])
        calls = [(q, batch, ev)]
        for o in others:
            other = self._evaluator(o.version)
            if other is None or not body_keys(other) & keys:
                continue
            with self._cond:
                if o.pending:
                    calls.append((o, self._pop(o), other))
        if len(calls) > 1:
            with self._cond:
                for o, _, _ in calls:
                    o.stats.shared += 1
        with SharedScorer(e for _, _, e in calls):
            for o, b, _ in calls:
                self._score(o, b)

    def _score(self, q: _Queue, batch: list) -> None:
        rows = [r for item in batch for r in item[0]]
        info = {"requests": len(batch), "rows": len(rows)}
        t0, c0 = time.monotonic(), time.thread_time()
        try:
            results: Any = self.registry.metrics.score_rows(q.version, rows)
            error: BaseException | None = None
        except Exception as exc:  # noqa: BLE001 - every caller of the batch gets it
            results, error = None, exc
        end = time.monotonic()
        with self._cond:
            s = q.stats
            s.scoring_ms += round(1000 * (end - t0))
            s.scoring_cpu_ms += round(1000 * (time.thread_time() - c0))
            if q.backlog_since is not None:  # requests were waiting when the previous call ended
                s.dispatch_ms += round(1000 * max(0.0, t0 - q.backlog_since))
            q.backlog_since = end if q.pending else None
            q.last_requests, q.last_end = len(batch), end
        _deliver_soon(q.loop, batch, results, error, info)

    def _fail_all(self, exc: BaseException) -> None:
        for q in self._queues.values():
            batch = list(q.pending)
            q.pending.clear()
            if batch:
                _deliver_soon(q.loop, batch, None, exc, {})
        while self._calls:
            _, out = self._calls.popleft()
            if out.set_running_or_notify_cancel():
                out.set_exception(exc)

    def _maybe_trim(self) -> None:
        """Idle (at most once a second): give freed heap pages back to the system."""
        if self._trim is None or time.monotonic() - self._trimmed <= TRIM_EVERY_S:
            return
        with self._cond:
            if self._ready():
                return
        self._trimmed = time.monotonic()
        self._trim(0)


def _deliver_soon(loop: asyncio.AbstractEventLoop, batch: list, results: Any, error: BaseException | None,
                  info: dict) -> None:
    """Hand each caller of ``batch`` its slice of ``results`` (or ``error``) on its event loop."""
    def deliver() -> None:
        i = 0
        for item_rows, fut, _ in batch:
            if not fut.done():
                if error is not None:
                    fut.set_exception(error)
                else:
                    fut.set_result((results[i:i + len(item_rows)], info))
            i += len(item_rows)

    try:
        loop.call_soon_threadsafe(deliver)
    except RuntimeError:  # the loop is closed: its callers are gone
        pass


def _malloc_trim() -> Any:
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None
