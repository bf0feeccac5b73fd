"""How the logistic regressions' C is picked, measured over many seed / held-out splits.

``assay.train`` picks C of the ``tfidf`` and ``embed`` candidates on the cross-validation folds of
the training rows. With ~100 labeled rows the CV kappa of each grid point is noisy. This benchmark
compares, on the seeds regime of ``bench_evaluators`` (the ~100 seed rows of each test set are the
training rows, the other ~500 the held-out rows; ``split_seed`` 0..N-1 gives N different splits):

- ``argmax``: the C with the best CV kappa (the rule before 0173e4c);
- ``one_se``: :func:`assay.train._select.pick_c`, the smallest C within one standard error of the best
  (the shipped rule);
- ``tfidf_baseline``: the report's TF-IDF + LR baseline (its own 3-fold C search, threshold 0.5).

Both rules are calibrated the shipped way (temperature, label shift, threshold on the out-of-fold
scores) and scored on the same held-out rows. ``embed`` here is the plain block (no grounding
features), to keep the run short. Kappas do not depend on load (fixed seeds, one torch thread).

    python benchmarks/bench_c_rule.py --splits 8   # -> benchmarks/results/c_rule.md / .json
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


class _Scored:
    """The calibration surface of an Evaluator, over precomputed logits."""

    def __init__(self, metric):
        self.metric, self.labels = metric, list(metric.labels)
        self.temperature, self.label_shift, self.threshold = 1.0, None, None

    def calibrate(self, logits):
        from assay.evaluator._contract import calibrated_probs

        return calibrated_probs(logits, self.temperature, self.label_shift)

    def decide(self, probs):
        from assay.evaluator import decide

        pos = self.metric.positive if self.metric.is_binary else None
        return np.array([decide(p, self.labels, pos, self.threshold) for p in probs])


def _held_kappa(metric, oof, held_logits, y, yh, prior) -> float:
    from assay.stats import cohen_kappa
    from assay.train._calibrate import calibrate

    s = _Scored(metric)
    calibrate(s, [{"label": s.labels[i]} for i in y], "f1", None, 32, prior, logits=oof)
    return float(cohen_kappa(yh, s.decide(s.calibrate(held_logits)), len(s.labels)) or 0.0)


def run(name: str, splits: int, data: Path, work: Path) -> list[dict]:
    from assay.config import config_from_dict
    from assay.data import write_rows
    from assay.evaluator._base_models import resolve_base
    from assay.evaluator._linear import EmbedFeatures, LinearHead, TfidfFeatures
    from assay.metrics import load_metric
    from assay.report._baselines import run_baselines
    from assay.train import _select as S
    from assay.train._pipeline import _target_prior

    ds = bench.DATASETS[name]
    metric = load_metric(ds.metric)
    labels, k = list(metric.labels), len(metric.labels)
    test, _, _ = bench.sample(ds, data, 600, 0, 0)
    d = work / name
    d.mkdir(parents=True, exist_ok=True)
    write_rows(test, d / "test.jsonl")
    base = resolve_base("minilm")
    out = []
    for split in range(splits):
        cfg = config_from_dict({"metric": ds.metric, "output": "artifact", "data": {
            "test_set": "test.jsonl", "seed_fraction": round(min(0.5, 100 / len(test)), 4), "split_seed": split,
            "train_on_seeds": True, **({"group_by": ds.group_by} if ds.group_by else {})}}, base_dir=d)
        prep = cfg.prepare_test_set(metric)
        seeds, held = prep.split.seeds, prep.split.held_out
        prior = _target_prior(cfg, metric, seeds)
        y = np.array([labels.index(r["label"]) for r in seeds])
        yh = np.array([labels.index(r["label"]) for r in held])
        folds, _ = S.make_folds(seeds, y, cfg.train.cv_folds, cfg.train.seed, prep.split.group_by)
        row = {"dataset": name, "split_seed": split, "seeds": len(seeds), "held_out": len(held),
               "tfidf_baseline": run_baselines(metric, seeds, held, bootstrap=0)["tfidf_logreg"]["kappa"]}
        for kind in ("tfidf", "embed"):
            block = TfidfFeatures(metric) if kind == "tfidf" else EmbedFeatures(metric, base, 256, 32)
            x, xh = block.fit(seeds), block.transform(held)
            grid = S.C_GRID[kind] if kind == "embed" or x.nnz <= S.LARGE_NNZ else S.C_GRID_LARGE
            oof = {c: S._oof(x, y, folds, c, k, cfg.train.seed) for c in grid}
            points = {c: (S.selection_score(y, S.decide(oof[c]), k), S._fold_kappas(y, oof[c], folds, k)) for c in grid}
            chosen = {"argmax": max(grid, key=lambda c: (points[c][0], -c)), "one_se": S.pick_c(points)}
            for rule, c in chosen.items():
                head = LinearHead.from_sklearn(S._lr(c, cfg.train.seed).fit(x, y), k)
                row[f"{kind}_{rule}"] = round(_held_kappa(metric, oof[c], head.logits(xh), y, yh, prior), 4)
                row[f"{kind}_{rule}_C"] = c
        out.append(row)
        print(json.dumps(row), flush=True)
    return out


def render(rows: list[dict], args: argparse.Namespace, started: str, seconds: float, env: dict) -> str:
    cols = ("tfidf_argmax", "tfidf_one_se", "tfidf_baseline", "embed_argmax", "embed_one_se")
    out = ["# How C is picked: argmax vs one standard error, over seed / held-out splits", "",
           f"Run {started}, {seconds:.0f} s; `python benchmarks/bench_c_rule.py --splits {args.splits}"
           f" --datasets {args.datasets}`.", "",
           "Mean held-out kappa over the splits (the number of splits in which `one_se` >= `argmax` in brackets).", "",
           "| dataset | splits | " + " | ".join(cols) + " |", "|---|---|" + "---|" * len(cols)]
    for name in dict.fromkeys(r["dataset"] for r in rows):
        rs = [r for r in rows if r["dataset"] == name]
        cells = []
        for c in cols:
            cell = f"{np.mean([r[c] for r in rs]):.3f}"
            if c.endswith("one_se"):
                fam = c.split("_")[0]
                cell += f" ({sum(r[c] >= r[f'{fam}_argmax'] for r in rs)}/{len(rs)})"
            cells.append(cell)
        out.append(f"| {name} | {len(rs)} | " + " | ".join(cells) + " |")
    out += ["", "## Machine", ""] + [f"- {k}: {v}" for k, v in {**bench._machine(), **env,
                                                                "load_average_at_end": os.getloadavg()}.items()]
    out += ["", "Every split's figures and chosen C: the .json file next to this one.", ""]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--datasets", default="taubench,toxicity,pii,faithfulness")
    p.add_argument("--splits", type=int, default=8)
    p.add_argument("--data", type=Path, default=bench.DEFAULT_DATA)
    p.add_argument("--out", type=Path, default=HERE / "results" / "c_rule.md")
    args = p.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    from assay.evaluator._linear import EmbedFeatures

    EmbedFeatures.cache = {}  # every split embeds the same test-set rows
    started, t0, env = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()), time.perf_counter(), bench._env()
    rows: list[dict] = []
    with tempfile.TemporaryDirectory() as work:
        for name in args.datasets.split(","):
            rows += run(name, args.splits, args.data, Path(work))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(render(rows, args, started, time.perf_counter() - t0, env))
    args.out.with_suffix(".json").write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()},
                                                        "rows": rows}, indent=1))
    print(args.out.read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
