"""Benchmark assay evaluators against peers on real labeled data, side by side in one process.

For each dataset in ``../shared/data`` and each regime, one labeled "test set" file (~100 seed rows +
~500 held-out rows, split by ``assay.train`` itself) and, in the ``2k`` regime, 2,000 uploaded training
rows from the same source file, disjoint from the test set by group (BFCL: by request; BEGIN: by
knowledge context; tau-bench: by task). Regimes:

- ``seeds``: only the ~100 seed rows are labeled (no train_set, no generation): the few-label start;
- ``2k``: the seeds + 2,000 uploaded labeled rows (fewer where the file is smaller: said per row).

Systems, all trained on exactly the rows the shipped evaluator trained on and scored on the same
held-out rows: the shipped evaluator (``assay.train.train`` with ``train.candidates``: model selection
by cross-validation on the training rows), TF-IDF + logistic regression and majority (the report's
baselines, same process), and SetFit (``setfit`` package, benchmark-only) with the same MiniLM body.

    python benchmarks/bench_evaluators.py            # full run -> benchmarks/results/LATEST.md/.json
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
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

HERE = Path(__file__).resolve().parent
DEFAULT_DATA = Path(os.environ.get("ASSAY_SHARED_DATA", HERE.parent.parent / "shared" / "data"))


@dataclass(frozen=True)
class Dataset:
    name: str
    file: str
    metric: str
    group_by: str | None  # rows sharing this field stay on one side (None: by content)


DATASETS = {
    "toxicity": Dataset("toxicity", "toxicity_davidson.jsonl", "toxicity_3class", None),
    "faithfulness": Dataset("faithfulness", "faithfulness_begin.jsonl", "context_adherence", "context"),
    "pii": Dataset("pii", "pii_presidio_synth.jsonl", "pii", "template_id"),  # rows of one template together
    "toolcall": Dataset("toolcall", "toolcall_bfcl_gptoss.jsonl", "tool_call_correctness", "input"),
    "taubench": Dataset("taubench", "agent_taubench_airline.jsonl", "agent_task_success", "input"),
}
REGIMES = ("seeds", "2k")


def _key(seed: int, value: str) -> str:
    return hashlib.sha256(f"bench:{seed}:{value}".encode()).hexdigest()


def sample(ds: Dataset, data_dir: Path, n_test: int, n_train: int, seed: int = 0):
    """(test-set rows, uploaded training rows, notes): deterministic, disjoint by group."""
    from assay.data import group_key, read_records, to_rows, validate_rows
    from assay.metrics import load_metric

    metric = load_metric(ds.metric)
    rows = to_rows(read_records(data_dir / ds.file), source=Path(ds.file).stem)
    v = validate_rows(rows, metric, source=ds.file)
    notes: dict[str, Any] = {"file_rows": len(rows), "invalid_rows": len(v.errors),
                             "duplicates_dropped": v.dropped_duplicates}
    groups: dict[str, list[dict[str, Any]]] = {}
    for r in v.rows:
        groups.setdefault(group_key(r, ds.group_by), []).append(r)
    order = sorted(groups, key=lambda g: _key(seed, g))
    test: list[dict[str, Any]] = []
    train: list[dict[str, Any]] = []
    if len(v.rows) < n_test + 200:  # a small file (tau-bench): all of it is the test set, no uploaded rows
        n_test = len(v.rows)
    for g in order:
        if len(test) < n_test:
            test += groups[g]
        elif len(train) < n_train:
            train += groups[g]
        else:
            break
    tg = {group_key(r, ds.group_by) for r in test}
    assert not any(group_key(r, ds.group_by) in tg for r in train), "train/test share a group"
    notes["groups"] = len(groups)
    return test, train, notes


def _texts(metric: Any, rows: list[dict[str, Any]], max_length: int) -> list[str]:
    """The text the embed candidate reads (fields only, judged field first, fitted to max_length)."""
    from transformers import AutoTokenizer

    from assay.evaluator._base_models import resolve_base
    from assay.evaluator._common import render_fitted
    from assay.evaluator._encoder import compact_metric

    tok = AutoTokenizer.from_pretrained(resolve_base("minilm", hash_files=False).path)
    tok.model_max_length = 1 << 30
    view = compact_metric(metric, tok.sep_token)
    return [render_fitted(view, r, max_length - 2, tok)[0] for r in rows]


def run_setfit(metric: Any, train_rows: list[dict[str, Any]], eval_rows: list[dict[str, Any]],
               args: argparse.Namespace) -> tuple[Any, dict[str, Any]]:
    """SetFit (contrastive pair fine-tune of the MiniLM body, then a logistic-regression head)."""
    import numpy as np
    from datasets import Dataset as HFDataset
    from setfit import SetFitModel, Trainer, TrainingArguments

    from assay.evaluator._base_models import resolve_base

    labels = list(metric.labels)
    t0 = time.perf_counter()
    # balanced class weights in the head, like every logistic regression in this comparison
    model = SetFitModel.from_pretrained(str(resolve_base("minilm", hash_files=False).path),
                                        head_params={"class_weight": "balanced", "max_iter": 2000})
    model.model_body.max_seq_length = args.setfit_max_length
    targs = TrainingArguments(batch_size=16, num_epochs=1, max_steps=args.setfit_steps, num_iterations=20,
                              max_length=args.setfit_max_length, seed=args.seed, show_progress_bar=False,
                              report_to="none")
    data = HFDataset.from_dict({"text": _texts(metric, train_rows, args.setfit_max_length),
                                "label": [labels.index(r["label"]) for r in train_rows]})
    trainer = Trainer(model=model, args=targs, train_dataset=data)
    trainer.train()
    fit_s = time.perf_counter() - t0
    probs = np.asarray(model.predict_proba(_texts(metric, eval_rows, args.setfit_max_length), as_numpy=True))
    full = np.zeros((len(eval_rows), len(labels)))
    classes = [int(c) for c in getattr(model.model_head, "classes_", range(probs.shape[1]))]
    full[:, classes] = probs
    return full, {"fit_seconds": round(fit_s, 1), "steps": args.setfit_steps, "max_length": args.setfit_max_length}


def run_one(ds: Dataset, regime: str, test: list[dict[str, Any]], uploaded: list[dict[str, Any]],
            args: argparse.Namespace, work: Path, log: Callable[[str], None]) -> dict[str, Any]:
    from assay.config import config_from_dict
    from assay.data import row_hash, write_rows
    from assay.metrics import load_metric
    from assay.report import classification_metrics
    from assay.train import train

    metric = load_metric(ds.metric)
    d = work / f"{ds.name}-{regime}"
    d.mkdir(parents=True, exist_ok=True)
    write_rows(test, d / "test.jsonl")
    data: dict[str, Any] = {"test_set": "test.jsonl", "seed_fraction": round(min(0.5, args.n_seeds / len(test)), 4),
                            "split_seed": args.seed, "train_on_seeds": True}
    if regime == "2k":
        write_rows(uploaded, d / "train.jsonl")
        data["train_set"] = "train.jsonl"
    if ds.group_by and "group_by" in _data_keys():
        data["group_by"] = ds.group_by
    candidates = args.candidates.split(",")
    if ds.name in _names(args.encoder_datasets) and "encoder" not in candidates:
        candidates = ["encoder"] + candidates  # the config default's full set
    train_cfg: dict[str, Any] = {"seed": args.seed, "candidates": candidates,
                                 "cv_folds": args.cv_folds, "num_threads": args.threads}
    if args.threshold_objective:
        train_cfg["threshold_objective"] = args.threshold_objective
    if args.contrastive_steps:
        train_cfg["contrastive_steps"] = args.contrastive_steps
    cfg = config_from_dict({
        "metric": ds.metric, "data": data,
        "model": {"family": "encoder", "max_length": args.max_length},
        "train": train_cfg,
        "report": {"bootstrap": args.bootstrap, "latency_rows": args.latency_rows},
        "output": "artifact",
    }, base_dir=d)
    log(f"[{ds.name}/{regime}] {len(test)} test-set rows, {len(uploaded) if regime == '2k' else 0} uploaded; train() ...")
    t0 = time.perf_counter()
    result = train(cfg, progress=False)
    seconds = time.perf_counter() - t0
    rep = result.report
    split = json.loads((result.artifact_dir / "split.json").read_text())
    held = set(split["held_out"])
    seeds = set(split["seeds"])
    held_rows = [r for r in test if row_hash(r) in held]
    # the rows train() trained on: the seeds + uploaded rows outside the held-out side (its own filter)
    train_rows, seen = [], set()
    for r in [r for r in test if row_hash(r) in seeds] + (uploaded if regime == "2k" else []):
        h = (row_hash(r), r["label"])
        if h not in seen and row_hash(r) not in held:
            seen.add(h)
            train_rows.append(r)
    out: dict[str, Any] = {
        "dataset": ds.name, "regime": regime, "file": ds.file, "metric": ds.metric,
        "group_by": split.get("group_by", ds.group_by), "n_train": rep.get("n_train"), "n_eval": rep.get("n"),
        "student": _pick(rep.get("student") or {}),
        "baselines": {k: _pick(v) for k, v in (rep.get("baselines") or {}).items()},
        "evaluator": rep.get("evaluator"), "selection": rep.get("selection"),
        "train_seconds_total": round(seconds, 1),
        "peak_rss_mib": max(((rep.get("resources") or {}).get("peak_rss_mib") or {"?": None}).values(),
                            key=lambda v: v or 0),
        "people": people_ceiling(held_rows, list(metric.labels)),
        "student_speed": {k: (rep.get("speed") or {}).get(k) for k in ("best_batch_size", "best_rows_per_s")},
        "machine": (rep.get("speed") or {}).get("machine"),
    }
    if not args.no_setfit:
        log(f"[{ds.name}/{regime}] SetFit on {len(train_rows)} rows ...")
        try:
            probs, info = run_setfit(metric, train_rows, held_rows, args)
            m = classification_metrics([r["label"] for r in held_rows], probs, list(metric.labels),
                                       positive=metric.positive if metric.is_binary else None,
                                       threshold=0.5 if metric.is_binary else None, bootstrap=args.bootstrap)
            out["setfit"] = {**_pick(m), **info, "n_train": len(train_rows)}
        except Exception as exc:  # keep going: report it
            out["setfit"] = {"skipped": f"{type(exc).__name__}: {str(exc)[:200]}"}
    return out


def _votes(row: dict[str, Any], labels: list[str]) -> list[int] | None:
    """Per-label annotator votes of a row (``meta.votes_<name>``, where a label starts with ``<name>``:
    Davidson's ``votes_hate`` -> ``hate_speech``); None when the row has none."""
    meta = row.get("meta") or {}
    keys = {k[len("votes_"):]: v for k, v in meta.items() if k.startswith("votes_") and isinstance(v, int)}
    out = []
    for lab in labels:
        match = [v for name, v in keys.items() if lab == name or lab.startswith(name + "_")]
        if len(match) != 1:
            return None
        out.append(match[0])
    return out if sum(out) >= 2 else None


def people_ceiling(rows: list[dict[str, Any]], labels: list[str], draws: int = 200, seed: int = 0) -> dict[str, Any] | None:
    """How well one person agrees with the people: Cohen's kappa of one annotator's vote, drawn at random
    from each row's votes, against the row's label (the majority of all its annotators, that one included),
    averaged over ``draws`` draws, with the 2.5 / 97.5 percentiles of the draws. None without votes."""
    import numpy as np

    from assay.stats import cohen_kappa

    votes = [_votes(r, labels) for r in rows]
    keep = [(v, labels.index(r["label"])) for v, r in zip(votes, rows) if v is not None and r["label"] in labels]
    if len(keep) < 20:
        return None
    rng = np.random.default_rng(seed)
    y = np.array([t for _, t in keep])
    p = np.array([np.array(v, dtype=float) / sum(v) for v, _ in keep])
    kappas = []
    for _ in range(draws):
        pick = (rng.random(len(p))[:, None] < p.cumsum(axis=1)).argmax(axis=1)
        kappas.append(cohen_kappa(y, pick, len(labels)) or 0.0)
    return {"kappa": float(np.mean(kappas)), "ci": [float(np.percentile(kappas, 2.5)), float(np.percentile(kappas, 97.5))],
            "rows": len(keep), "annotators_per_row": float(np.mean([sum(v) for v, _ in keep])),
            "method": f"one annotator's vote (drawn per row) against the majority label, mean of {draws} draws"}


def _training_precision() -> str:
    """What ``train.precision: auto`` trains the encoder at on this machine's CPU."""
    import torch

    from assay.evaluator._device import select_dtype

    dtype = select_dtype("auto", torch.device("cpu"), training=True)
    return "bf16 (the CPU does bf16 natively)" if dtype is not None else "fp32 (no native bf16)"


def _names(csv: str | None) -> set[str]:
    return {x.strip() for x in (csv or "").split(",") if x.strip()}


def _data_keys() -> set[str]:
    from assay.config import DataConfig

    return set(DataConfig.model_fields)


def _pick(m: dict[str, Any]) -> dict[str, Any]:
    if "skipped" in m:
        return {"skipped": m["skipped"]}
    return {k: m.get(k) for k in ("n", "kappa", "f1_macro", "accuracy", "auroc", "ece", "ci", "threshold")}


def _f(x: Any, d: int = 3) -> str:
    return "–" if x is None else f"{x:.{d}f}"


def verdicts(results: list[dict[str, Any]]) -> list[str]:
    """The issue's bars, checked per dataset and regime (from the figures above, nothing else): shipped >=
    max(TF-IDF, SetFit) in every cell and >= that max + 0.05 in at least 7 of 9; every 2k cell trained in
    <= 600 s; peak RSS of train() <= 2 GiB in every cell."""
    lines, cells, plus05, over_time, over_mem = [], 0, 0, [], []
    for r in results:
        if "error" in r:
            continue
        s = r["student"].get("kappa")
        t = (r["baselines"].get("tfidf_logreg") or {}).get("kappa")
        sf = (r.get("setfit") or {}).get("kappa")
        peers = [x for x in (t, sf) if x is not None]
        best = max(peers) if peers else None
        cells += 1
        ok = s is not None and best is not None and s >= best
        plus = s is not None and best is not None and s >= best + 0.05
        plus05 += plus
        if r["regime"] == "2k" and r["train_seconds_total"] > 600:
            over_time.append(f"{r['dataset']} ({r['train_seconds_total']:.0f} s)")
        if (r.get("peak_rss_mib") or 0) > 2048:
            over_mem.append(f"{r['dataset']}/{r['regime']} ({r['peak_rss_mib']:.0f} MiB)")
        people = r.get("people") or {}
        lines.append(f"- {r['dataset']} / {r['regime']}: shipped {_f(s)} vs max(TF-IDF {_f(t)}, SetFit {_f(sf)}) "
                     f"{_f(best)}: {'>=' if ok else '<'}" + ("; +0.05 met" if plus else "; +0.05 not met")
                     + (f"; people {_f(people.get('kappa'))}, gap {_f(people['kappa'] - s)}"
                        if people.get("kappa") is not None and s is not None else ""))
    lines.append(f"- shipped >= max(TF-IDF, SetFit) + 0.05 in {plus05} of {cells} cells (bar: 7 of 9)")
    lines.append("- 2k cells over 600 s of train(): " + (", ".join(over_time) or "none"))
    lines.append("- cells over 2 GiB peak RSS in train(): " + (", ".join(over_mem) or "none"))
    return lines


def render_table(results: list[dict[str, Any]], args: argparse.Namespace, started: str, finished: str,
                 env: dict[str, Any]) -> str:
    head = ["dataset", "regime", "n_train", "n_eval", "shipped (winner)", "shipped kappa [95% CI]", "TF-IDF+LR kappa",
            "SetFit kappa", "majority kappa", "people (one annotator vs majority)", "shipped F1", "shipped AUROC",
            "shipped ECE", "train() s", "peak RSS MiB", "SetFit s"]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    for r in results:
        if "error" in r:
            lines.append(f"| {r['dataset']} | {r.get('regime')} | error: {r['error']} |" + " |" * (len(head) - 3))
            continue
        s, b, sf = r["student"], r["baselines"], r.get("setfit") or {}
        ci = (s.get("ci") or {}).get("kappa")
        sel = r.get("selection") or {}
        lines.append("| " + " | ".join([
            r["dataset"], r["regime"], str(r["n_train"]), str(r["n_eval"]),
            f"{(r.get('evaluator') or {}).get('family', '?')}: {sel.get('winner', '–')}",
            f"{_f(s.get('kappa'))}" + (f" [{_f(ci[0], 2)}, {_f(ci[1], 2)}]" if ci else ""),
            _f((b.get("tfidf_logreg") or {}).get("kappa")),
            _f(sf.get("kappa")) if "skipped" not in sf else f"skipped ({sf['skipped'][:60]})",
            _f((b.get("majority") or {}).get("kappa")),
            (f"{_f(r['people']['kappa'])} (gap {_f(r['people']['kappa'] - s['kappa'])})"
             if r.get("people") and s.get("kappa") is not None else "–"),
            _f(s.get("f1_macro")), _f(s.get("auroc")), _f(s.get("ece")),
            f"{r['train_seconds_total']:.0f}", _f(r.get("peak_rss_mib"), 0), _f(sf.get("fit_seconds"), 0),
        ]) + " |")
    cand_lines = []
    for r in results:
        sel = r.get("selection") or {}
        if sel:
            cs = ", ".join(f"{c['name']} {_f(c.get('cv_kappa'))}"
                           + (f" (validation {_f(c.get('validation_kappa'))})" if c.get("validation_kappa") is not None
                              else "") for c in sel.get("candidates", []))
            cand_lines.append(f"- {r['dataset']} / {r['regime']}: CV kappa {cs} -> {sel.get('winner')} "
                              f"({sel.get('folds')} folds)")
    machine = next((r["machine"] for r in results if r.get("machine")), None) or _machine()
    out = [f"# assay evaluator benchmark{' (quick smoke run)' if args.quick else ''}", "",
           f"Run {started} to {finished}; assay {_assay_version()}.", "", *lines, "",
           "Shipped: `assay.train.train` with `train.candidates: [" + args.candidates + "]`: model selection by "
           f"{args.cv_folds}-fold cross-validation (stratified, grouped) on the training rows only, the winner refit on "
           "all of them and calibrated on its out-of-fold scores; figures on the held-out rows"
           + ("" if "encoder" in args.candidates else
              f" (the config default also has the `encoder` candidate (LoRA fine-tune of MiniLM): it runs here on "
              f"{', '.join(sorted(_names(args.encoder_datasets))) or 'no dataset'}, the short-text datasets; on the "
              "long-context ones (4 context windows of 256 tokens per row, tool schemas, trajectories) its CPU "
              "fine-tune does not fit this benchmark's time budget)") + ". TF-IDF+LR and "
           "majority: the report's baselines, fitted on the same training rows in the same process (threshold 0.5). "
           f"SetFit: the `setfit` package, same MiniLM body, {args.setfit_steps} contrastive steps (batch 16, "
           f"num_iterations 20), max_length {args.setfit_max_length}, logistic-regression head (balanced class weights), threshold 0.5; "
           "trained on the same rows, scored on the same held-out rows.", "",
           "## The issue's bars", "", *verdicts(results), "",
           "## Candidates (cross-validated kappa on the training rows)", "", *cand_lines, "",
           "## Machine", "", *[f"- {k}: {v}" for k, v in machine.items()],
           *[f"- {k}: {v}" for k, v in env.items()], "",
           "## Settings", "",
           f"- regimes: seeds = ~{args.n_seeds} seed rows of a labeled test set of ~{args.n_seeds + args.n_eval} "
           f"rows (split by train() itself), nothing else; 2k = the same seeds + {args.n_train} uploaded rows "
           "(fewer when the file has fewer)",
           f"- max_length {args.max_length}; torch threads {args.threads}; seed {args.seed}; bootstrap {args.bootstrap}; "
           f"training precision: the config default, auto ({_training_precision()} on this CPU)",
           "- process: " + ("every cell in one shared process (peak RSS: the whole run's)" if args.shared_process
                            else "each cell in a fresh spawned process (peak RSS: the cell's own train())"),
           f"- threshold objective: {args.threshold_objective or 'the config default'}; contrastive candidate: "
           + (f"{args.contrastive_steps or 'default'} steps per tuning" if "contrastive" in args.candidates
              else "not run"),
           "- command: python benchmarks/bench_evaluators.py " + " ".join(sys.argv[1:]),
           "- test set and uploaded rows: disjoint by group (a seeded hash of the group decides), groups: "
           + ", ".join(f"{d.name} by {d.group_by or 'content'}" for d in DATASETS.values()),
           f"- datasets: {', '.join(sorted({r['dataset'] + ' (' + r.get('file', '') + ')' for r in results}))}",
           "- tau-bench has 200 rows: 100 seeds + 100 held-out, seeds regime only (no rows left for 2k); "
           "PII has 1,500 rows: its 2k regime has the ~900 rows left after the test set", ""]
    return "\n".join(out)


def _machine() -> dict[str, Any]:
    from assay.report import machine_info

    return machine_info()


def _env() -> dict[str, Any]:
    flags = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                fl = line.split(":", 1)[1].split()
                flags = " ".join(f for f in fl if f.startswith(("avx", "amx", "fma", "sse4")))
                break
    except OSError:
        pass
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    return {"cpu_flags": flags, "load_average_at_start": load}


def _assay_version() -> str:
    import assay

    return assay.__version__


def _cell_setup(threads: int) -> None:
    import torch

    from assay.evaluator._linear import EmbedFeatures
    from assay.evaluator._lm_features import LmFeatures

    torch.set_num_threads(threads)
    EmbedFeatures.cache = {}  # each distinct row is embedded once per process
    LmFeatures.cache = {}


def _run_cell(ds: Dataset, regime: str, test: list[dict[str, Any]], uploaded: list[dict[str, Any]],
              args: argparse.Namespace, work: Path, log: Callable[[str], None]) -> dict[str, Any]:
    """One cell, by default in a fresh process of its own (spawned: nothing inherited), so its peak RSS
    is the cell's own and no memo or allocator state of an earlier cell helps or hurts it."""
    if args.shared_process:
        return run_one(ds, regime, test, uploaded, args, work, log)
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=ctx, initializer=_cell_setup, initargs=(args.threads,)) as pool:
        out = pool.submit(run_one, ds, regime, test, uploaded, args, work, _log).result()
    out["process"] = "its own (spawned)"
    return out


