"""The seeds regime over many seed / held-out splits: how much of a gap is the split's luck.

``bench_evaluators`` measures each dataset on one split (``split_seed`` 0). With ~100 seed rows and
(tau-bench) 100 held-out rows, a kappa's 95% interval is about +-0.17, and two systems of the same
family can trade places from one split to the next. This benchmark repeats the seeds regime of
``bench_evaluators`` (the same test-set sample; ``split_seed`` 0..N-1 draws N different seed /
held-out splits, grouped and stratified by ``assay.train`` itself) and compares, on each split's
held-out rows:

- shipped: ``assay.train._fit.fit_and_select``, the product's selection, called as ``assay train``
  calls it (the same fit / calibration rows and the default budget's deadline): the config default's
  candidates (tfidf, embed, lm, hybrid, cross-validated on the seed rows only, the winner refit and
  calibrated on its out-of-fold scores), with ``encoder`` (cross-validated on the same folds: k + 1
  fine-tunes per split) on the datasets of ``--encoder-datasets``, the same short-text datasets as
  ``bench_evaluators``' default; without it elsewhere (N x 6 fine-tunes on long trajectories, tool
  schemas and documents do not fit a CPU run);
- TF-IDF + LR: the report's baseline (``assay.report.run_baselines``), fitted on the same seed rows.

SetFit is left out (``bench_evaluators`` runs it on split 0). The linear candidates' kappas do not
depend on load (fixed seeds, one torch thread); the encoder's can: its fine-tunes share the budget's
time, and under load one can fall back to its slice path (the selection notes, printed per split, say so).

    python benchmarks/bench_splits.py --splits 8   # -> benchmarks/results/splits.md / .json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import numpy as np  # noqa: E402

import bench_evaluators as bench  # noqa: E402

from assay.config import TrainingConfig  # noqa: E402

CANDIDATES = [c for c in TrainingConfig().candidates if c != "encoder"]  # the config default's, without encoder


def run(name: str, splits: int, data: Path, work: Path, log, encoder: bool = False) -> list[dict]:
    from assay.config import budget_seconds, config_from_dict
    from assay.data import write_rows
    from assay.metrics import load_metric
    from assay.report._baselines import run_baselines
    from assay.stats import cohen_kappa
    from assay.train._fit import fit_and_select
    from assay.train._pipeline import REPORT_SHARE, _calibration_split, _target_prior

    ds = bench.DATASETS[name]
    metric = load_metric(ds.metric)
    labels = list(metric.labels)
    test, _, _ = bench.sample(ds, data, 600, 0, 0)  # bench_evaluators' test-set sample
    d = work / name
    d.mkdir(parents=True, exist_ok=True)
    write_rows(test, d / "test.jsonl")
    out = []
    for split in range(splits):
        t0 = time.perf_counter()
        cfg = config_from_dict({
            "metric": ds.metric, "output": "artifact",
            "data": {"test_set": "test.jsonl", "seed_fraction": round(min(0.5, 100 / len(test)), 4),
                     "split_seed": split, "train_on_seeds": True, **({"group_by": ds.group_by} if ds.group_by else {})},
            "model": {"family": "encoder", "max_length": 256},
            "train": {"seed": 0, "candidates": (["encoder"] if encoder else []) + CANDIDATES, "num_threads": 1}},
            base_dir=d)
        prep = cfg.prepare_test_set(metric)
        seeds, held = prep.split.seeds, prep.split.held_out
        fit_rows, cal_rows = _calibration_split(seeds, cfg.train.calibration_fraction, cfg.train.seed,
                                                prep.split.group_by)
        budget = budget_seconds(cfg.train.budget)
        deadline = t0 + budget * (1 - REPORT_SHARE) if budget is not None else None
        ev, _, _, sel = fit_and_select(cfg, metric, seeds, fit_rows, cal_rows, _target_prior(cfg, metric, seeds),
                                       group_by=prep.split.group_by, progress=False, deadline=deadline)
        yh = [labels.index(r["label"]) for r in held]
        shipped = float(cohen_kappa(yh, ev.decide(ev.predict_proba(held)), len(labels)) or 0.0)
        base = run_baselines(metric, seeds, held, bootstrap=0)["tfidf_logreg"]
        row = {"dataset": name, "split_seed": split, "seeds": len(seeds), "held_out": len(held),
               "winner": (sel or {}).get("winner"), "shipped": round(shipped, 4), "encoder": encoder,
               "notes": list((sel or {}).get("notes") or []),
               "tfidf_baseline": round(float(base["kappa"] or 0.0), 4), "seconds": round(time.perf_counter() - t0, 1)}
        log(json.dumps(row))
        out.append(row)
    return out


def summarize(rows: list[dict]) -> list[dict]:
    out = []
    for name in dict.fromkeys(r["dataset"] for r in rows):
        rs = [r for r in rows if r["dataset"] == name]
        diff = np.array([r["shipped"] - r["tfidf_baseline"] for r in rs])
        half = 1.96 * diff.std(ddof=1) / np.sqrt(len(diff)) if len(diff) > 1 else float("nan")
        winners: dict[str, int] = {}
        for r in rs:
            winners[r["winner"]] = winners.get(r["winner"], 0) + 1
        out.append({"dataset": name, "splits": len(rs), "shipped_mean": float(np.mean([r["shipped"] for r in rs])),
                    "tfidf_mean": float(np.mean([r["tfidf_baseline"] for r in rs])),
                    "diff_mean": float(diff.mean()), "diff_ci95": [float(diff.mean() - half), float(diff.mean() + half)],
                    "shipped_at_least_tfidf": int((diff >= 0).sum()), "winners": winners})
    return out


def render(rows: list[dict], summary: list[dict], args: argparse.Namespace, started: str, seconds: float,
           env: dict) -> str:
    out = ["# Seeds regime over many seed / held-out splits", "",
           f"Run {started}, {seconds:.0f} s; `python benchmarks/bench_splits.py --splits {args.splits} "
           f"--datasets {args.datasets} --encoder-datasets {args.encoder_datasets}`. Shipped: `fit_and_select` with "
           f"candidates {CANDIDATES}, and `encoder` (cross-validated) on {args.encoder_datasets or 'no dataset'}; "
           "TF-IDF + LR: the report's baseline; the same seed rows and held-out rows per split.", "",
           "| dataset | splits | seeds / held-out | shipped kappa (mean) | TF-IDF+LR kappa (mean) | shipped - TF-IDF "
           "(mean [95% CI over splits]) | splits with shipped >= TF-IDF | winners |",
           "|---|---|---|---|---|---|---|---|"]
    for s in summary:
        rs = [r for r in rows if r["dataset"] == s["dataset"]]
        sizes = f"{rs[0]['seeds']} / {rs[0]['held_out']}"
        lo, hi = s["diff_ci95"]
        out.append(f"| {s['dataset']} | {s['splits']} | {sizes} | {s['shipped_mean']:.3f} | {s['tfidf_mean']:.3f} | "
                   f"{s['diff_mean']:+.3f} [{lo:+.3f}, {hi:+.3f}] | {s['shipped_at_least_tfidf']} of {s['splits']} | "
                   + ", ".join(f"{w} {n}" for w, n in s["winners"].items()) + " |")
    out += ["", "## Every split", "", "| dataset | split_seed | winner | shipped | TF-IDF+LR | seconds |",
            "|---|---|---|---|---|---|"]
    out += [f"| {r['dataset']} | {r['split_seed']} | {r['winner']} | {r['shipped']:.3f} | {r['tfidf_baseline']:.3f} | "
            f"{r['seconds']} |" for r in rows]
    notes = [f"- {r['dataset']} {r['split_seed']}: {n}" for r in rows for n in r.get("notes") or []]
    if notes:
        out += ["", "## Selection notes", ""] + notes
    machine = {**bench._machine(), **env, "load_average_at_end": os.getloadavg()}
    out += ["", "## Machine", ""] + [f"- {k}: {v}" for k, v in machine.items()] + [""]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--datasets", default="taubench,toolcall,faithfulness,pii,toxicity")
    p.add_argument("--splits", type=int, default=8)
    p.add_argument("--encoder-datasets", default="toxicity,pii",
                   help="datasets where the encoder candidate (in the config default) joins the candidates")
    p.add_argument("--data", type=Path, default=bench.DEFAULT_DATA)
    p.add_argument("--out", type=Path, default=HERE / "results" / "splits.md")
    args = p.parse_args(argv)
    import torch

    from assay.evaluator._linear import EmbedFeatures
    from assay.evaluator._lm_features import LmFeatures

    torch.set_num_threads(1)
    EmbedFeatures.cache = {}  # every split embeds the same test-set rows once
    LmFeatures.cache = {}
    started, t0, env = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()), time.perf_counter(), bench._env()
    rows: list[dict] = []
    with tempfile.TemporaryDirectory() as work:
        for name in args.datasets.split(","):
            rows += run(name, args.splits, args.data, Path(work), lambda m: print(m, flush=True),
                        encoder=name in args.encoder_datasets.split(","))
    summary = summarize(rows)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(render(rows, summary, args, started, time.perf_counter() - t0, env))
    args.out.with_suffix(".json").write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()},
                                                        "summary": summary, "rows": rows}, indent=1))
    print(args.out.read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
