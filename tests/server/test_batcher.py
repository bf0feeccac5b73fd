"""The score micro-batcher: an idle queue dispatches a lone request at once, requests that queue
while the scoring thread is busy share the next evaluator call, each caller gets its own rows."""

from __future__ import annotations

import asyncio
import threading
from types import SimpleNamespace

import pytest

from assay.server import ScoreBatcher


class _Metrics:
    """A stand-in for the registry's metrics: records every call; the first may be held busy."""

    def __init__(self, hold_first: bool = False):
        self.calls: list[list[str]] = []
        self.started = threading.Event()
        self.release = threading.Event()
        if not hold_first:
            self.release.set()

    def score_rows(self, version, rows):
        self.calls.append([r["input"] for r in rows])
        self.started.set()
        assert self.release.wait(10)
        return [f"scored {r['input']}" for r in rows]


def _batcher(metrics: _Metrics, **kw) -> ScoreBatcher:
    return ScoreBatcher(SimpleNamespace(metrics=metrics), **kw)


VERSION = SimpleNamespace(full_name="m-v1")


async def _hold_first_call(b: ScoreBatcher, metrics: _Metrics) -> asyncio.Future:
    """Send a lone request "x" and wait until the scoring thread is busy (held) with it."""
    first = asyncio.ensure_future(b.score(VERSION, [{"input": "x"}]))
    assert await asyncio.get_running_loop().run_in_executor(None, metrics.started.wait, 5)
    return first


def test_idle_batcher_dispatches_a_lone_request_without_its_window():
    metrics = _Metrics()
    b = _batcher(metrics, max_wait_ms=60_000)  # a window this long would time the request out below

    async def go():
        first = await asyncio.wait_for(b.score(VERSION, [{"input": "a"}]), 5)
        second = await asyncio.wait_for(b.score(VERSION, [{"input": "b"}]), 5)  # idle again: at once
        return first, second

    try:
        (res1, info1), (res2, info2) = asyncio.run(go())
    finally:
        b.close()
    assert res1 == ["scored a"] and res2 == ["scored b"]
    assert info1 == {"requests": 1, "rows": 1} and info2 == {"requests": 1, "rows": 1}
    assert metrics.calls == [["a"], ["b"]]
    s = b.stats()["m-v1"]
    assert s["batches"] == 2 and s["immediate"] == 2 and s["windowed"] == 0


def test_requests_queued_while_busy_share_one_call_in_order():
    metrics = _Metrics(hold_first=True)
    b = _batcher(metrics, max_rows=64, max_wait_ms=10)

    async def go():
        first = await _hold_first_call(b, metrics)  # the scorer is busy with "x"
        queued = [asyncio.ensure_future(b.score(VERSION, rows)) for rows in
                  ([{"input": "a1"}], [{"input": "b1"}, {"input": "b2"}], [{"input": "c1"}],
                   [{"input": "d1"}, {"input": "d2"}, {"input": "d3"}])]
        await asyncio.sleep(0.05)  # they all queue behind the busy call
        assert len(metrics.calls) == 1
        metrics.release.set()
        return await asyncio.wait_for(first, 5), await asyncio.wait_for(asyncio.gather(*queued), 5)

    try:
        (res0, info0), queued = asyncio.run(go())
    finally:
        b.close()
    assert res0 == ["scored x"] and info0 == {"requests": 1, "rows": 1}
    assert metrics.calls == [["x"], ["a1", "b1", "b2", "c1", "d1", "d2", "d3"]]  # one call for all four
    assert [res for res, _ in queued] == [["scored a1"], ["scored b1", "scored b2"], ["scored c1"],
                                          ["scored d1", "scored d2", "scored d3"]]
    assert all(info == {"requests": 4, "rows": 7} for _, info in queued)
    s = b.stats()["m-v1"]
    assert s["batches"] == 2 and s["requests"] == 5 and s["rows"] == 8 and s["largest_batch_requests"] == 4


