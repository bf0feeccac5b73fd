"""TEST-ONLY stand-ins for ``assay.train.train`` and ``assay.evaluator.Evaluator``.

Registry, worker, API and UI tests use them to run the whole run lifecycle in seconds: the
fake "training" is a word-count naive Bayes model over the rows the metric reads, written as
``evaluator.json`` and scored by :class:`FakeEvaluator`. Its report comes from the real
``assay.report`` functions. Never used outside tests: nothing in assay imports this module.

``python -m assay.registry._fake --db URL --artifacts ROOT [--step-seconds S --steps N]``
runs a worker with the fake training (the kill-the-worker test starts it as a subprocess).
"""

from __future__ import annotations

import json
import math
import re
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from ..config import Config, load_config
from ..data import load_rows, split_test_set
from ..evaluator._score import Score, scores_from_probs
from ..metrics import MetricSpec, field_text, metric_from_dict

KIND = "assay-test-fake"
_WORD = re.compile(r"[a-z0-9']+")


def _words(metric: MetricSpec, row: Mapping[str, Any]) -> list[str]:
    return _WORD.findall(" ".join(field_text(row.get(f)) for f in metric.fields).lower())


class FakeEvaluator:
    """Naive Bayes over words; the Evaluator contract (metric, labels, threshold, info, score)."""

    calls = 0  # how many times score/predict_proba ran (tests check the server batches)

    def __init__(self, info: dict[str, Any]):
        self.info = info
        self.metric = metric_from_dict(info["metric"])
        self.labels = tuple(self.metric.labels)
        self.threshold = info.get("threshold") if self.metric.is_binary else None
        self.batch_sizes: list[int] = []

    @classmethod
    def from_pretrained(cls, path: str | Path) -> "FakeEvaluator":
        info = json.loads((Path(path) / "evaluator.json").read_text())
        if info.get("kind") != KIND:
            raise ValueError(f"{path} is not a fake test artifact")
        return cls(info)

    def predict_proba(self, rows: Sequence[Mapping[str, Any]], batch_size: int | None = None) -> np.ndarray:
        FakeEvaluator.calls += 1
        self.batch_sizes.append(len(rows))
        prior, like, unk = self.info["log_prior"], self.info["log_like"], self.info["log_unknown"]
        out = np.zeros((len(rows), len(self.labels)))
        for i, r in enumerate(rows):
            logits = np.array([prior[lab] + sum(like[lab].get(w, unk[lab]) for w in _words(self.metric, r))
                               for lab in self.labels])
            z = np.exp(logits - logits.max())
            out[i] = z / z.sum()
        return out

    def score(self, rows: Sequence[Mapping[str, Any]], batch_size: int | None = None) -> list[Score]:
        positive = self.metric.positive if self.metric.is_binary else None
        return scores_from_probs(self.predict_proba(rows), self.labels, positive,
                                 self.threshold if self.threshold is not None else 0.5,
                                 tokens=[len(_words(self.metric, r)) for r in rows])

    def save_pretrained(self, path: str | Path) -> None:
        Path(path).mkdir(parents=True, exist_ok=True)
        (Path(path) / "evaluator.json").write_text(json.dumps(self.info))


def fit(metric: MetricSpec, rows: Sequence[Mapping[str, Any]], vocab: int = 3000) -> FakeEvaluator:
    counts = {lab: Counter() for lab in metric.labels}
    n = Counter()
    for r in rows:
        counts[r["label"]].update(_words(metric, r))
        n[r["label"]] += 1
    common = {w for w, _ in sum(counts.values(), Counter()).most_common(vocab)}
    total = sum(n.values())
    info: dict[str, Any] = {"kind": KIND, "metric": metric.to_dict(), "threshold": 0.5, "log_prior": {},
                            "log_like": {}, "log_unknown": {}, "rows": total}
    for lab in metric.labels:
        denom = sum(counts[lab][w] for w in common) + len(common) + 1
        info["log_prior"][lab] = math.log((n[lab] + 1) / (total + len(metric.labels)))
        info["log_like"][lab] = {w: math.log((counts[lab][w] + 1) / denom) for w in common}
        info["log_unknown"][lab] = math.log(1 / denom)
    return FakeEvaluator(info)


@dataclass
class FakeResult:
    artifact_dir: Path
    report: dict[str, Any]
    evaluator: FakeEvaluator


def fake_train(config: Config | str | Path, *, progress: bool = True,
               on_status: Callable[[str, float | None, str], None] | None = None,
               should_stop: Callable[[], bool] | None = None, steps: int = 4, step_seconds: float = 0.0,
               fail_at_step: int | None = None) -> FakeResult:
    """Same signature and stages as ``assay.train.train``; writes a small fake artifact."""
    from ._worker import Cancelled

    cfg = config if isinstance(config, Config) else load_config(config)
    status = on_status or (lambda *a: None)
    stop = should_stop or (lambda: False)
    metric = cfg.metric_spec()
    status("preparing", 0.0, "reading the test set")
    test = load_rows(cfg.path(cfg.data.test_set), metric, limit=cfg.data.limit)
    split = split_test_set(test.rows, metric.shape, seed_fraction=cfg.data.seed_fraction,
                           split_seed=cfg.data.split_seed, group_by=cfg.data.group_by)
    train_rows = list(split.seeds)
    if cfg.data.train_set:
        train_rows += load_rows(cfg.path(cfg.data.train_set), metric, limit=cfg.data.limit).rows
    elif cfg.generate:
        status("generating", 0.0, "generating training rows (fake: reusing the seeds)")
    out = cfg.output_dir()
    out.mkdir(parents=True, exist_ok=True)
    (out / "partial.txt").write_text("training started\n")
    for step in range(steps):
        if stop():
            raise Cancelled(f"cancelled at step {step}")
        if fail_at_step is not None and step == fail_at_step:
            raise RuntimeError(f"fake training failed at step {step}")
        status("training", step / steps, f"step {step + 1}/{steps}")
        time.sleep(step_seconds)
    ev = fit(metric, train_rows)
    status("evaluating", 0.0, f"scoring {len(split.held_out)} held-out rows")
    from ..report import evaluate, write_report

    report = evaluate(ev, split.held_out, train_rows=train_rows, config=cfg.report, speed=False)
    status("saving", 0.0, "writing the artifact")
    ev.save_pretrained(out)
    write_report(report, out)
    (out / "README.md").write_text(f"# {metric.name} (test-only fake evaluator)\n")
    status("saving", 1.0, "saved")
    return FakeResult(out, report, ev)


def main(argv: Sequence[str] | None = None) -> None:
    import argparse
    import functools

    from ._service import Registry
    from ._worker import LocalExecutor, Worker

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--db", required=True)
    p.add_argument("--artifacts", required=True)
    p.add_argument("--steps", type=int, default=4)
    p.add_argument("--step-seconds", type=float, default=0.0)
    p.add_argument("--heartbeat", type=float, default=0.5)
    p.add_argument("--stale-after", type=float, default=30.0)
    p.add_argument("--once", action="store_true")
    a = p.parse_args(argv)
    reg = Registry(a.db, a.artifacts, load_evaluator=FakeEvaluator.from_pretrained)
    train = functools.partial(fake_train, steps=a.steps, step_seconds=a.step_seconds)
    worker = Worker(reg, LocalExecutor(train), heartbeat_interval=a.heartbeat, stale_after=a.stale_after)
    print(f"worker {worker.worker_id} ready", flush=True)
    worker.run(once=a.once)


if __name__ == "__main__":
    main()
