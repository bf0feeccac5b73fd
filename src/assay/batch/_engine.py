"""Batch scoring of a large trace file: in-process ("local", the default) or on Ray Data ("ray").

Both engines cut the rows into the same consecutive batches of ``batch_size`` and score each
batch with the same call, so they give identical results on the same input. Ray runs the
batches on an actor pool (each actor loads the evaluator once); ``ray.init`` binds to
127.0.0.1 without the dashboard.

An evaluator given by reference (a path) is opened by ``load``, in this process and in each Ray
actor (so ``load`` must be a module-level function): by default :func:`open_artifact`, an artifact
folder. ``assay.monitor.score_file`` (and ``assay score``) pass the monitor's ``load_evaluator``,
which also opens a registered metric name with its version's threshold.

Several metrics over the same file (:func:`score_metrics`, local): the file is read once and each chunk
of rows is scored by every evaluator in one ``evaluator._shared`` scope, so metrics on one frozen body
(MiniLM, SmolLM2) run it once per distinct text, with the scores each gets from :func:`score_file` alone.
"""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Literal, Sequence

from ..errors import AssayError, require
from ..evaluator import Evaluator
from ..evaluator._artifact import INFO_FILE
from ..evaluator._shared import SharedScorer
from ..traces import Ingest, Trace, rows_for
from ._read import read_dataset

Engine = Literal["local", "ray"]
Loader = Callable[[Any], Any]  # an evaluator reference (a path, a name) -> an evaluator


def open_artifact(ref: str | Path) -> Any:
    """The evaluator of an artifact folder (the output directory of ``assay train``): the default ``load``."""
    path = Path(ref).expanduser()
    if not (path / INFO_FILE).exists():
        raise AssayError(f"an evaluator artifact directory with {INFO_FILE}",
                         f"'{ref}': " + (f"a folder without {INFO_FILE}" if path.is_dir() else "no such folder"),
                         "pass the output directory of `assay train` (a registered metric name: score with "
                         "assay.monitor.score_file, or pass load=assay.monitor.load_evaluator)", code="not_found")
    return Evaluator.from_pretrained(path)


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
    """Rows for the evaluator's metric from a trace/data file, an Ingest, Traces, or canonical rows."""
    metric = evaluator.metric
    if isinstance(rows, (str, Path, Ingest)):
        ing = read_dataset(rows)
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
               concurrency: int = 1, num_cpus: int = 2, num_gpus: float | None = None,
               load: Loader = open_artifact) -> BatchResult:
    """Score every row with the evaluator (an Evaluator object, or a reference ``load`` opens).

    Ray: ``concurrency`` actors share ``num_cpus``; ``num_gpus`` per actor defaults to an equal
    share of one GPU when torch sees CUDA (Ray hides GPUs from actors that ask for none)."""
    if engine not in ("local", "ray"):
        raise AssayError("engine 'local' or 'ray'", f"'{engine}'", "pass --engine local or --engine ray",
                         code="invalid_input")
    if batch_size < 1:
        raise AssayError("a batch size of at least 1", f"{batch_size}", "pass --batch-size 64", code="invalid_input")
    ev = load(evaluator) if isinstance(evaluator, (str, Path)) else evaluator
    data, skipped, ingest = prepare_rows(ev, rows)
    chunks = [data[i:i + batch_size] for i in range(0, len(data), batch_size)]
    t0 = time.perf_counter()
    if engine == "local" or not chunks:
        scores = [s for c in chunks for s in _score_dicts(ev, c, batch_size)]
    else:
        scores = _score_ray(evaluator if isinstance(evaluator, (str, Path)) else ev, chunks, batch_size,
                            concurrency, num_cpus, num_gpus, load)
    return BatchResult(scores, engine, time.perf_counter() - t0, skipped, ingest)


def score_metrics(evaluators: Sequence[Any], rows: Any, *, batch_size: int = 64,
                  load: Loader = open_artifact) -> list[BatchResult]:
    """Every row scored with each of several evaluators (objects or references ``load`` opens), in this
    process: one :class:`BatchResult` per evaluator, in order, with the scores :func:`score_file` gives it
    alone (the same consecutive chunks of ``batch_size`` rows). A file is read once; chunk by chunk, the
    evaluators that run one frozen body share its forward (``evaluator._shared``). ``seconds``: the whole
    run's, the same in every result."""
    if batch_size < 1:
        raise AssayError("a batch size of at least 1", f"{batch_size}", "pass --batch-size 64", code="invalid_input")
    evs = [load(e) if isinstance(e, (str, Path)) else e for e in evaluators]
    source = read_dataset(rows) if isinstance(rows, (str, Path)) else rows  # one read for every metric
    prepared = [prepare_rows(ev, source) for ev in evs]
    scores: list[list[dict[str, Any]]] = [[] for _ in evs]
    shared = SharedScorer(evs)
    t0 = time.perf_counter()
    for start in range(0, max((len(data) for data, _, _ in prepared), default=0), batch_size):
        with shared:  # one chunk's memo: the bodies' results for these rows, dropped after
            for out, ev, (data, _, _) in zip(scores, evs, prepared):
                if data[start:start + batch_size]:
                    out += _score_dicts(ev, data[start:start + batch_size], batch_size)
    seconds = time.perf_counter() - t0
    return [BatchResult(out, "local", seconds, skipped, ingest) for out, (_, skipped, ingest) in zip(scores, prepared)]


class _RayScorer:
    """Ray Data actor: loads the evaluator once, scores one chunk (a JSON list of rows) per item."""

    def __init__(self, evaluator: Any, batch_size: int, threads: int, load: Loader = open_artifact):
        try:
            import torch

            torch.set_num_threads(max(1, threads))
        except ImportError:  # a non-torch evaluator
            pass
        self.ev = load(evaluator) if isinstance(evaluator, (str, Path)) else evaluator
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
               num_cpus: int, num_gpus: float | None = None, load: Loader = open_artifact) -> list[dict[str, Any]]:
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
        ds = ds.map_batches(_RayScorer, fn_constructor_args=(evaluator, batch_size, threads, load), batch_size=1,
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