def test_max_rows_splits_the_queue_and_errors_reach_every_caller():
    metrics = _Metrics(hold_first=True)
    b = _batcher(metrics, max_rows=3, max_wait_ms=0)

    async def go():
        first = await _hold_first_call(b, metrics)
        queued = [asyncio.ensure_future(b.score(VERSION, [{"input": f"r{i}"}, {"input": f"s{i}"}])) for i in range(3)]
        await asyncio.sleep(0.02)
        metrics.release.set()
        await first
        return [r for r, _ in await asyncio.wait_for(asyncio.gather(*queued), 5)]

    try:
        out = asyncio.run(go())
    finally:
        b.close()
    assert out == [[f"scored r{i}", f"scored s{i}"] for i in range(3)]
    assert metrics.calls[1:] == [["r0", "s0"], ["r1", "s1"], ["r2", "s2"]]  # 2 + 2 rows would pass max_rows 3

    class Broken:
        def score_rows(self, version, rows):
            raise RuntimeError("boom")

    b = _batcher(Broken())

    async def fail():
        return await asyncio.gather(*(b.score(VERSION, [{"input": str(i)}]) for i in range(3)),
                                    return_exceptions=True)

    try:
        errs = asyncio.run(fail())
    finally:
        b.close()
    assert all(isinstance(e, RuntimeError) for e in errs)


def test_a_batch_of_mixed_lengths_is_split_by_length_not_padded_to_its_longest():
    from assay.evaluator._chunks import length_chunks

    lengths = [5, 6, 6, 7, 20, 21, 22, 90, 95, 98]
    chunks = length_chunks(lengths, 32)
    assert chunks[0][0] == 0 and chunks[-1][1] == len(lengths)
    assert all(a[1] == b[0] for a, b in zip(chunks, chunks[1:]))  # consecutive, every row once
    padded = sum((b - a) * lengths[b - 1] for a, b in chunks)
    assert padded < 0.6 * len(lengths) * max(lengths)  # one call would pad 10 rows to 98 tokens
    equal = length_chunks([12] * 70, 32)
    assert len(equal) == 3 and all(b - a <= 32 for a, b in equal)  # equal lengths: as few calls as batch_size allows
    assert len(length_chunks([12] * 64, 32)) == 2 and length_chunks([], 32) == []


def test_the_scoring_thread_sets_its_torch_threads_and_times_its_calls(monkeypatch):
    """The one inference owner: torch's intra-op threads set on the scoring thread (assay serve
    --threads, else the usable cores less one for the event loop); its calls' wall and CPU time counted."""
    torch = pytest.importorskip("torch")
    from assay import _cpu

    before = torch.get_num_threads()
    seen: list[int] = []

    class _Threads(_Metrics):
        def score_rows(self, version, rows):
            seen.append(torch.get_num_threads())
            return super().score_rows(version, rows)

    monkeypatch.delenv(_cpu.SERVE_THREADS_ENV, raising=False)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv("MKL_NUM_THREADS", raising=False)
    try:
        for requested, usable, expect in ((1, 4, 1), (None, 2, 1), (None, 3, 2)):
            monkeypatch.setattr(_cpu, "usable_cores", lambda *a, u=usable, **k: u)
            torch.set_num_threads(4)
            b = _batcher(_Threads(), threads=requested)
            try:
                asyncio.run(b.score(VERSION, [{"input": "a"}]))
            finally:
                b.close()
            assert seen[-1] == expect and b.threads == expect
        s = b.stats()["m-v1"]
        assert {"scoring_ms", "scoring_cpu_ms", "dispatch_ms"} <= set(s) and s["scoring_ms"] >= 0
    finally:
        torch.set_num_threads(before)


def test_the_scoring_thread_starts_the_next_call_without_waiting_for_the_event_loop():
    """Requests queued while a call runs are taken by the scoring thread itself when it ends: a busy
    event loop (here: blocked outright) does not hold the next call back."""
    import time

    metrics = _Metrics(hold_first=True)
    b = _batcher(metrics, max_rows=64, max_wait_ms=0)

    async def go():
        first = await _hold_first_call(b, metrics)
        queued = [asyncio.ensure_future(b.score(VERSION, [{"input": f"q{i}"}])) for i in range(3)]
        await asyncio.sleep(0.02)  # the three are queued
        metrics.release.set()
        deadline = time.monotonic() + 5
        while len(metrics.calls) < 2 and time.monotonic() < deadline:
            time.sleep(0.005)  # the event loop is blocked here: only the scoring thread can start call 2
        calls_while_blocked = [list(c) for c in metrics.calls]
        await asyncio.wait_for(asyncio.gather(first, *queued), 5)
        on_thread = await asyncio.wrap_future(b.call(lambda: threading.current_thread().name))
        return calls_while_blocked, on_thread

    try:
        calls, on_thread = asyncio.run(go())
    finally:
        b.close()
    assert calls == [["x"], ["q0", "q1", "q2"]] and on_thread == "assay-score"
    with pytest.raises(RuntimeError, match="closed"):
        asyncio.run(b.score(VERSION, [{"input": "late"}]))
