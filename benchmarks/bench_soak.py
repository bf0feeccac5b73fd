"""Soak benchmark of the scoring server: 10,000 single-row score requests from 16 concurrent
clients against one registered evaluator, served by a real `assay serve` process (micro-batching
on, its defaults), reporting throughput, latency p50/p95 and the server's RSS at start, after the
first 1,000 requests, every 1,000 requests, at its peak, after all 10,000 and after 5 s idle.

The evaluator is trained first through the registry's worker on real rows (the pii preset,
Presidio synthetic rows: ``$ASSAY_SHARED_DATA``, else ../shared/data, else the licensed subset in
tests/fixtures/data): ``--family embed`` (the default, the model selection's usual winner) ships
frozen MiniLM embeddings -> logistic regression (``train.candidates: [embed]``); ``--family encoder``
a fine-tuned MiniLM (a few optimizer steps). Pass criterion (issues 8 and 23): RSS after all
requests within 20% of RSS after the first 1,000.

    python benchmarks/bench_soak.py                       # embed, 10,000 requests, 16 clients
    python benchmarks/bench_soak.py --family encoder --requests 2000 --clients 8 --out /tmp/soak.md

Output: a Markdown summary on stdout and benchmarks/results/soak.{md,json}, with the machine, its CPU
flags and load average: on a shared machine throughput and latency move with the load, RSS does not.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
EMBED_TRAIN = {"candidates": ["embed"], "cv_folds": 3, "seed": 0}  # frozen embeddings -> logistic regression
FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16")
# --scoring-threads pool: the batcher before issue 8 (asyncio.to_thread's pool, no malloc_trim), emulated
POOL_PATCH = ("import os; from concurrent.futures import ThreadPoolExecutor; import assay.server._batcher as b; "
              "init = b.ScoreBatcher.__init__\n"
              "def patched(self, *a, **k):\n    init(self, *a, **k); "
              "self._pool = ThreadPoolExecutor(min(32, (os.cpu_count() or 1) + 4)); self._trim = None\n"
              "b.ScoreBatcher.__init__ = patched\n")


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _default_data() -> Path:
    shared = Path(os.environ.get("ASSAY_SHARED_DATA") or HERE.parent.parent / "shared" / "data")
    return shared if (shared / "pii_presidio_synth.jsonl").exists() else HERE.parent / "tests" / "fixtures" / "data"


def _machine() -> dict[str, Any]:
    model, flags = platform.processor() or platform.machine(), set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
            elif line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return {"cpu": model, "cpus": os.cpu_count(), "usable_cpus": len(os.sched_getaffinity(0)),
            "flags": " ".join(f for f in FLAGS if f in flags) or "none of " + " ".join(FLAGS),
            "python": platform.python_version(), "platform": platform.platform()}


def _rss(pid: int) -> float:
    import psutil

    return psutil.Process(pid).memory_info().rss / 2**20


def train(reg: Any, data: Path, family: str, max_steps: int) -> str:
    """Train and register the soak's evaluator through the worker (the rows and run of
    bench_serve_batching.train_metric; embed: with the run's ``train:`` block swapped); returns its name."""
    from bench_serve_batching import train_metric

    if family == "embed":
        create = reg.runs.create
        reg.runs.create = lambda project, config, **kw: create(project, {**config, "train": EMBED_TRAIN}, **kw)
    name = train_metric(reg, data, max_steps)
    shipped = json.loads((Path(reg.storage.local_dir(reg.metrics.get(name).artifact_location)) / "evaluator.json")
                         .read_text())
    kind = shipped.get("family") if shipped.get("family") != "linear" else shipped["linear"].get("kind")
    if kind != family:
        sys.exit(f"expected a{'n' * (family == 'embed')} {family} evaluator, the artifact is {kind}")
    return name


