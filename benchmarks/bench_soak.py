"""Soak benchmark of the scoring server: 10,000 single-row score requests from 16 concurrent
clients against one registered evaluator, served by a real `assay serve` process (micro-batching
on, its defaults), reporting throughput, latency p50/p95 and the server's RSS at start, after
warm-up, at its peak, at the end of the load and after 5 s idle.

The evaluator is a real, tiny trained encoder (MiniLM, pii preset, a few optimizer steps, trained
through the registry's worker like bench_serve_batching.py). Pass criterion from issue 8: RSS at
the end within 20% of RSS after warm-up.

    python benchmarks/bench_soak.py                       # 10,000 requests, 16 clients
    python benchmarks/bench_soak.py --requests 2000 --clients 8

Output: a Markdown summary on stdout and benchmarks/results/soak.{md,json}. The machine's load
average is printed: on a shared machine throughput and latency move with it, RSS does not.
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

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _cpu_flags() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                return " ".join(f for f in ("avx2", "avx512f", "avx512_vnni", "amx_tile") if f in flags)
    except OSError:
        pass
    return "?"


def _rss(pid: int) -> float:
    import psutil

    return psutil.Process(pid).memory_info().rss / 2**20


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--requests", type=int, default=10_000)
    p.add_argument("--clients", type=int, default=16)
    p.add_argument("--warmup", type=int, default=1000, help="requests counted as warm-up")
    p.add_argument("--max-steps", type=int, default=8)
    p.add_argument("--data", type=Path, default=Path(os.environ.get("ASSAY_SHARED_DATA",
                                                                     HERE.parent.parent / "shared" / "data")))
    p.add_argument("--out", type=Path, default=HERE / "results" / "soak.md")
    p.add_argument("--scoring-threads", choices=["one", "pool"], default="one",
                   help="one: the server as shipped (one scoring thread, malloc_trim when idle); pool: emulate "
                        "the earlier batcher (asyncio's default thread pool, no trim) for a before/after comparison")
    a = p.parse_args()
    from bench_serve_batching import _rows, train_metric

    from assay.registry import Registry

    tmp = Path(tempfile.mkdtemp(prefix="assay-soak-"))
    os.environ["ASSAY_HOME"] = str(tmp)
    db, art = f"sqlite:///{tmp / 'assay.db'}", str(tmp / "artifacts")
    reg = Registry(db, art, allow_local_paths=True)
    t0 = time.perf_counter()
    name = train_metric(reg, a.data, a.max_steps)
    train_s = time.perf_counter() - t0
    texts = [r["input"] for r in _rows(a.data / "pii_presidio_synth.jsonl", 500, 7, set())]
    reg.close()

    port = _port()
    patch = ""
    if a.scoring_threads == "pool":  # the batcher before issue 8: asyncio.to_thread's pool, no malloc_trim
        patch = ("import os; from concurrent.futures import ThreadPoolExecutor; import assay.server._batcher as b; "
                 "init = b.ScoreBatcher.__init__\n"
                 "def patched(self, *a, **k):\n    init(self, *a, **k); "
                 "self._pool = ThreadPoolExecutor(min(32, (os.cpu_count() or 1) + 4)); self._trim = None\n"
                 "b.ScoreBatcher.__init__ = patched\n")
    server = subprocess.Popen([sys.executable, "-c", patch + "import sys; from assay.cli import main; "
                               "sys.argv[0]='assay'; main()", "serve", "--port", str(port), "--db", db, "--artifacts", art,
                               "--workers", "0"], env={**os.environ, "OMP_NUM_THREADS": "1"},
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                c = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
                c.request("GET", "/v1/health")
                if c.getresponse().status == 200:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline and server.poll() is None, "server did not start"
            time.sleep(0.3)
        rss = {"start": _rss(server.pid)}
        samples: list[tuple[float, float]] = []
        lat: list[float] = [0.0] * a.requests
        status: list[int] = [0] * a.requests
        counter = iter(range(a.requests))
        lock = threading.Lock()
        done = {"n": 0}
        warm = threading.Event()

        def client() -> None:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
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
                lat[i] = time.perf_counter() - t
                status[i] = resp.status
                with lock:
                    done["n"] += 1
                    if done["n"] == a.warmup:
                        warm.set()

        stop = threading.Event()

        def sampler() -> None:
            while not stop.is_set():
                samples.append((time.perf_counter(), _rss(server.pid)))
                if warm.is_set() and "after_warmup" not in rss:
                    rss["after_warmup"] = samples[-1][1]
                stop.wait(0.25)

        threading.Thread(target=sampler, daemon=True).start()
        start = time.perf_counter()
        threads = [threading.Thread(target=client) for _ in range(a.clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.perf_counter() - start
        rss["end"] = _rss(server.pid)
        time.sleep(5)
        rss["idle_5s"] = _rss(server.pid)
        stop.set()
        rss["peak"] = max(s for _, s in samples + [(0, rss["end"])])
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        c.request("GET", "/v1/health")
        batching = json.loads(c.getresponse().read()).get("batching", {}).get(name, {})
    finally:
        server.terminate()
        server.wait(timeout=30)
    ok = [x for x, s in zip(lat, status) if s == 200]
    q = statistics.quantiles(ok, n=100)
    load = os.getloadavg()
    drift = (rss["end"] - rss["after_warmup"]) / rss["after_warmup"]
    result = {
        "requests": a.requests, "clients": a.clients, "ok": len(ok), "errors": a.requests - len(ok),
        "wall_s": round(wall, 2), "throughput_rps": round(a.requests / wall, 1),
        "p50_ms": round(q[49] * 1000, 1), "p95_ms": round(q[94] * 1000, 1),
        "rss_mb": {k: round(v, 1) for k, v in rss.items()}, "end_vs_warmup": round(drift, 3),
        "pass_within_20pct": abs(drift) <= 0.20, "batching": batching, "evaluator": f"{name}: encoder (MiniLM), "
        f"pii preset, trained {a.max_steps} steps ({train_s:.0f}s)", "warmup_requests": a.warmup,
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, flags {_cpu_flags()}",
        "load_average": [round(x, 2) for x in load], "server": "assay serve --workers 0 (batching 64 rows / 10 ms), "
        f"OMP_NUM_THREADS=1, scoring threads: {a.scoring_threads}",
    }
    r = result["rss_mb"]
    md = (f"# Soak: {a.requests:,} score requests, {a.clients} concurrent clients"
          f"{'' if a.scoring_threads == 'one' else ' (earlier batcher: thread pool, no trim)'}\n\n"
          f"| | |\n|---|---|\n| evaluator | {result['evaluator']} |\n"
          f"| ok / errors | {result['ok']:,} / {result['errors']} |\n"
          f"| throughput | {result['throughput_rps']} requests/s ({result['wall_s']} s) |\n"
          f"| latency p50 / p95 | {result['p50_ms']} ms / {result['p95_ms']} ms |\n"
          f"| server RSS start / after warm-up ({a.warmup} requests) / peak / end / 5 s idle | "
          f"{r['start']} / {r.get('after_warmup')} / {r['peak']} / {r['end']} / {r['idle_5s']} MB |\n"
          f"| RSS end vs after warm-up | {drift * 100:+.1f}% ({'within' if result['pass_within_20pct'] else 'OVER'} 20%) |\n"
          f"| batches | {batching.get('batches')} for {batching.get('requests')} requests "
          f"(largest {batching.get('largest_batch_rows')} rows) |\n\n"
          f"Machine: {result['machine']}; load average during the run {result['load_average']} (shared machine: "
          f"throughput and latency move with the load, RSS does not). Server: {result['server']}.\n")
    print(md)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(md)
    a.out.with_suffix(".json").write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
