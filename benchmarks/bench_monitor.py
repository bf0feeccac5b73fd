"""Monitoring throughput: traces/s for ingestion, gates, the local and Ray engines and the full monitor,
and the scoring cost per 1M traces at a stated $/hour beside a frontier judge at $/eval.

    python benchmarks/bench_monitor.py --artifact runs/pii --n 2000
    python benchmarks/bench_monitor.py            # trains a tiny pii evaluator first (a few minutes on CPU)

Numbers are for this machine (printed with its CPU count); other work on the machine slows them.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

DATA = Path(os.environ.get("ASSAY_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


def train_tiny(workdir: Path, data: Path) -> Path:
    """A small pii encoder evaluator trained with assay.train (max_length 128, 60 steps)."""
    import yaml

    from assay.train import train

    rows = [json.loads(line) for line in open(data)]
    (workdir / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[:400]))
    (workdir / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[400:600]))
    cfg = {"metric": "pii", "data": {"test_set": "test.jsonl", "train_set": "train.jsonl"},
           "model": {"family": "encoder", "max_length": 128}, "train": {"max_steps": 60, "batch_size": 16},
           "report": {"bootstrap": 0, "baselines": False, "latency_rows": 16}, "output": "artifact"}
    (workdir / "config.yaml").write_text(yaml.safe_dump(cfg))
    return train(workdir / "config.yaml", progress=False).artifact_dir


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def cost_per_million(tps: float, cost_per_hour: float) -> float:
    return 1e6 / tps / 3600 * cost_per_hour


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--artifact", help="Trained evaluator directory (default: train a tiny one).")
    ap.add_argument("--data", default=str(DATA / "pii_presidio_synth.jsonl"), help="Rows to replay as traces.")
    ap.add_argument("--n", type=int, default=2000, help="Traces per measurement.")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--engines", default="local,ray")
    ap.add_argument("--ray-concurrency", type=int, default=2)
    ap.add_argument("--cost-per-hour", type=float, default=0.10, help="$/hour of the scoring machine.")
    ap.add_argument("--judge-cost", type=float, default=0.05, help="$ per eval of a frontier LLM judge.")
    ap.add_argument("--workdir", help="Folder for the trace file, db and tiny artifact (default: a temp dir).")
    ap.add_argument("--json", dest="json_out", help="Also write the results as JSON here.")
    args = ap.parse_args()

    from assay.monitor import Monitor, RouteConfig, Store, gate_from_dict, load_evaluator, score_file
    from assay.traces import read_traces

    work = Path(args.workdir or tempfile.mkdtemp(prefix="bench-monitor-"))
    work.mkdir(parents=True, exist_ok=True)
    artifact = Path(args.artifact) if args.artifact else None
    if artifact is None:
        print("training a tiny pii evaluator (use --artifact to skip) ...", flush=True)
        artifact, secs = timed(lambda: train_tiny(work, Path(args.data)))
        print(f"  trained in {secs:.0f}s -> {artifact}")
    src = [json.loads(line) for line in open(args.data) if line.strip()]
    traces_file = work / "traces.jsonl"
    with traces_file.open("w") as fh:
        for i in range(args.n):
            r = src[i % len(src)]
            fh.write(json.dumps({"id": f"bench-{i}", "input": r["input"], "output": "Noted."}) + "\n")

    results: dict[str, dict] = {}
    ing, secs = timed(lambda: read_traces(traces_file))
    results["ingest (plain JSONL)"] = {"traces": len(ing.traces), "seconds": secs}
    gate = gate_from_dict({"type": "pii"})
    rows = [{"id": t.trace_id, "input": t.input, "output": t.output} for t in ing.traces]
    _, secs = timed(lambda: [gate.check(r, "input") for r in rows])
    results["pii gate"] = {"traces": len(rows), "seconds": secs}

    ev, load_s = timed(lambda: load_evaluator(artifact))
    engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    local = None
    if "local" in engines:
        score_file(ev, rows[: args.batch_size], batch_size=args.batch_size)  # warm-up
        local, secs = timed(lambda: score_file(ev, rows, engine="local", batch_size=args.batch_size))
        results["local engine (score only)"] = {"traces": len(local.scores), "seconds": secs,
                                                "note": f"evaluator loaded once in {load_s:.1f}s"}
    if "ray" in engines:
        try:
            ray_res, secs = timed(lambda: score_file(str(artifact), rows, engine="ray", batch_size=args.batch_size,
                                                     concurrency=args.ray_concurrency,
                                                     num_cpus=os.cpu_count() or 2))
            results[f"ray engine ({args.ray_concurrency} actors, incl. start)"] = {
                "traces": len(ray_res.scores), "seconds": secs,
                "note": "includes starting Ray and loading the evaluator in each actor"}
            if local is not None:
                same = ray_res.scores == local.scores
                results[f"ray engine ({args.ray_concurrency} actors, incl. start)"]["identical_to_local"] = same
        except Exception as exc:  # noqa: BLE001 - reported, the other figures still stand
            results["ray engine"] = {"error": f"{type(exc).__name__}: {exc}"}
    store = Store(work / "monitor.db")
    mon = Monitor([ev, {"gate": {"type": "pii"}}], store, RouteConfig(), batch_size=args.batch_size)
    summary, secs = timed(lambda: mon.run_file(traces_file))
    store.close()
    results["monitor pipeline (ingest+gate+score+route+SQLite)"] = {"traces": summary["traces"], "seconds": secs}

    judge_per_m = 1e6 * args.judge_cost
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"\nassay monitor benchmark: {args.n} traces, batch {args.batch_size}, {os.cpu_count()} CPUs "
          f"({platform.processor() or platform.machine()}), load average {load:.1f}, evaluator {artifact}")
    print(f"cost at ${args.cost_per_hour:.2f}/hour; frontier judge at ${args.judge_cost:.2f}/eval "
          f"= ${judge_per_m:,.0f} per 1M traces\n")
    print(f"{'stage':58s} {'traces/s':>10s} {'$ per 1M':>10s} {'judge $ per 1M':>15s} {'judge / assay':>14s}")
    for name, r in results.items():
        if "error" in r:
            print(f"{name:58s} error: {r['error']}")
            continue
        tps = r["traces"] / r["seconds"] if r["seconds"] > 0 else float("inf")
        cost = cost_per_million(tps, args.cost_per_hour)
        r.update(traces_per_second=round(tps, 2), cost_per_million=round(cost, 4),
                 judge_cost_per_million=judge_per_m)
        print(f"{name:58s} {tps:10.1f} {cost:10.3f} {judge_per_m:15,.0f} {judge_per_m / cost:13,.0f}x")
        if r.get("note") or "identical_to_local" in r:
            extra = [r.get("note", "")] + ([f"identical to local: {r['identical_to_local']}"]
                                           if "identical_to_local" in r else [])
            print(f"    {'; '.join(x for x in extra if x)}")
    if args.json_out:
        Path(args.json_out).write_text(json.dumps({"settings": vars(args), "cpus": os.cpu_count(), "load": load,
                                                   "artifact": str(artifact), "results": results}, indent=2))


if __name__ == "__main__":
    main()