def start_server(db: str, art: str, port: int, scoring_threads: str) -> subprocess.Popen:
    patch = POOL_PATCH if scoring_threads == "pool" else ""
    server = subprocess.Popen([sys.executable, "-c", patch + "import sys; from assay.cli import main; "
                               "sys.argv[0]='assay'; main()", "serve", "--port", str(port), "--db", db, "--artifacts", art,
                               "--workers", "0"], env={**os.environ, "OMP_NUM_THREADS": "1"},
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while True:
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            c.request("GET", "/v1/health")
            if c.getresponse().status == 200:
                return server
        except OSError:
            pass
        if time.monotonic() > deadline or server.poll() is not None:
            server.kill()
            sys.exit("server did not start")
        time.sleep(0.3)


def load(pid: int, port: int, name: str, texts: list[str], a: argparse.Namespace) -> dict[str, Any]:
    """``a.requests`` one-row score requests from ``a.clients`` keep-alive clients; RSS at every
    ``a.warmup`` requests done (measured by the client that completed that request), peak by sampling."""
    lat, status = [0.0] * a.requests, [0] * a.requests
    counter, lock, done = iter(range(a.requests)), threading.Lock(), [0]
    checkpoints: dict[int, float] = {0: _rss(pid)}
    samples: list[float] = []

    def client() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        rnd = random.Random(threading.get_ident())
        while True:
            with lock:
                i = next(counter, None)
            if i is None:
                break
            body = json.dumps({"rows": [rnd.choice(texts)]})
            t = time.perf_counter()
            conn.request("POST", f"/v1/metrics/{name}/score", body, {"Content-Type": "application/json"})
            resp = conn.getresponse()
            resp.read()
            lat[i], status[i] = time.perf_counter() - t, resp.status
            with lock:
                done[0] += 1
                n = done[0]
            if n % a.warmup == 0 or n == a.requests:
                checkpoints[n] = _rss(pid)

    stop = threading.Event()

    def sampler() -> None:
        while not stop.is_set():
            samples.append(_rss(pid))
            stop.wait(0.25)

    threading.Thread(target=sampler, daemon=True).start()
    load_start = os.getloadavg()
    start = time.perf_counter()
    threads = [threading.Thread(target=client) for _ in range(a.clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    load_end = os.getloadavg()
    time.sleep(5)
    idle = _rss(pid)
    stop.set()
    return {"lat": lat, "status": status, "wall": wall, "checkpoints": dict(sorted(checkpoints.items())),
            "peak": max(samples + list(checkpoints.values())), "idle_5s": idle, "load": [load_start, load_end]}


def summarize(run: dict[str, Any], batching: dict[str, Any], a: argparse.Namespace, evaluator: str) -> dict[str, Any]:
    ok = [x for x, s in zip(run["lat"], run["status"]) if s == 200]
    q = statistics.quantiles(ok, n=100) if len(ok) > 1 else [0.0] * 99
    cp = run["checkpoints"]
    first, last = cp.get(a.warmup), cp.get(a.requests)
    ratio = last / first if first and last else None
    return {
        "settings": {"requests": a.requests, "clients": a.clients, "rows_per_request": 1, "first_checkpoint": a.warmup,
                     "family": a.family, "server": "assay serve --workers 0 (batching 64 rows / 10 ms), "
                     f"OMP_NUM_THREADS=1, scoring threads: {a.scoring_threads}"},
        "evaluator": evaluator, "machine": _machine(),
        "load_average": {"start": [round(x, 2) for x in run["load"][0]], "end": [round(x, 2) for x in run["load"][1]]},
        "ok": len(ok), "errors": a.requests - len(ok), "error_statuses": sorted({s for s in run["status"] if s != 200}),
        "wall_s": round(run["wall"], 2), "throughput_rps": round(a.requests / run["wall"], 1),
        "p50_ms": round(q[49] * 1000, 1), "p95_ms": round(q[94] * 1000, 1),
        "rss_mb": {"start": round(cp[0], 1), f"after_{a.warmup}": round(first or 0, 1),
                   f"after_{a.requests}": round(last or 0, 1), "peak": round(run["peak"], 1),
                   "idle_5s": round(run["idle_5s"], 1)},
        "rss_by_requests_mb": {str(k): round(v, 1) for k, v in cp.items()},
        "rss_ratio_last_vs_first": round(ratio, 3) if ratio else None,
        "pass_within_20pct": ratio is not None and abs(ratio - 1) <= 0.20, "batching": batching,
    }


def markdown(r: dict[str, Any]) -> str:
    s, m, rss, b = r["settings"], r["machine"], r["rss_mb"], r["batching"]
    first, last = s["first_checkpoint"], s["requests"]
    ratio = r["rss_ratio_last_vs_first"]
    curve = " / ".join(f"{int(k):,}: {v}" for k, v in r["rss_by_requests_mb"].items())
    return (f"# Soak: {last:,} one-row score requests, {s['clients']} concurrent clients, {s['family']} evaluator\n\n"
            f"| | |\n|---|---|\n| evaluator | {r['evaluator']} |\n"
            f"| ok / errors | {r['ok']:,} / {r['errors']} |\n"
            f"| throughput | {r['throughput_rps']} requests/s ({r['wall_s']} s) |\n"
            f"| latency p50 / p95 | {r['p50_ms']} ms / {r['p95_ms']} ms |\n"
            f"| server RSS after {first:,} / after {last:,} requests | {rss[f'after_{first}']} / {rss[f'after_{last}']} MB |\n"
            f"| RSS ratio (after {last:,} / after {first:,}) | {ratio} ({'within' if r['pass_within_20pct'] else 'OUTSIDE'} "
            f"±20%) |\n"
            f"| server RSS start / peak / 5 s idle after | {rss['start']} / {rss['peak']} / {rss['idle_5s']} MB |\n"
            f"| RSS by requests done (MB) | {curve} |\n"
            f"| batches | {b.get('batches')} for {b.get('requests')} requests (largest {b.get('largest_batch_rows')} rows) |\n\n"
            f"Machine: {m['cpu']}, {m['cpus']} CPUs ({m['usable_cpus']} usable), flags {m['flags']}; Python {m['python']}, "
            f"{m['platform']}. Load average at start {r['load_average']['start']}, at end {r['load_average']['end']} "
            f"(a shared machine: throughput and latency move with the load, RSS does not). Settings: {s['server']}; "
            f"`python benchmarks/bench_soak.py --family {s['family']} --requests {last} --clients {s['clients']}`.\n")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--family", choices=["embed", "encoder"], default="embed",
                   help="embed: frozen embeddings -> logistic regression (the usual winner); encoder: fine-tuned MiniLM")
    p.add_argument("--requests", type=int, default=10_000)
    p.add_argument("--clients", type=int, default=16)
    p.add_argument("--warmup", type=int, default=1000, help="the first RSS checkpoint (and the step between checkpoints)")
    p.add_argument("--max-steps", type=int, default=8, help="--family encoder: optimizer steps")
    p.add_argument("--data", type=Path, default=_default_data())
    p.add_argument("--out", type=Path, default=HERE / "results" / "soak.md")
    p.add_argument("--scoring-threads", choices=["one", "pool"], default="one",
                   help="one: the server as shipped (one scoring thread, malloc_trim when idle); pool: emulate "
                        "the earlier batcher (asyncio's default thread pool, no trim) for a before/after comparison")
    a = p.parse_args()
    from bench_serve_batching import _rows

    from assay.registry import Registry

    tmp = Path(tempfile.mkdtemp(prefix="assay-soak-"))
    os.environ["ASSAY_HOME"] = str(tmp)
    db, art = f"sqlite:///{tmp / 'assay.db'}", str(tmp / "artifacts")
    reg = Registry(db, art, allow_local_paths=True)
    t0 = time.perf_counter()
    name = train(reg, a.data, a.family, a.max_steps)
    what = "frozen MiniLM embeddings -> logistic regression" if a.family == "embed" else f"MiniLM fine-tuned {a.max_steps} steps"
    evaluator = f"{name}: {a.family} ({what}), pii preset, 300 training rows, trained in {time.perf_counter() - t0:.0f} s"
    texts = [r["input"] for r in _rows(a.data / "pii_presidio_synth.jsonl", 500, 7, set())]
    reg.close()

    port = _port()
    server = start_server(db, art, port, a.scoring_threads)
    try:
        run = load(server.pid, port, name, texts, a)
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        c.request("GET", "/v1/health")
        batching = json.loads(c.getresponse().read()).get("batching", {}).get(name, {})
    finally:
        server.terminate()
        server.wait(timeout=30)
    result = summarize(run, batching, a, evaluator)
    md = markdown(result)
    print(md)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(md)
    a.out.with_suffix(".json").write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
