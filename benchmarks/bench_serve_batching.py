"""Benchmark the server's score micro-batching: C concurrent clients, each sending one-row score
requests back to back (closed loop, one keep-alive connection each) for a fixed time, against one
registered metric served with batching on (the default: up to 64 rows per evaluator call, a lone
request dispatched at once) and off (1 row per evaluator call), both in the same run. Trains a
small real evaluator first (pii preset, encoder, a few steps) through the registry's worker,
registers it, and serves it with uvicorn on 127.0.0.1 in a separate process (so the clients'
Python does not share the server's GIL), scoring at the evaluator's default precision and the
server's default torch threads (``--precision`` and ``--threads`` change them for both modes).

    python benchmarks/bench_serve_batching.py                        # 16 and 64 clients
    python benchmarks/bench_serve_batching.py --clients 16 --seconds 5 --max-steps 8

Modes are run in the order batched, unbatched, unbatched, batched for each client count
(``--rounds 2``, the default) and the latencies of both rounds pooled, so a change in the
machine's load during the run falls on both modes alike. Output: a Markdown table on stdout and
benchmarks/results/serve_batching.{md,json}. Throughput depends on the machine and on its load
(recorded at the start and at the end); compare the two modes from the same run only.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import random
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

HERE = Path(__file__).resolve().parent
DEFAULT_DATA = Path(os.environ.get("ASSAY_SHARED_DATA", HERE.parent.parent / "shared" / "data"))
FLAGS = {"avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile", "avx512_vnni"}


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _load() -> str:
    return ", ".join(f"{x:.2f}" for x in os.getloadavg())


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


def serve(home: str, port: int, batch_rows: int, batch_ms: float, threads: int | None = None,
          precision: str = "auto") -> None:
    """The server process: the registry under ``home``, uvicorn on 127.0.0.1:``port``; ``threads``:
    the scoring thread's torch threads (default: the server's own choice, ``assay._cpu.serve_threads``)."""
    import uvicorn

    from assay.evaluator import Evaluator
    from assay.registry import Registry
    from assay.server import create_app

    if threads:
        os.environ["ASSAY_SERVE_THREADS"] = str(threads)
    load = None if precision == "auto" else (lambda path: Evaluator.from_pretrained(path, precision=precision))
    reg = Registry(f"sqlite:///{home}/bench.db", f"{home}/artifacts", load_evaluator=load)
    app = create_app(reg, batch_rows=batch_rows, batch_wait_ms=batch_ms, ui=False)

    def scoring_thread() -> tuple[float, int]:
        import torch

        return time.thread_time(), torch.get_num_threads()

    @app.get("/bench/info")
    def info(name: str | None = None) -> dict:
        scoring, threads = app.state.batcher.call(scoring_thread).result()  # the scoring thread's view
        dtype = None
        if name:
            ev = reg.metrics.evaluator(reg.metrics.get(name))
            dtype = str(ev.dtype or "float32").replace("torch.", "") + ("" if ev.precision != "int8" else " (int8)")
        return {"torch_threads": threads, "pid": os.getpid(), "cpu_s": time.process_time(),
                "scoring_cpu_s": scoring, "dtype": dtype}

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False,
                timeout_keep_alive=300)


class _Conn:
    def __init__(self, port: int):
        self.c = http.client.HTTPConnection("127.0.0.1", port, timeout=120)

    def call(self, method: str, path: str, body: dict | None = None) -> dict:
        data = None if body is None else json.dumps(body).encode()
        self.c.request(method, path, body=data, headers={"Content-Type": "application/json"})
        resp = self.c.getresponse()
        out = json.loads(resp.read())
        if resp.status != 200:
            raise RuntimeError(f"{resp.status}: {out}")
        return out


def _start(home: str, batch_rows: int, batch_ms: float, threads: int | None = None,
           precision: str = "auto") -> tuple[subprocess.Popen, int]:
    port = _port()
    proc = subprocess.Popen([sys.executable, __file__, "--serve", home, "--port", str(port),
                             "--batch-rows", str(batch_rows), "--batch-ms", str(batch_ms),
                             "--threads", str(threads or 0), "--precision", precision])
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            _Conn(port).call("GET", "/v1/health")
            return proc, port
        except OSError:
            if proc.poll() is not None:
                sys.exit("the server process exited")
            time.sleep(0.2)
    proc.kill()
    sys.exit("the server did not start")


def measure(home: str, name: str, texts: list[str], *, clients: int, seconds: float, batch_rows: int,
            batch_ms: float, call: str = "score", threads: int | None = None, precision: str = "auto") -> dict:
    """``clients`` closed-loop clients for ``seconds`` (after a warm-up request each) against a
    fresh server process; ``call``: the score endpoint or POST /v1/guard (the default policy)."""
    proc, port = _start(home, batch_rows, batch_ms, threads, precision)
    try:
        c = _Conn(port)
        info = c.call("GET", "/bench/info")
        path, mk = ((f"/v1/metrics/{name}/score", lambda t: {"rows": [t]}) if call == "score" else
                    ("/v1/guard", lambda t: {"metrics": [name], "input": t}))
        c.call("POST", path, mk(texts[0]))  # load the evaluator once
        before = c.call("GET", "/v1/health")["batching"][name]
        info = c.call("GET", f"/bench/info?name={name}")
        client_cpu = time.process_time()
        lat: list[float] = []
        errors: list[str] = []
        start = threading.Barrier(clients + 1)
        stop_at = [0.0]

        def client(k: int) -> None:
            conn, i = _Conn(port), k
            try:
                start.wait()
                while time.perf_counter() < stop_at[0]:
                    t0 = time.perf_counter()
                    conn.call("POST", path, mk(texts[i % len(texts)]))
                    lat.append(time.perf_counter() - t0)
                    i += clients
            except Exception as exc:  # noqa: BLE001 - reported in the row
                errors.append(repr(exc))

        threads = [threading.Thread(target=client, args=(k,), daemon=True) for k in range(clients)]
        for t in threads:
            t.start()
        stop_at[0] = time.perf_counter() + seconds
        start.wait()
        t0 = time.perf_counter()
        for t in threads:
            t.join()
        wall = time.perf_counter() - t0
        client_cpu = time.process_time() - client_cpu
        after = _Conn(port).call("GET", "/v1/health")["batching"][name]
        end = _Conn(port).call("GET", "/bench/info")
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    calls = after["batches"] - before["batches"]
    since = {k: (after.get(k, 0) - before.get(k, 0)) / 1000 for k in ("scoring_ms", "scoring_cpu_ms", "dispatch_ms")}
    return {"clients": clients, "requests": len(lat), "errors": len(errors), "wall_s": round(wall, 2),
            "latencies": lat, "evaluator_calls": calls, "largest_batch": after["largest_batch_requests"],
            "torch_threads": info["torch_threads"], "dtype": info["dtype"], "batch_rows": batch_rows,
            "batch_ms": batch_ms,
            "error_sample": errors[:1], "server_cpu_s": end["cpu_s"] - info["cpu_s"],
            "scoring_cpu_s": end["scoring_cpu_s"] - info["scoring_cpu_s"], "client_cpu_s": client_cpu,
            "scoring_wall_s": since["scoring_ms"], "dispatch_s": since["dispatch_ms"]}


def _summary(runs: list[dict], mode: str) -> dict:
    lat = sorted(x for r in runs for x in r.pop("latencies"))
    wall = sum(r["wall_s"] for r in runs)
    n, calls = len(lat), sum(r["evaluator_calls"] for r in runs)
    per = lambda k: round(1000 * sum(r[k] for r in runs) / n, 2) if n else None  # noqa: E731
    q = lambda p: round(1000 * lat[min(n - 1, int(p * n))], 1) if n else None  # noqa: E731
    return {"mode": mode, "clients": runs[0]["clients"], "requests": n, "errors": sum(r["errors"] for r in runs),
            "wall_s": round(wall, 2), "requests_per_s": round(n / wall, 1) if wall else 0.0,
            "p50_ms": q(0.50), "p95_ms": q(0.95), "evaluator_calls": calls,
            "rows_per_call": round(n / calls, 2) if calls else None,
            "largest_batch": max(r["largest_batch"] for r in runs), "server_cpu_ms_per_req": per("server_cpu_s"),
            "scoring_cpu_ms_per_req": per("scoring_cpu_s"), "scoring_wall_ms_per_req": per("scoring_wall_s"),
            "scoring_busy": round(sum(r["scoring_wall_s"] for r in runs) / wall, 2) if wall else None,
            "dispatch_ms_per_call": round(1000 * sum(r["dispatch_s"] for r in runs) / calls, 2) if calls else None, "client_cpu_ms_per_req": per("client_cpu_s"), "torch_threads": runs[0]["torch_threads"],
            "dtype": runs[0]["dtype"],
            "rounds": len(runs), "error_sample": next((r["error_sample"] for r in runs if r["error_sample"]), [])}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=DEFAULT_DATA)
    p.add_argument("--clients", type=int, nargs="+", default=[16, 64])
    p.add_argument("--seconds", type=float, default=10.0, help="per mode and round")
    p.add_argument("--rounds", type=int, default=2, help="batched/unbatched rounds per client count (ABBA order)")
    p.add_argument("--guard", action="store_true", help="also POST /v1/guard, batched, at each client count")
    p.add_argument("--max-steps", type=int, default=10)
    p.add_argument("--home", help="reuse (or create) the registry in this folder instead of a temporary one")
    p.add_argument("--out", type=Path, default=HERE / "results" / "serve_batching")
    p.add_argument("--serve", help=argparse.SUPPRESS)
    p.add_argument("--port", type=int, help=argparse.SUPPRESS)
    p.add_argument("--batch-rows", type=int, default=64, help=argparse.SUPPRESS)
    p.add_argument("--batch-ms", type=float, default=10.0, help="batched mode: the wait window (ms)")
    p.add_argument("--threads", type=int, default=0,
                   help="the server's scoring threads (default 0: its own choice, the usable cores less one)")
    p.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16", "int8"],
                   help="the evaluator's scoring precision in the server (both modes)")
    a = p.parse_args()
    if a.serve:
        return serve(a.serve, a.port, a.batch_rows, a.batch_ms, a.threads or None, a.precision)

    load_start = _load()
    from assay.registry import Registry

    tmp = tempfile.TemporaryDirectory()
    home = a.home or tmp.name
    Path(home).mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("ASSAY_HOME", home)
    reg = Registry(f"sqlite:///{home}/bench.db", f"{home}/artifacts")
    t0 = time.perf_counter()
    existing = [m for m in reg.metrics.list() if m.name == "pii"] if a.home else []
    name = existing[-1].full_name if existing else train_metric(reg, a.data, a.max_steps)
    train_s = time.perf_counter() - t0
    info = json.loads(next(Path(home, "artifacts").rglob("evaluator.json")).read_text())
    family = info.get("family", "?") + (f" ({info['linear'].get('kind')}: frozen base-model embeddings + logistic "
                                        "regression)" if info.get("linear") else "")
    reg.close()
    texts = [r["input"] for r in _rows(a.data / "pii_presidio_synth.jsonl", 200, 3, set())]
    modes = {"batched": (64, a.batch_ms), "unbatched": (1, 0.0)}
    results = []
    for n in a.clients:
        runs: dict[str, list[dict]] = {"batched": [], "unbatched": []}
        order = (["batched", "unbatched", "unbatched", "batched"] * a.rounds)[:2 * a.rounds]
        for mode in order:
            rows, ms = modes[mode]
            r = measure(home, name, texts, clients=n, seconds=a.seconds, batch_rows=rows, batch_ms=ms,
                        threads=a.threads or None, precision=a.precision)
            print(json.dumps({"mode": mode, "load": _load(), **{k: v for k, v in r.items() if k != "latencies"},
                              "requests_per_s": round(r["requests"] / r["wall_s"], 1)}), file=sys.stderr)
            runs[mode].append(r)
        results += [_summary(runs["batched"], "batched"), _summary(runs["unbatched"], "unbatched")]
        if a.guard:
            g = measure(home, name, texts, clients=n, seconds=a.seconds, batch_rows=64, batch_ms=a.batch_ms,
                        call="guard", threads=a.threads or None, precision=a.precision)
            results.append(_summary([g], "guard, batched"))
    load_end = _load()
    tmp.cleanup()

    def pick(mode: str, n: int) -> dict | None:
        return next((r for r in results if r["mode"] == mode and r["clients"] == n), None)

    verdicts = {}
    for n in a.clients:
        b, u = pick("batched", n), pick("unbatched", n)
        verdicts[n] = {"throughput_ratio": round(b["requests_per_s"] / u["requests_per_s"], 2) if u["requests_per_s"]
                       else None, "p95_batched_ms": b["p95_ms"], "p95_unbatched_ms": u["p95_ms"]}
    head = ["mode", "clients", "requests", "errors", "evaluator_calls", "rows_per_call", "largest_batch", "wall_s",
            "requests_per_s", "p50_ms", "p95_ms", "server_cpu_ms_per_req", "scoring_cpu_ms_per_req",
            "scoring_wall_ms_per_req", "scoring_busy", "dispatch_ms_per_call", "client_cpu_ms_per_req"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(str(r[h]) for h in head) + " |" for r in results]
    goals = []
    if 16 in verdicts:
        v = verdicts[16]
        goals.append(f"- 16 clients: batched/unbatched requests/s = **{v['throughput_ratio']}x** (goal >= 2x: "
                     f"{'met' if (v['throughput_ratio'] or 0) >= 2 else 'not met'})")
    if 64 in verdicts:
        v = verdicts[64]
        ok = v["p95_batched_ms"] is not None and v["p95_batched_ms"] <= v["p95_unbatched_ms"]
        goals.append(f"- 64 clients: p95 batched {v['p95_batched_ms']} ms vs unbatched {v['p95_unbatched_ms']} ms "
                     f"(goal: no worse: {'met' if ok else 'not met'}); requests/s ratio "
                     f"{v['throughput_ratio']}x")
    for n, v in verdicts.items():
        if n not in (16, 64):
            goals.append(f"- {n} clients: requests/s ratio {v['throughput_ratio']}x, p95 {v['p95_batched_ms']} vs "
                         f"{v['p95_unbatched_ms']} ms")
    flags = []
    if os.path.exists("/proc/cpuinfo"):
        flags = sorted({f for line in open("/proc/cpuinfo") if line.startswith("flags") for f in line.split()[2:]}
                       & FLAGS)
    machine = {"cpu": platform.processor() or platform.machine(), "cpus": os.cpu_count(), "flags": flags,
               "usable_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
               "server_torch_threads": results[0]["torch_threads"], "dtype": results[0]["dtype"],
               "precision": a.precision, "batch_ms": a.batch_ms, "python": platform.python_version(),
               "load_start": load_start, "load_end": load_end}
    md = ("# Score micro-batching: C closed-loop clients, 1 row per request (POST /v1/metrics/{name}/score), "
          "batched vs unbatched in one run\n\n" + "\n".join(lines) + "\n\n" + "\n".join(goals) +
          f"\n\nMetric {name}: the pii preset's default evaluator, family {family}, trained {a.max_steps} steps on "
          f"pii rows ({'reused from ' + a.home if existing else f'{train_s:.0f}s'}), scored at precision {a.precision} "
          f"(the embedding forward in {results[0]['dtype']}); server scoring-thread torch threads "
          f"{results[0]['torch_threads']} ({'--threads ' + str(a.threads) if a.threads else 'the server default'}), "
          f"batch window {a.batch_ms:g} ms. Each mode: {a.rounds} round(s) of {a.seconds:g}s per client count "
          "(order batched, unbatched, unbatched, batched; latencies pooled), server in its own process. "
          f"Machine: {machine['cpu']}, {machine['cpus']} CPUs ({machine['usable_cpus']} usable), flags "
          f"{' '.join(flags)}, server torch threads {machine['server_torch_threads']}, python {machine['python']}; "
          f"load average at the start {load_start}, at the end {load_end}. `evaluator_calls` excludes the "
          "warm-up request; `rows_per_call` = requests / evaluator calls. CPU per request: the server process (all its threads), "
          "its scoring thread alone (the forward passes, with torch's own worker threads not counted), and the "
          "clients' process. `scoring_wall_ms_per_req`: wall time inside evaluator calls per request (above the "
          "scoring CPU when the thread waits for a core or the GIL); `scoring_busy`: share of the wall time the "
          "scoring thread spent in evaluator calls; `dispatch_ms_per_call`: time from a call's end to the next "
          "call's start while requests were queued (the batch window included).\n")
    print(md)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.with_suffix(".md").write_text(md)
    a.out.with_suffix(".json").write_text(json.dumps({"results": results, "goals": verdicts, "machine": machine},
                                                     indent=1))


if __name__ == "__main__":
    main()
