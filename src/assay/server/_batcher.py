"""Micro-batching of score requests, one queue per metric version: a request that finds the
scoring thread idle is scored at once, alone (an idle server adds no latency); requests that
arrive while it is busy queue, and the next evaluator call takes all of them (up to ``max_rows``
rows), so batches grow exactly with the load.

The wait window (``max_wait_ms``) is used only under load: when the previous call for the version
carried several requests and ended moments ago (the clients it answered are about to send again),
the next call waits at most ``max_wait_ms``, and only until as many requests as last time are in,
so a closed loop of N clients keeps riding in batches of N instead of alternating 1 and N-1. A lone
request on an idle queue never waits it.

Memory: every evaluator call runs on one dedicated scoring thread (not asyncio's default pool,
where each of many threads got its own malloc arena and the arenas kept the freed tensors'
pages: server RSS grew with every batch and was not returned). When a queue goes idle the
process hands free heap pages back to the system (``malloc_trim``, glibc only).
"""

from __future__ import annotations

import asyncio
import ctypes
import sys
import weakref
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from ..registry import MetricVersion, Registry, ScoreResult

LOAD_GAP_S = 0.1  # a queue whose last multi-request call ended longer ago than this is idle: no window


@dataclass
class BatchStats:
    batches: int = 0
    requests: int = 0
    rows: int = 0
    largest_batch_requests: int = 0
    largest_batch_rows: int = 0
    immediate: int = 0  # calls dispatched without waiting (the scorer was idle, or the queue was)
    windowed: int = 0  # calls that held the wait window under load

    def to_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


@dataclass
class _Queue:
    loop: asyncio.AbstractEventLoop
    pending: deque = field(default_factory=deque)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task | None = None
    stats: BatchStats = field(default_factory=BatchStats)
    last_requests: int = 0  # requests in the previous call
    last_end: float = float("-inf")  # loop time the previous call ended


class ScoreBatcher:
    """One collecting queue (and one consumer task) per metric version and event loop; one scoring
    thread for all of them."""

    def __init__(self, registry: Registry, *, max_rows: int = 64, max_wait_ms: float = 10.0):
        self.registry = registry
        self.max_rows = max(1, int(max_rows))
        self.max_wait = max(0.0, max_wait_ms / 1000.0)
        self._queues: dict[str, _Queue] = {}
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="assay-score")
        self._scorer: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # loop -> Lock: the thread is busy
        self._trim = _malloc_trim()
        self._trimmed = 0.0

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    def stats(self) -> dict[str, dict[str, int]]:
        return {name: q.stats.to_dict() for name, q in self._queues.items()}

    async def score(self, version: MetricVersion, rows: list[dict[str, Any]]) -> tuple[list[ScoreResult], dict]:
        """Score ``rows``; returns the results and the size of the batch they rode in."""
        loop = asyncio.get_running_loop()
        q = self._queues.get(version.full_name)
        if q is None or q.loop is not loop or q.task is None or q.task.done():
            q = _Queue(loop=loop)
            q.task = loop.create_task(self._consume(version, q))
            self._queues[version.full_name] = q
        fut: asyncio.Future = loop.create_future()
        q.pending.append((rows, fut))
        q.wake.set()
        return await fut

    def _take(self, q: _Queue, batch: list, n: int) -> int:
        """Move queued requests into ``batch`` while their rows fit ``max_rows`` (the first one always)."""
        while q.pending and (not batch or n + len(q.pending[0][0]) <= self.max_rows):
            item = q.pending.popleft()
            batch.append(item)
            n += len(item[0])
        return n

    async def _consume(self, version: MetricVersion, q: _Queue) -> None:
        loop = asyncio.get_running_loop()
        lock = self._scorer.setdefault(loop, asyncio.Lock())
        while True:
            while not q.pending:
                q.wake.clear()
                await q.wake.wait()
            batch: list = []
            n = 0
            windowed = False
            if (self.max_wait > 0 and q.last_requests > 1 and loop.time() - q.last_end <= LOAD_GAP_S
                    and len(q.pending) < q.last_requests):
                # under load: the clients of the last call are sending again; wait (briefly) for them
                windowed = True
                deadline = loop.time() + self.max_wait
                while len(q.pending) < q.last_requests and sum(len(r) for r, _ in q.pending) < self.max_rows:
                    wait = deadline - loop.time()
                    if wait <= 0:
                        break
                    q.wake.clear()
                    try:
                        await asyncio.wait_for(q.wake.wait(), wait)
                    except (asyncio.TimeoutError, TimeoutError):
                        break
            async with lock:  # the scoring thread is free: take everything queued meanwhile
                n = self._take(q, batch, n)
                rows = [r for item_rows, _ in batch for r in item_rows]
                info = {"requests": len(batch), "rows": len(rows)}
                s = q.stats
                s.batches += 1
                s.requests += len(batch)
                s.rows += len(rows)
                s.largest_batch_requests = max(s.largest_batch_requests, len(batch))
                s.largest_batch_rows = max(s.largest_batch_rows, len(rows))
                if windowed:
                    s.windowed += 1
                else:
                    s.immediate += 1
                try:
                    results = await loop.run_in_executor(self._pool, self.registry.metrics.score_rows, version, rows)
                except Exception as exc:
                    for _, fut in batch:
                        if not fut.done():
                            fut.set_exception(exc)
                    results = None
            q.last_requests, q.last_end = len(batch), loop.time()
            if results is not None:
                i = 0
                for item_rows, fut in batch:
                    if not fut.done():
                        fut.set_result((results[i:i + len(item_rows)], info))
                    i += len(item_rows)
            del batch, rows, results
            if not q.pending and self._trim is not None and loop.time() - self._trimmed > 1.0:
                self._trimmed = loop.time()  # idle (at most once a second): give freed pages back
                await loop.run_in_executor(self._pool, self._trim, 0)


def _malloc_trim() -> Any:
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None
