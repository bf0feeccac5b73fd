"""Micro-batching of score requests: requests for the same metric version that arrive within
``max_wait_ms`` of each other (up to ``max_rows`` rows) share one evaluator call, so many
small concurrent requests cost about as much as one batched forward pass.

Memory: every evaluator call runs on one dedicated scoring thread (not asyncio's default pool,
where each of many threads got its own malloc arena and the arenas kept the freed tensors'
pages: server RSS grew with every batch and was not returned). When a queue goes idle the
process hands free heap pages back to the system (``malloc_trim``, glibc only).
"""

from __future__ import annotations

import asyncio
import ctypes
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from ..registry import MetricVersion, Registry, ScoreResult


@dataclass
class BatchStats:
    batches: int = 0
    requests: int = 0
    rows: int = 0
    largest_batch_requests: int = 0
    largest_batch_rows: int = 0

    def to_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


@dataclass
class _Queue:
    loop: asyncio.AbstractEventLoop
    queue: asyncio.Queue
    task: asyncio.Task | None = None
    stats: BatchStats = field(default_factory=BatchStats)


class ScoreBatcher:
    """One collecting queue (and one consumer task) per metric version and event loop."""

    def __init__(self, registry: Registry, *, max_rows: int = 64, max_wait_ms: float = 10.0):
        self.registry = registry
        self.max_rows = max_rows
        self.max_wait = max_wait_ms / 1000.0
        self._queues: dict[str, _Queue] = {}
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="assay-score")
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
            q = _Queue(loop=loop, queue=asyncio.Queue())
            q.task = loop.create_task(self._consume(version, q))
            self._queues[version.full_name] = q
        fut: asyncio.Future = loop.create_future()
        await q.queue.put((rows, fut))
        return await fut

    async def _consume(self, version: MetricVersion, q: _Queue) -> None:
        loop = asyncio.get_running_loop()
        while True:
            first = await q.queue.get()
            batch = [first]
            n = len(first[0])
            deadline = loop.time() + self.max_wait
            while n < self.max_rows:
                wait = deadline - loop.time()
                if wait <= 0:
                    break
                try:
                    item = await asyncio.wait_for(q.queue.get(), wait)
                except (asyncio.TimeoutError, TimeoutError):
                    break
                batch.append(item)
                n += len(item[0])
            rows = [r for item_rows, _ in batch for r in item_rows]
            info = {"requests": len(batch), "rows": len(rows)}
            s = q.stats
            s.batches += 1
            s.requests += len(batch)
            s.rows += len(rows)
            s.largest_batch_requests = max(s.largest_batch_requests, len(batch))
            s.largest_batch_rows = max(s.largest_batch_rows, len(rows))
            try:
                results = await loop.run_in_executor(self._pool, self.registry.metrics.score_rows, version, rows)
            except Exception as exc:
                for _, fut in batch:
                    if not fut.done():
                        fut.set_exception(exc)
                results = None
            if results is not None:
                i = 0
                for item_rows, fut in batch:
                    if not fut.done():
                        fut.set_result((results[i:i + len(item_rows)], info))
                    i += len(item_rows)
            del batch, rows, results
            if q.queue.empty() and self._trim is not None and loop.time() - self._trimmed > 1.0:
                self._trimmed = loop.time()  # idle (at most once a second): give freed pages back
                await loop.run_in_executor(self._pool, self._trim, 0)


def _malloc_trim() -> Any:
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None
