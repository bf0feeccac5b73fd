"""Benchmark assay evaluators on real labeled data: quality vs baselines, speed, training time.

For each dataset: a deterministic held-out sample (~500 rows) and a disjoint training sample
(~2000 rows) from the same file (disjoint by content hash; BFCL by request text, since its
requests repeat with different calls). ``assay.train.train`` fits the evaluator and writes its
report (student, majority and TF-IDF baselines on the same rows). A separate measurement times
the bare base model at exactly 128 tokens per row (padded), at its best batch size.

    python benchmarks/bench_evaluators.py            # full run -> benchmarks/results/LATEST.md
    python benchmarks/bench_evaluators.py --quick    # smoke run -> benchmarks/results/QUICK.md
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

HERE = Path(__file__).resolve().parent
DEFAULT_DATA = Path(os.environ.get("ASSAY_SHARED_DATA", HERE.parent.parent / "shared" / "data"))


@dataclass(frozen=True)
class Dataset:
    name: str
    file: str
    metric: str
    group_by: str  # "row_hash" or a field name: rows sharing it stay on one side of the split


DATASETS = {
    "toxicity": Dataset("toxicity", "toxicity_davidson.jsonl", "toxicity_3class", "row_hash"),
    "faithfulness": Dataset("faithfulness", "faithfulness_begin.jsonl", "context_adherence", "row_hash"),
    "toolcall": Dataset("toolcall", "toolcall_bfcl_gptoss.jsonl", "tool_call_correctness", "input"),
    "pii": Dataset("pii", "pii_presidio_synth.jsonl", "pii", "row_hash"),
}
SEED_FRACTION = 0.05  # train() splits the test file into seeds + held-out; seeds are not trained on here


def _key(seed: int, value: str) -> str:
    return hashlib.sha256(f"bench:{seed}:{value}".encode()).hexdigest()


def sample(ds: Dataset, data_dir: Path, n_eval: int, n_train: int, seed: int = 0):
    """(test rows, train rows, notes): deterministic, disjoint groups of rows."""
    from assay.data import read_records, row_hash, to_rows, validate_rows
    from assay.metrics import load_metric

    metric = load_metric(ds.metric)
    rows = to_rows(read_records(data_dir / ds.file), source=Path(ds.file).stem)
    v = validate_rows(rows, metric, source=ds.file)
    kept = v.rows
    notes = {"file_rows": len(rows), "invalid_rows": len(v.errors), "duplicates_dropped": v.dropped_duplicates}
    groups: dict[str, list[dict[str, Any]]] = {}
    for r in kept:
        g = row_hash(r) if ds.group_by == "row_hash" else str(r.get(ds.group_by))
        groups.setdefault(g, []).append(r)
    order = sorted(groups, key=lambda g: _key(seed, g))
    n_test = round(n_eval / (1 - SEED_FRACTION))
    test: list[dict[str, Any]] = []
    train: list[dict[str, Any]] = []
    for g in order:
        if len(test) < n_test:
            test += groups[g]
        elif len(train) < n_train:
            train += groups[g]
        else:
            break
    test_hashes = {row_hash(r) for r in test}
    assert not any(row_hash(r) in test_hashes for r in train), "train/test overlap"
    return test, train, notes


def base_speed_128(family: str, base: str | None, metric_name: str, rows: list[dict[str, Any]],
                   max_rows: int = 64) -> dict[str, Any]:
    """Rows/s of the bare base model at exactly 128 tokens per row (tokenize + forward), best batch size."""
    import torch
    from transformers import AutoModel, AutoModelForCausalLM, AutoTokenizer

    from assay.evaluator._base_models import resolve_base
    from assay.metrics import load_metric, render
    from assay.report import measure_speed

    ref = resolve_base(base or ("minilm" if family == "encoder" else "smollm2"), hash_files=False)
    tok = AutoTokenizer.from_pretrained(ref.path)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    cls = AutoModel if family == "encoder" else AutoModelForCausalLM
    model = cls.from_pretrained(ref.path).eval()
    metric = load_metric(metric_name)
    texts = [render(metric, r) for r in rows[:max_rows]]

    def score(batch: list[str]) -> Any:
        enc = tok(batch, truncation=True, max_length=128, padding="max_length", return_tensors="pt")
        with torch.inference_mode():
            return model(**enc).logits if family == "decoder" else model(**enc).last_hidden_state[:, 0]

    out = measure_speed(score, texts, max_rows=max_rows)
    out["base"] = ref.name
    return out


def run_one(ds: Dataset, args: argparse.Namespace, work: Path, log: Callable[[str], None]) -> dict[str, Any]:
    from assay.config import config_from_dict
    from assay.data import write_rows
    from assay.train import train

    test, train_rows, notes = sample(ds, args.data, args.n_eval, args.n_train, args.seed)
    d = work / ds.name
    d.mkdir(parents=True, exist_ok=True)
    write_rows(test, d / "test.jsonl")
    write_rows(train_rows, d / "train.jsonl")
    train_cfg: dict[str, Any] = {"epochs": args.epochs, "batch_size": args.batch_size, "seed": args.seed}
    if args.max_steps:
        train_cfg["max_steps"] = args.max_steps
    if args.threads:
        train_cfg["num_threads"] = args.threads
    cfg = config_from_dict({
        "metric": ds.metric,
        "data": {"test_set": "test.jsonl", "train_set": "train.jsonl", "seed_fraction": SEED_FRACTION,
                 "split_seed": args.seed, "train_on_seeds": False},
        "model": {"family": args.family, "base": args.base, "max_length": args.max_length},
        "train": train_cfg,
        "report": {"bootstrap": args.bootstrap, "latency_rows": args.latency_rows},
        "output": "artifact",
    }, base_dir=d)
    log(f"[{ds.name}] {ds.metric}: {len(test)} test rows, {len(train_rows)} train rows; training ...")
    t0 = time.perf_counter()
    result = train(cfg, progress=False)
    seconds = time.perf_counter() - t0
    rep = result.report
    log(f"[{ds.name}] trained in {seconds:.0f}s; timing the base model at 128 tokens ...")
    speed128 = base_speed_128(args.family, args.base, ds.metric, test, args.latency_rows)
    return {
        "dataset": ds.name, "file": ds.file, "metric": ds.metric, "split_by": ds.group_by, "sampling": notes,
        "n_train": rep.get("n_train"), "n_eval": rep.get("n"),
        "student": _pick(rep.get("student") or {}),
        "baselines": {k: _pick(v) for k, v in (rep.get("baselines") or {}).items()},
        "evaluator": rep.get("evaluator"),
        "student_speed": {k: (rep.get("speed") or {}).get(k) for k in ("best_batch_size", "best_rows_per_s",
                                                                      "latency_ms", "cost_per_1m")},
        "speed_128": {k: speed128.get(k) for k in ("base", "best_batch_size", "best_rows_per_s", "latency_ms",
                                                  "cost_per_1m", "judge_cost_per_1m")},
        "train_seconds_total": round(seconds, 1),
        "train_loop_seconds": (result.training or {}).get("seconds"),
        "train_steps": (result.training or {}).get("steps"),
        "machine": speed128.get("machine"),
    }


def _pick(m: dict[str, Any]) -> dict[str, Any]:
    if "skipped" in m:
        return {"skipped": m["skipped"]}
    return {k: m.get(k) for k in ("n", "kappa", "f1_macro", "accuracy", "auroc", "auprc", "ece", "brier", "ci",
                                  "threshold")}


def _f(x: Any, d: int = 3) -> str:
    return "–" if x is None else f"{x:.{d}f}"


def render_table(results: list[dict[str, Any]], args: argparse.Namespace, started: str) -> str:
    head = ["dataset", "metric", "n_train", "n_eval", "student kappa [95% CI]", "F1 macro", "AUROC", "ECE",
            "tfidf kappa", "tfidf F1", "tfidf AUROC", "majority kappa",
            f"student rows/s (max_length {args.max_length})", "base rows/s @128 tok (batch)", "train time (s)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    for r in results:
        if "error" in r:
            lines.append(f"| {r['dataset']} | {r['metric']} | error: {r['error']} |" + " |" * (len(head) - 3))
            continue
        s, b = r["student"], r["baselines"]
        t, maj = b.get("tfidf_logreg", {}), b.get("majority", {})
        ci = (s.get("ci") or {}).get("kappa")
        sp, s128 = r["student_speed"], r["speed_128"]
        lines.append("| " + " | ".join([
            r["dataset"], r["metric"], str(r["n_train"]), str(r["n_eval"]),
            f"{_f(s.get('kappa'))}" + (f" [{_f(ci[0], 2)}, {_f(ci[1], 2)}]" if ci else ""),
            _f(s.get("f1_macro")), _f(s.get("auroc")), _f(s.get("ece")),
            _f(t.get("kappa")), _f(t.get("f1_macro")), _f(t.get("auroc")), _f(maj.get("kappa")),
            f"{_f(sp.get('best_rows_per_s'), 1)} (batch {sp.get('best_batch_size')})",
            f"{_f(s128.get('best_rows_per_s'), 1)} ({s128.get('best_batch_size')})",
            f"{r['train_seconds_total']:.0f} (loop {_f(r['train_loop_seconds'], 0)})",
        ]) + " |")
    machine = next((r["machine"] for r in results if r.get("machine")), None) or _machine()
    out = [f"# assay evaluator benchmark{' (quick smoke run)' if args.quick else ''}", "",
           f"Run {started}; assay {_assay_version()}.", "", *lines, "",
           "Student: the evaluator `assay.train.train` fitted (figures on the held-out rows, "
           "threshold/temperature calibrated on a slice of the training rows). tfidf: TF-IDF word 1-2 + "
           "char 2-5 grams -> logistic regression (balanced, C by CV), threshold 0.5, same training rows. "
           "Train time: the whole `train()` call (load, train, calibrate, evaluate incl. baselines and "
           "speed, save); loop: the optimizer steps alone. Base rows/s @128: the bare base model "
           "(tokenize + forward), every row padded/truncated to exactly 128 tokens, best of batch sizes "
           "1/8/32/64.", "",
           "## Machine", "",
           *[f"- {k}: {v}" for k, v in machine.items()], "",
           "## Settings", "",
           f"- family: {args.family}; base: {args.base or 'default'}; max_length: {args.max_length}",
           f"- epochs: {args.epochs}; max_steps: {args.max_steps}; batch size: {args.batch_size}; "
           f"learning rate: the family default; LoRA: config default; seed: {args.seed}",
           f"- rows: ~{args.n_eval} held-out (test file of ~{round(args.n_eval / (1 - SEED_FRACTION))}, "
           f"seed_fraction {SEED_FRACTION}, seeds not trained on), ~{args.n_train} training rows; "
           "sampled by a seeded hash of each row's content (BFCL: of its request), train and test disjoint",
           f"- bootstrap resamples: {args.bootstrap}; rows timed for speed: {args.latency_rows}",
           f"- datasets: {', '.join(r['dataset'] + ' (' + r.get('file', '') + ')' for r in results)}", ""]
    return "\n".join(out)


def _machine() -> dict[str, Any]:
    from assay.report import machine_info

    return machine_info()


def _assay_version() -> str:
    import assay

    return assay.__version__


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="smoke run: few rows, a few steps")
    p.add_argument("--datasets", default=None,
                   help=f"comma-separated, of {', '.join(DATASETS)} (default: toxicity,faithfulness,toolcall; "
                        "quick: pii,toolcall)")
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, help="folder with the shared JSONL files")
    p.add_argument("--family", choices=["encoder", "decoder"], default="encoder")
    p.add_argument("--base", default=None, help="base model (default: the family's embedded one)")
    p.add_argument("--max-length", type=int, default=256)
    p.add_argument("--epochs", type=float, default=3)
    p.add_argument("--max-steps", type=int, default=None)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--n-eval", type=int, default=500)
    p.add_argument("--n-train", type=int, default=2000)
    p.add_argument("--bootstrap", type=int, default=1000)
    p.add_argument("--latency-rows", type=int, default=64)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--keep", type=Path, default=None, help="keep data and artifacts in this folder")
    p.add_argument("--out", type=Path, default=None, help="Markdown output (default results/LATEST.md)")
    args = p.parse_args(argv)
    if args.quick:
        args.n_eval, args.n_train, args.bootstrap, args.latency_rows = 60, 200, 100, 16
        args.max_steps = args.max_steps or 8
        args.max_length = min(args.max_length, 128)
    names = (args.datasets or ("pii,toolcall" if args.quick else "toxicity,faithfulness,toolcall")).split(",")
    unknown = [n for n in names if n not in DATASETS]
    if unknown:
        p.error(f"unknown datasets {unknown}; choose from {list(DATASETS)}")
    if not args.data.exists():
        p.error(f"no data folder at {args.data} (set --data or ASSAY_SHARED_DATA)")
    out_md = args.out or HERE / "results" / ("QUICK.md" if args.quick else "LATEST.md")
    started = time.strftime("%Y-%m-%d %H:%M:%S %Z")

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    results = []
    with tempfile.TemporaryDirectory(prefix="assay-bench-") as tmp:
        work = args.keep or Path(tmp)
        for n in names:
            ds = DATASETS[n]
            try:
                results.append(run_one(ds, args, work, log))
            except Exception as exc:  # keep going: one failed dataset should not hide the others
                log(f"[{n}] failed: {type(exc).__name__}: {exc}")
                results.append({"dataset": n, "metric": ds.metric, "file": ds.file,
                                "error": f"{type(exc).__name__}: {exc}"})
    text = render_table(results, args, started)
    print(text)
    out_md.parent.mkdir(parents=True, exist_ok=True)
    out_md.write_text(text + "\n")
    out_md.with_suffix(".json").write_text(json.dumps(
        {"started": started, "args": {k: str(v) for k, v in vars(args).items()}, "python": platform.python_version(),
         "results": results}, indent=1, default=str) + "\n")
    log(f"wrote {out_md} and {out_md.with_suffix('.json')}")
    return 1 if any("error" in r for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
