"""Batch scoring of a large trace file: in-process ("local", the default) or on Ray Data ("ray").

Both engines cut the rows into the same consecutive batches of ``batch_size`` and score each
batch with the same call, so they give identical results on the same input. Ray runs the
batches on an actor pool (each actor loads the evaluator once); ``ray.init`` binds to
127.0.0.1 without the dashboard.
"""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Literal, Sequence

from ..errors import AssayError, require
from ..traces import Trace, rows_for
from ._checks import load_evaluator

Engine = Literal["local", "ray"]


@dataclass
class BatchResult:
    scores: list[dict[str, Any]]  # one per row, in input order: id, trace_id, label, score, confidence, ...
    engine: str
    seconds: float
    skipped: dict[str, int] = field(default_factory=dict)
    ingest: dict[str, Any] = field(default_factory=dict)

    @property
    def rows_per_second(self) -> float | None:
        return len(self.scores) / self.seconds if self.seconds > 0 else None

    def summary(self) -> dict[str, Any]:
        labels = Counter(s["label"] for s in self.scores)
        return {"engine": self.engine, "rows": len(self.scores), "seconds": round(self.seconds, 3),
                "rows_per_second": round(self.rows_per_second, 2) if self.rows_per_second else None,
                "labels": dict(labels), "skipped": self.skipped, "ingest": self.ingest}


def _score_dicts(ev: Any, rows: Sequence[dict[str, Any]], batch_size: int) -> list[dict[str, Any]]:
    out = []
    for row, s in zip(rows, ev.score(list(rows), batch_size=batch_size)):
        d = s.to_dict() if hasattr(s, "to_dict") else dict(s)
        meta = row.get("meta") if isinstance(row.get("meta"), dict) else {}
        span = {"span_id": meta["span_id"]} if meta.get("span_id") else {}  # span-targeted metrics
        out.append({"id": row["id"], "trace_id": meta.get("trace_id", row["id"]), **span, **d})
    return out


def prepare_rows(evaluator: Any, rows: Any) -> tuple[list[dict[str, Any]], dict[str, int], dict[str, Any]]:
    """Rows for the evaluator's metric from a trace/data file, Traces, or canonical rows."""
    metric = evaluator.metric
    if isinstance(rows, (str, Path)):
        from ._eval import load_dataset

        ing = load_dataset(rows)
        got, skipped = rows_for(ing.traces, metric)
        return got, dict(skipped), ing.summary()
    items = list(rows)
    if items and all(isinstance(x, Trace) for x in items):
        got, skipped = rows_for(items, metric)
        return got, dict(skipped), {}
    bad = [i for i, r in enumerate(items) if not isinstance(r, dict) or "id" not in r]
    if bad:
        raise AssayError("rows as dicts with an id", f"{len(bad)} other items (first at {bad[0]})",
                         "pass canonical rows or a trace file", code="invalid_input")
    return items, {}, {}


def score_file(evaluator: Any, rows: Any, *, engine: Engine = "local", batch_size: int = 64,
               concurrency: int = 1, num_cpus: int = 2, num_gpus: float | None = None) -> BatchResult:
    """Score every row with the evaluator (an artifact directory or an Evaluator object).

    Ray: ``concurrency`` actors share ``num_cpus``; ``num_gpus`` per actor defaults to an equal
    share of one GPU when torch sees CUDA (Ray hides GPUs from actors that ask for none)."""
    if engine not in ("local", "ray"):
        raise AssayError("engine 'local' or 'ray'", f"'{engine}'", "pass --engine local or --engine ray",
                         code="invalid_input")
    if batch_size < 1:
        raise AssayError("a batch size of at least 1", f"{batch_size}", "pass --batch-size 64", code="invalid_input")
    ev = load_evaluator(evaluator) if isinstance(evaluator, (str, Path)) else evaluator
    data, skipped, ingest = prepare_rows(ev, rows)
    chunks = [data[i:i + batch_size] for i in range(0, len(data), batch_size)]
    t0 = time.perf_counter()
    if engine == "local" or not chunks:
        scores = [s for c in chunks for s in _score_dicts(ev, c, batch_size)]
    else:
        scores = _score_ray(evaluator if isinstance(evaluator, (str, Path)) else ev, chunks, batch_size,
                            concurrency, num_cpus, num_gpus)
    return BatchResult(scores, engine, time.perf_counter() - t0, skipped, ingest)


