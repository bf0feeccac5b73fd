"""Throughput, latency and cost of a scoring function on this machine."""

from __future__ import annotations

import os
import platform
import sys
import time
from typing import Any, Callable, Sequence

import numpy as np

from .._cpu import cpu_flags, usable_cores
from ..errors import AssayError


def measure_speed(
    score_fn: Callable[[list[Any]], Any],
    rows: Sequence[Any],
    batch_sizes: Sequence[int] = (1, 8, 32, 64),
    cost_per_hour: float = 0.10,
    judge_cost_per_eval: float = 0.05,
    max_rows: int = 256,
    device: str | None = None,
    floor: Callable[[list[Any], int], Callable[[], Any]] | None = None,
    time_limit: float | None = None,
) -> dict[str, Any]:
    """Time ``score_fn`` (a list of rows in, scores out) at each batch size.

    The first ``max_rows`` rows are scored once per batch size after an untimed pass at that batch size
    (as the floor gets: a GPU tunes kernels for every new padded shape, which is not scoring speed);
    batch sizes larger than the rows timed are skipped. Cost per 1M evaluations is
    ``1e6 / best_rows_per_s / 3600 * cost_per_hour``. ``floor(rows, batch_size)`` returns a runner
    of the bare model forward over the same rows, prepared beforehand (tokenised and padded: what
    no scoring path can avoid); it is timed right after the product path at each batch size, and
    the product's rows/s is stated as a ratio of it. The load average at start and end and the
    CPU's flags are recorded with the machine: timings on a busy machine are not comparable.
    ``time_limit`` (seconds): once the measurement has taken that long, the remaining batch sizes are
    skipped (listed in ``skipped_batch_sizes`` with the reason in ``skipped_reason``); the first always runs.
    """
    load_start = _load()
    rows = list(rows)[:max_rows]
    if not rows:
        raise AssayError("at least one row to time", "no rows", "pass rows to score", code="invalid_input")
    n = len(rows)
    sizes = sorted({int(b) for b in batch_sizes if int(b) >= 1})
    usable = [b for b in sizes if b <= n] or [n]
    batches = []
    started, cut = time.perf_counter(), []
    for b in usable:
        if time_limit is not None and batches and time.perf_counter() - started > time_limit:
            cut.append(b)
            continue
        batches.append(time_batches(score_fn, rows, b, floor))
    best = max(batches, key=lambda x: x["rows_per_s"] or 0.0)
    best_rps = best["rows_per_s"]
    single = next((x for x in batches if x["batch_size"] == 1), None)
    cost = 1e6 / best_rps / 3600 * cost_per_hour if best_rps else None
    judge = judge_cost_per_eval * 1e6
    return {
        "rows_timed": n,
        "batches": batches,
        "skipped_batch_sizes": [b for b in sizes if b not in usable or b in cut],
        "skipped_reason": (f"the measurement's time limit ({time_limit:.0f} s, from train.budget) was reached "
                           f"before batch sizes {cut}" if cut else None),
        "latency_ms": single["row_latency_ms"] if single else None,  # one row per call
        "best_batch_size": best["batch_size"],
        "best_rows_per_s": best_rps,
        "cost_per_hour": cost_per_hour,
        "cost_per_1m": cost,
        "judge_cost_per_eval": judge_cost_per_eval,
        "judge_cost_per_1m": judge,
        "cheaper_than_judge": (judge / cost) if cost else None,
        "floor": ("the bare model forward on the same rows, tokenised and padded beforehand, timed after "
                  "the product path at each batch size" if floor is not None else None),
        "ratio_to_floor": best.get("ratio_to_floor"),
        "machine": {**machine_info(device), "load_average_start": load_start, "load_average_end": _load()},
    }


def time_batches(score_fn: Callable[[list[Any]], Any], rows: list[Any], b: int,
                 floor: Callable[[list[Any], int], Callable[[], Any]] | None = None) -> dict[str, Any]:
    """``rows`` scored in batches of ``b`` after an untimed pass: rows/s, latency per call and per row,
    and (with ``floor``) the bare forward's rows/s right after and the product's ratio to it."""
    n = len(rows)
    for start in range(0, n, b):  # warm-up at this batch size, like the floor's
        score_fn(rows[start : start + b])
    times = []
    t_all = time.perf_counter()
    for start in range(0, n, b):
        chunk = rows[start : start + b]
        t0 = time.perf_counter()
        score_fn(chunk)
        times.append((time.perf_counter() - t0, len(chunk)))
    total = time.perf_counter() - t_all
    call_ms = np.array([t for t, _ in times]) * 1000
    row_ms = np.array([t / m for t, m in times]) * 1000
    bare: dict[str, Any] = {}
    if floor is not None:
        run = floor(rows, b)
        run()  # warm-up at this batch size
        t0 = time.perf_counter()
        run()
        floor_s = time.perf_counter() - t0
        floor_rps = n / floor_s if floor_s > 0 else None
        bare = {"floor_rows_per_s": floor_rps,
                "ratio_to_floor": (n / total) / floor_rps if floor_rps and total > 0 else None}
    return {
        **bare,
        "batch_size": b,
        "rows": n,
        "calls": len(times),
        "seconds": total,
        "rows_per_s": n / total if total > 0 else None,
        "batch_latency_ms": {"p50": float(np.percentile(call_ms, 50)), "p95": float(np.percentile(call_ms, 95))},
        "row_latency_ms": {"p50": float(np.percentile(row_ms, 50)), "p95": float(np.percentile(row_ms, 95))},
    }


def _load() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:  # pragma: no cover - no load average on this platform
        return None


def machine_info(device: str | None = None) -> dict[str, Any]:
    """CPU model, cores, torch threads, device and platform (torch is read only if loaded)."""
    torch = sys.modules.get("torch")
    threads = None
    if torch is not None:
        try:
            threads = int(torch.get_num_threads())
            if device is None:
                device = f"cuda ({torch.cuda.get_device_name(0)})" if torch.cuda.is_available() else "cpu"
        except Exception:  # pragma: no cover - a torch without these calls
            pass
    usable = usable_cores()  # affinity capped by the cgroup quota: what torch's threads default to
    simd = sorted(f for f in cpu_flags() if f.startswith(("avx", "amx")) or f in ("fma", "f16c"))
    return {
        "cpu": _cpu_model(),
        "cpu_flags": " ".join(simd) or None,
        "cores": os.cpu_count(),
        "usable_cores": usable,
        "torch_threads": threads,
        "torch_version": getattr(torch, "__version__", None) if torch is not None else None,
        "device": device or "cpu",
        "platform": platform.platform(),
        "python": platform.python_version(),
    }


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"
