"""Many metrics per trace for the price of one: 1, 3 and 10 metrics on one MiniLM base over the same traces,
scored with shared bodies (``evaluator._shared``: MiniLM once per distinct text) and one by one, in one process.

    python benchmarks/bench_multi_metric.py                 # about 5 minutes on 2 idle cores
    python benchmarks/bench_multi_metric.py --rows 128 --reps 2

The ten evaluators are trained here in seconds on real rows (Davidson tweets, Presidio sentences): frozen
MiniLM embeddings (``embed``; two ``hybrid`` = TF-IDF + embed) and logistic-regression heads on different
labels, tasks and thresholds, all reading the trace's ``input``. Scoring is ``Evaluator.score`` of each
(tokenising, MiniLM at the evaluator's precision, heads, calibration, decision) over the same traces;
shared is ``score_many`` of all of them. The monitor rows time ``Monitor.process`` (rows, scoring, routing,
SQLite) with its shared scope on and off. Other work on the machine slows every number; the load average is
printed at the start and the end.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SHARED = Path(os.environ.get("ASSAY_SHARED_DATA", HERE.parents[1] / "shared" / "data"))
DATA = SHARED if (SHARED / "toxicity_davidson.jsonl").exists() else HERE.parent / "tests" / "fixtures" / "data"
TOXIC = {"hate_speech": "true", "offensive_language": "true", "neither": "false"}

# name, preset, source, label of a row (None: the row's own), kind, threshold, C
METRICS = [
    ("toxicity", "toxicity", "tox", lambda r: TOXIC[r["label"]], "embed", 0.5, 1.0),
    ("pii", "pii", "pii", None, "embed", 0.5, 1.0),
    ("toxicity_3class", "toxicity_3class", "tox", None, "embed", None, 1.0),
    ("hate", "toxicity", "tox", lambda r: str(r["label"] == "hate_speech").lower(), "embed", 0.3, 1.0),
    ("offensive", "toxicity", "tox", lambda r: str(r["label"] == "offensive_language").lower(), "embed", 0.6, 1.0),
    ("pii_person", "pii", "pii", lambda r: str("PERSON" in (r["meta"].get("entity_types") or [])).lower(),
     "embed", 0.5, 1.0),
    ("pii_address", "pii", "pii", lambda r: str("STREET_ADDRESS" in (r["meta"].get("entity_types") or [])).lower(),
     "embed", 0.4, 1.0),
    ("toxicity_strict", "toxicity", "tox", lambda r: TOXIC[r["label"]], "embed", 0.8, 0.3),
    ("toxicity_hybrid", "toxicity", "tox", lambda r: TOXIC[r["label"]], "hybrid", 0.5, 1.0),
    ("pii_hybrid", "pii", "pii", None, "hybrid", 0.5, 1.0),
]


def read(name: str) -> list[dict]:
    with open(DATA / name, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def training_rows(tox: list[dict], pii: list[dict], per_label: int) -> dict[str, list[dict]]:
    """Balanced-ish training rows from the first part of each file (the traces come from the rest)."""
    picked: dict[str, list[dict]] = {}
    for r in tox[: len(tox) // 2]:
        if len(picked.setdefault(r["label"], [])) < per_label:
            picked[r["label"]].append(r)
    return {"tox": [r for rows in picked.values() for r in rows], "pii": pii[: 3 * per_label]}


def trace_rows(tox: list[dict], pii: list[dict], n: int) -> list[dict]:
    """``n`` traces' rows, half tweets, half Presidio sentences, none of them a training row."""
    a, b = tox[len(tox) // 2:], pii[len(pii) // 2:]
    out = []
    for i in range(n):
        r = a[i // 2] if i % 2 == 0 else b[i // 2]
        out.append({"id": f"trace-{i}", "input": r["input"], "meta": {"trace_id": f"trace-{i}"}})
    return out


def build(spec: tuple, train: dict[str, list[dict]]):
    """One evaluator: the preset renamed, its blocks fitted, a logistic-regression head per block."""
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    from assay.evaluator import Calibration, Evaluator, resolve_base
    from assay.evaluator._linear import (
        EmbedFeatures,
        LinearHead,
        LinearModel,
        TfidfFeatures,
    )
    from assay.metrics import load_metric

    name, preset, source, label_of, kind, threshold, c = spec
    metric = load_metric(preset).model_copy(update={"name": name})
    rows = train[source]
    labels = list(metric.labels)
    y = [labels.index(label_of(r) if label_of else r["label"]) for r in rows]
    blocks = {"embed": EmbedFeatures(metric, resolve_base("minilm"), 128)}
    if kind == "hybrid":
        blocks = {"tfidf": TfidfFeatures(metric), **blocks}
    heads = {n: LinearHead.from_sklearn(LogisticRegression(max_iter=2000, C=c).fit(b.fit(rows), y), len(labels))
             for n, b in blocks.items()}
    stack = None
    if kind == "hybrid":  # a log-linear pool: each block's log-probability of a label, weighted
        w = np.zeros((len(labels), 2 * len(labels)))
        for k in range(len(labels)):
            w[k, k], w[k, len(labels) + k] = 0.4, 0.8
        stack = LinearHead(w, np.zeros(len(labels)))
    model = LinearModel(metric, blocks, heads, stack, 128)
    return Evaluator(metric, model, calibration=Calibration(threshold=threshold))


def seconds(fn) -> tuple[float, object]:
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def compare(alone: list[list], shared: list[list]) -> tuple[bool, float]:
    """(every label the same, the largest |probability difference|) of two scorings."""
    same, worst = True, 0.0
    for a, s in zip(alone, shared):
        same &= [x.label for x in a] == [x.label for x in s]
        for x, z in zip(a, s):
            worst = max(worst, max(abs(x.probabilities[k] - z.probabilities[k]) for k in x.probabilities))
    return same, worst


def time_scoring(evs: list, rows: list[dict], reps: int, batch: int) -> list[dict]:
    """Best-of-``reps`` seconds of shared and one-by-one scoring for 1, 3 and len(evs) metrics, alternating."""
    from assay.evaluator._shared import score_many

    out = []
    score_many(evs, rows, batch)  # warm-up: oneDNN builds kernels per padded shape; the allocator grows
    for n in (1, 3, len(evs)):
        group = evs[:n]
        best_shared, best_alone, check = float("inf"), float("inf"), None
        for _ in range(reps):
            ts, shared = seconds(lambda g=group: score_many(g, rows, batch))
            ta, alone = seconds(lambda g=group: [ev.score(rows, batch_size=batch) for ev in g])
            best_shared, best_alone = min(best_shared, ts), min(best_alone, ta)
            check = compare(alone, shared)
        out.append({"metrics": n, "shared_s": round(best_shared, 3), "one_by_one_s": round(best_alone, 3),
                    "same_labels": check[0], "max_prob_diff": check[1]})
        print(f"  {n:2d} metrics: shared {best_shared:7.2f}s, one by one {best_alone:7.2f}s, "
              f"labels identical {check[0]}, max |dp| {check[1]:.1e}", file=sys.stderr, flush=True)
    return out


def time_monitor(evs: list, rows: list[dict], work: Path, batch: int) -> list[dict]:
    """``Monitor.process`` of the traces with 1 and all metrics, the shared scope on and off (one run each)."""
    from assay.evaluator._shared import SharedScorer
    from assay.monitor import Monitor, RouteConfig, Store
    from assay.traces import read_traces

    traces = read_traces([{"id": r["id"], "input": r["input"], "output": "ok"} for r in rows]).traces
    Monitor(evs, Store(work / "warm-up.db"), RouteConfig(audit_rate=0.0), batch_size=batch).process(traces)
    out = []
    for n in (1, len(evs)):
        entry: dict = {"metrics": n}
        for mode in ("shared", "one_by_one"):
            mon = Monitor(evs[:n], Store(work / f"m{n}-{mode}.db"), RouteConfig(audit_rate=0.0), batch_size=batch)
            if mode == "one_by_one":
                mon.shared = SharedScorer([])
            entry[f"{mode}_s"] = round(seconds(lambda m=mon: m.process(traces))[0], 3)
        out.append(entry)
        print(f"  monitor, {n:2d} metrics: shared {entry['shared_s']:7.2f}s, one by one {entry['one_by_one_s']:7.2f}s",
              file=sys.stderr, flush=True)
    return out


def report(args, machine: dict, loads: tuple, scoring: list[dict], monitor: list[dict], started: str) -> str:
    one, ten = scoring[0], scoring[-1]
    single = min(one["shared_s"], one["one_by_one_s"])  # one metric: the same code path either way
    ratio = ten["shared_s"] / single
    same = all(r["same_labels"] for r in scoring)
    lines = [f"# Many metrics per trace (`python benchmarks/bench_multi_metric.py --rows {args.rows} --reps {args.reps}`)",
             "", f"Run {started}; {args.rows} traces (half Davidson tweets, half Presidio sentences), batch {args.batch}, "
             f"best of {args.reps} alternating runs; every metric reads the trace's input with MiniLM (max_length 128) "
             f"at precision {machine['precision']}.", "",
             f"10 metrics / 1 metric cost ratio: {ratio:.2f}", "",
             "(the ten metrics' shared scoring time over one metric's best time; one metric has nothing to share, "
             "so shared and one by one are the same code path for it)", "",
             f"verdicts identical to one-by-one scoring: {same} (largest |probability difference| "
             f"{max(r['max_prob_diff'] for r in scoring):.1e})", "",
             "| metrics | shared s | one by one s | shared / 1 metric | one by one / shared |", "|---|---|---|---|---|",
             *[f"| {r['metrics']} | {r['shared_s']:.2f} | {r['one_by_one_s']:.2f} | {r['shared_s'] / single:.2f} | "
               f"{r['one_by_one_s'] / r['shared_s']:.2f} |" for r in scoring], "",
             "Monitor (`Monitor.process`: rows, scoring, routing, SQLite writes; one run each):", "",
             "| metrics | shared s | one by one s |", "|---|---|---|",
             *[f"| {r['metrics']} | {r['shared_s']:.2f} | {r['one_by_one_s']:.2f} |" for r in monitor], "",
             "Metrics, in order: " + ", ".join(f"{m[0]} ({m[4]}, threshold {m[5]})" for m in METRICS),
             "", f"- load average (1, 5, 15 min) at start: {loads[0]}; at end: {loads[1]}",
             *[f"- {k}: {v}" for k, v in machine.items()], ""]
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=256, help="traces scored per measurement")
    ap.add_argument("--reps", type=int, default=3, help="best of this many alternating runs")
    ap.add_argument("--batch", type=int, default=32, help="rows per forward (the product's default)")
    ap.add_argument("--per-label", type=int, default=100, help="training rows per label")
    ap.add_argument("--out", default=str(HERE / "results" / "multi_metric"), help="results path without suffix")
    args = ap.parse_args()
    started = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    load_start = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    import torch

    from assay._cpu import native_bf16
    from assay.evaluator._linear import EmbedFeatures
    from assay.report import machine_info

    tox, pii = read("toxicity_davidson.jsonl"), read("pii_presidio_synth.jsonl")
    train, rows = training_rows(tox, pii, args.per_label), trace_rows(tox, pii, args.rows)
    EmbedFeatures.cache = {}  # training only: each training row embedded once for the ten fits
    t_train, evs = seconds(lambda: [build(m, train) for m in METRICS])
    EmbedFeatures.cache = None  # timed scoring embeds for real
    print(f"trained {len(evs)} evaluators in {t_train:.0f}s", file=sys.stderr, flush=True)
    scoring = time_scoring(evs, rows, args.reps, args.batch)
    monitor = time_monitor(evs, rows, Path(tempfile.mkdtemp(prefix="bench-multi-")), args.batch)
    machine = {**machine_info(), "torch_threads": torch.get_num_threads(), "torch_version": torch.__version__,
               "precision": "bf16 (autocast)" if evs[0].dtype == torch.bfloat16 else "fp32",
               "native_bf16": native_bf16()}
    loads = (load_start, ", ".join(f"{x:.2f}" for x in os.getloadavg()))
    text = report(args, machine, loads, scoring, monitor, started)
    print(text)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".md").write_text(text + "\n")
    out.with_suffix(".json").write_text(json.dumps({"scoring": scoring, "monitor": monitor, "machine": machine,
                                                    "load_average": {"start": loads[0], "end": loads[1]},
                                                    "started": started, "rows": args.rows, "reps": args.reps,
                                                    "train_seconds": round(t_train, 1)}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
