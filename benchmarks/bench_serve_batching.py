"""Benchmark the server's score micro-batching: N parallel single-row score requests against one
registered metric, with batching on (the default: up to 64 rows or 10 ms) and off (1 row per
evaluator call). Trains a small real evaluator first (pii preset, encoder, a few steps) through
the registry's worker, registers it, and serves it with uvicorn on 127.0.0.1.

    python benchmarks/bench_serve_batching.py                   # 20 and 100 requests
    python benchmarks/bench_serve_batching.py --requests 20 --max-steps 8

Output: a Markdown table on stdout and benchmarks/results/serve_batching.{md,json}. Throughput
depends on the machine and on its load; compare the two modes from the same run only.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import socket
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

HERE = Path(__file__).resolve().parent
DEFAULT_DATA = Path(os.environ.get("ASSAY_SHARED_DATA", HERE.parent.parent / "shared" / "data"))


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rows(path: Path, n: int, seed: int, skip: set[str]) -> list[dict]:
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    random.Random(seed).shuffle(rows)
    out, seen = [], set(skip)
    for r in rows:
        if r["input"] not in seen:
            seen.add(r["input"])
            out.append({"id": r["id"], "input": r["input"], "label": r["label"]})
        if len(out) == n:
            break
    return out


def train_metric(reg, data: Path, max_steps: int) -> str:
    from assay.registry import Worker

    reg.projects.create("bench")
    test = _rows(data / "pii_presidio_synth.jsonl", 120, 1, set())
    train = _rows(data / "pii_presidio_synth.jsonl", 300, 2, {r["input"] for r in test})
    enc = lambda rows: "".join(json.dumps(r) + "\n" for r in rows).encode()  # noqa: E731
    t = reg.datasets.add("bench", enc(test), "test.jsonl", metric="pii")
    tr = reg.datasets.add("bench", enc(train), "train.jsonl", metric="pii", kind="train")
    run = reg.runs.create("bench", {"metric": "pii", "data": {"test_set": f"dataset:{t.id}",
                                                             "train_set": f"dataset:{tr.id}"},
                                    "train": {"max_steps": max_steps},
                                    "report": {"bootstrap": 0, "baselines": False, "latency_rows": 8}})
    out = Worker(reg).run_once()
    if out is None or out.status.value != "fine_tuned":
        sys.exit(f"training failed: {out.failure_reason if out else 'no run'}")
    return reg.metrics.register(run.id, "pii").full_name


def measure(reg, name: str, texts: list[str], *, requests: int, batch_rows: int, batch_ms: float,
            call: str = "score") -> dict:
    """``requests`` parallel one-row requests to the score endpoint (``call="score"``) or to
    POST /v1/guard with the default policy (``call="guard"``)."""
    import uvicorn

    from assay.client import Client
    from assay.server import create_app

    app = create_app(reg, batch_rows=batch_rows, batch_wait_ms=batch_ms, ui=False)
    port = _port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    th = threading.Thread(target=server.run, daemon=True)
    th.start()
    while not server.started:
        time.sleep(0.05)
    try:
        c = Client(f"http://127.0.0.1:{port}")
        c.score(name, [texts[0]])  # load the evaluator once
        lat: list[float] = []

        def one(i: int) -> int:
            t0 = time.perf_counter()
            if call == "guard":
                res = c.guard([name], texts[i % len(texts)])["verdicts"]
            else:
                res = c.score(name, [texts[i % len(texts)]])
            lat.append(time.perf_counter() - t0)
            return len(res)

        t0 = time.perf_counter()
        with ThreadPoolExecutor(requests) as pool:
            ok = sum(pool.map(one, range(requests)))
        wall = time.perf_counter() - t0
        stats = c.health()["batching"][name]
    finally:
        server.should_exit = True
        th.join(timeout=10)
    lat.sort()
    return {"requests": requests, "succeeded": ok, "batch_rows": batch_rows, "batch_ms": batch_ms,
            "wall_s": round(wall, 3), "requests_per_s": round(requests / wall, 1),
            "p50_ms": round(1000 * statistics.median(lat), 1),
            "p95_ms": round(1000 * lat[max(0, int(0.95 * len(lat)) - 1)], 1),
            "evaluator_calls": stats["batches"] - 1, "largest_batch": stats["largest_batch_requests"]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=DEFAULT_DATA)
    p.add_argument("--requests", type=int, nargs="+", default=[20, 100])
    p.add_argument("--max-steps", type=int, default=10)
    p.add_argument("--out", type=Path, default=HERE / "results" / "serve_batching")
    a = p.parse_args()

    from assay.registry import Registry

    with tempfile.TemporaryDirectory() as tmp:
        os.environ.setdefault("ASSAY_HOME", tmp)
        reg = Registry(f"sqlite:///{tmp}/bench.db", f"{tmp}/artifacts")
        t0 = time.perf_counter()
        name = train_metric(reg, a.data, a.max_steps)
        train_s = time.perf_counter() - t0
        texts = [r["input"] for r in _rows(a.data / "pii_presidio_synth.jsonl", 200, 3, set())]
        results = []
        for n in a.requests:
            for label, rows, ms, call in (("batched", 64, 10.0, "score"), ("unbatched", 1, 0.0, "score"),
                                          ("guard, batched", 64, 10.0, "guard")):
                reg.metrics.unload()
                r = measure(reg, name, texts, requests=n, batch_rows=rows, batch_ms=ms, call=call)
                r["mode"] = label
                results.append(r)
                print(json.dumps(r), file=sys.stderr)
        reg.close()

    import torch

    head = ["mode", "requests", "succeeded", "evaluator_calls", "largest_batch", "wall_s", "requests_per_s",
            "p50_ms", "p95_ms"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(str(r[h]) for h in head) + " |" for r in results]
    flags = sorted({f for line in open("/proc/cpuinfo") if line.startswith("flags") for f in line.split()[2:]}
                   & {"avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile", "avx512_vnni"}) if os.path.exists(
        "/proc/cpuinfo") else []
    machine = (f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, flags {' '.join(flags)}, "
               f"torch threads {torch.get_num_threads()}, python {platform.python_version()}, load average at the end "
               f"{', '.join(f'{x:.2f}' for x in os.getloadavg())}")
    md = ("# Score micro-batching (POST /v1/metrics/{name}/score, 1 row per request, all in parallel), "
          "and the guard (POST /v1/guard, one metric, the default policy)\n\n"
          + "\n".join(lines) + f"\n\nMetric {name}: encoder (MiniLM) trained {a.max_steps} steps on pii rows "
          f"({train_s:.0f}s). Machine: {machine}. `evaluator_calls` excludes the warm-up request.\n")
    print(md)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.with_suffix(".md").write_text(md)
    a.out.with_suffix(".json").write_text(json.dumps({"results": results, "machine": machine}, indent=1))


if __name__ == "__main__":
    main()