def _log(msg: str) -> None:
    print(time.strftime("%H:%M:%S"), msg, file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="smoke run: few rows, few steps")
    p.add_argument("--datasets", default=",".join(DATASETS), help=f"comma-separated, of {', '.join(DATASETS)}")
    p.add_argument("--regimes", default=",".join(REGIMES))
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, help="folder with the shared JSONL files")
    p.add_argument("--candidates", default="tfidf,embed,lm,hybrid", help="train.candidates of the shipped evaluator")
    p.add_argument("--encoder-datasets", default="toxicity,pii",
                   help="datasets where the encoder candidate (in the config default) joins --candidates")
    p.add_argument("--cv-folds", type=int, default=5)
    p.add_argument("--threshold-objective", default=None, help="train.threshold_objective (default: the config's)")
    p.add_argument("--contrastive-steps", type=int, default=None, help="train.contrastive_steps")
    p.add_argument("--max-length", type=int, default=256)
    p.add_argument("--n-seeds", type=int, default=100)
    p.add_argument("--n-eval", type=int, default=500)
    p.add_argument("--n-train", type=int, default=2000)
    p.add_argument("--setfit-steps", type=int, default=60)
    p.add_argument("--setfit-max-length", type=int, default=128)
    p.add_argument("--no-setfit", action="store_true")
    p.add_argument("--budget-minutes", type=float, default=None,
                   help="start no new dataset/regime after this many minutes (the rest are listed as not run)")
    p.add_argument("--bootstrap", type=int, default=1000)
    p.add_argument("--latency-rows", type=int, default=16)
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--keep", type=Path, default=None, help="keep data and artifacts in this folder")
    p.add_argument("--out", type=Path, default=None, help="Markdown output (default results/LATEST.md)")
    p.add_argument("--shared-process", action="store_true",
                   help="run every cell in this process (faster: one embedding memo) instead of one fresh "
                        "process per cell; the peak RSS column is then the whole run's, not the cell's")
    args = p.parse_args(argv)
    if args.quick:
        args.n_eval, args.n_train, args.n_seeds, args.bootstrap = 60, 200, 40, 100
        args.setfit_steps, args.max_length, args.latency_rows = 4, 64, 8
    _cell_setup(args.threads)
    names = args.datasets.split(",")
    unknown = [n for n in names if n not in DATASETS]
    if unknown:
        p.error(f"unknown datasets {unknown}; choose from {list(DATASETS)}")
    if not args.data.exists():
        p.error(f"no data folder at {args.data} (set --data or ASSAY_SHARED_DATA)")
    out_md = args.out or HERE / "results" / ("QUICK.md" if args.quick else "LATEST.md")
    started = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    env = _env()

    def log(msg: str) -> None:
        print(time.strftime("%H:%M:%S"), msg, file=sys.stderr, flush=True)

    results = []
    with tempfile.TemporaryDirectory(prefix="assay-bench-") as tmp:
        work = args.keep or Path(tmp)
        t_start = time.perf_counter()
        samples = {n: sample(DATASETS[n], args.data, args.n_seeds + args.n_eval, args.n_train, args.seed)
                   for n in names}
        for regime in args.regimes.split(","):  # every dataset's seeds regime first: the few-label start
            for n in names:
                ds = DATASETS[n]
                test, uploaded, notes = samples[n]
                if regime == "2k" and not uploaded:
                    log(f"[{n}/{regime}] skipped: no rows left for uploaded training rows")
                    continue
                if args.budget_minutes and time.perf_counter() - t_start > 60 * args.budget_minutes:
                    results.append({"dataset": n, "regime": regime, "metric": ds.metric, "file": ds.file,
                                    "error": f"not run: the {args.budget_minutes}-minute budget was spent"})
                    continue
                try:
                    r = _run_cell(ds, regime, test, uploaded, args, work, log)
                    r["sampling"] = notes
                    results.append(r)
                    log(f"[{n}/{regime}] shipped {_f(r['student'].get('kappa'))} tfidf "
                        f"{_f((r['baselines'].get('tfidf_logreg') or {}).get('kappa'))} setfit "
                        f"{_f((r.get('setfit') or {}).get('kappa'))} ({r['train_seconds_total']:.0f}s)")
                except Exception as exc:  # keep going: one failed dataset should not hide the others
                    import traceback

                    traceback.print_exc()
                    log(f"[{n}/{regime}] failed: {type(exc).__name__}: {exc}")
                    results.append({"dataset": n, "regime": regime, "metric": ds.metric, "file": ds.file,
                                    "error": f"{type(exc).__name__}: {exc}"})
                partial = out_md.with_name(out_md.stem + ".partial.md")  # progress, replaced at the end
                partial.write_text(render_table(results, args, started, "(running)", env) + "\n")
                partial.with_suffix(".json").write_text(json.dumps({"results": results}, default=str) + "\n")
    finished = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    env["load_average_at_end"] = os.getloadavg() if hasattr(os, "getloadavg") else None
    text = render_table(results, args, started, finished, env)
    print(text)
    out_md.parent.mkdir(parents=True, exist_ok=True)
    out_md.write_text(text + "\n")
    out_md.with_suffix(".json").write_text(json.dumps(
        {"started": started, "finished": finished, "args": {k: str(v) for k, v in vars(args).items()},
         "python": platform.python_version(), "env": env, "results": results}, indent=1, default=str) + "\n")
    out_md.with_name(out_md.stem + ".partial.md").unlink(missing_ok=True)
    out_md.with_name(out_md.stem + ".partial.json").unlink(missing_ok=True)
    log(f"wrote {out_md} and {out_md.with_suffix('.json')}")
    return 1 if any("error" in r for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