class _RayScorer:
    """Ray Data actor: loads the evaluator once, scores one chunk (a JSON list of rows) per item."""

    def __init__(self, evaluator: Any, batch_size: int, threads: int):
        try:
            import torch

            torch.set_num_threads(max(1, threads))
        except ImportError:  # a non-torch evaluator
            pass
        self.ev = load_evaluator(evaluator) if isinstance(evaluator, (str, Path)) else evaluator
        self.batch_size = batch_size

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        out = []
        for rows_json in batch["rows"]:
            out.append(json.dumps(_score_dicts(self.ev, json.loads(rows_json), self.batch_size), default=float))
        return {"chunk": batch["chunk"], "scores": out}


def init_local_ray(num_cpus: int = 2) -> bool:
    """Start a local Ray bound to 127.0.0.1 without the dashboard; False when one is already running."""
    # Ray replaces a 127.0.0.1 node address by the machine's address unless "cluster mode" is off;
    # off, every Ray process listens on the loopback interface only.
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    ray = require("ray", "the Ray batch engine", extra="ray", package="ray[data]")
    require("ray.data", "the Ray batch engine", extra="ray", package="ray[data]")
    if ray.is_initialized():
        return False
    constants = getattr(getattr(ray, "_private", None), "ray_constants", None)
    if constants is not None and os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] == "0":
        constants.ENABLE_RAY_CLUSTER = False  # ray was imported before the variable was set
    ray.init(_node_ip_address="127.0.0.1", include_dashboard=False, num_cpus=num_cpus, log_to_driver=False,
             configure_logging=False)
    return True


def _gpus_per_actor(size: int) -> float:
    try:
        import torch

        return 1.0 / size if torch.cuda.is_available() else 0.0
    except ImportError:
        return 0.0


def _score_ray(evaluator: Any, chunks: list[list[dict[str, Any]]], batch_size: int, concurrency: int,
               num_cpus: int, num_gpus: float | None = None) -> list[dict[str, Any]]:
    started = init_local_ray(num_cpus)
    import ray

    try:
        import ray.data as rd

        ctx = rd.DataContext.get_current()
        ctx.enable_progress_bars = False
        if hasattr(ctx, "print_on_execution_start"):
            ctx.print_on_execution_start = False
        size = max(1, min(int(concurrency), int(num_cpus)))
        threads = max(1, int(num_cpus) // size)
        ds = rd.from_items([{"chunk": i, "rows": json.dumps(c, ensure_ascii=False, default=str)}
                            for i, c in enumerate(chunks)])
        gpus = _gpus_per_actor(size) if num_gpus is None else float(num_gpus)
        ds = ds.map_batches(_RayScorer, fn_constructor_args=(evaluator, batch_size, threads), batch_size=1,
                            batch_format="numpy", compute=rd.ActorPoolStrategy(size=size), num_cpus=threads,
                            **({"num_gpus": gpus} if gpus else {}))
        results = sorted(ds.take_all(), key=lambda r: int(r["chunk"]))
        if len(results) != len(chunks):
            raise AssayError(f"{len(chunks)} scored batches from Ray", f"{len(results)}", "rerun with --engine local",
                             code="internal")
        return [s for r in results for s in json.loads(str(r["scores"]))]
    finally:
        if started:
            ray.shutdown()


def score_rows(evaluator: Any, rows: Iterable[dict[str, Any]], **kwargs: Any) -> list[dict[str, Any]]:
    """``score_file(...).scores`` for rows already in memory."""
    return score_file(evaluator, list(rows), **kwargs).scores
