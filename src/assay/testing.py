"""Test support: :class:`MockEvaluator`, the one evaluator double, and a mock training for the registry.

:class:`MockEvaluator` implements :class:`assay.evaluator.EvaluatorLike` (``metric``, ``labels``,
``threshold``, ``info``, ``calibration``, ``predict_proba``, ``score``) without a model, and decides
labels with the one rule, :func:`assay.evaluator.decide`, so tests of the registry, server, monitor
and reports that run on it stand for the real :class:`assay.evaluator.Evaluator`. It is exported
from this module only. Its probabilities are deterministic; per row, the first that applies:

1. ``scores``: a fixed value for the row's ``id``;
2. ``proba``: a function of the row;
3. ``keywords``: the value of the first keyword found in the row's fields (lower-cased), else ``default``;
4. a word-count (naive Bayes) model fitted with :meth:`MockEvaluator.fit` (saved and loaded with
   ``save_pretrained`` / ``from_pretrained`` like a real artifact);
5. otherwise a hash of the rendered prompt (``assay.metrics.render``), uniform on [0, 1].

A value is either one number (binary metrics: P(positive); categorical: P(first label), the rest
shared evenly) or one probability per label, ordered as ``metric.labels``. ``calls`` counts
``predict_proba`` calls (``score`` makes one), ``batch_sizes`` their row counts and ``prompts`` the
prompts the hash rule rendered.

:func:`mock_train` has the signature and stages of :func:`assay.train.train` and writes a small
artifact scored by :class:`MockEvaluator` (its report comes from the real ``assay.report``), so
registry, worker, API and UI tests run the whole run lifecycle in seconds. Load such artifacts in a
registry with ``Registry(..., load_evaluator=MockEvaluator.from_pretrained)``.

``python -m assay.testing --db URL --artifacts ROOT [--steps N --step-seconds S]`` runs a worker
with the mock training (tests start it as a subprocess, or pass it to ``assay serve --worker-cmd``).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence, Union

import numpy as np

from .config import Config, load_config
from .data import load_rows
from .evaluator import CARD_FILE, INFO_FILE, Calibration, Score, decide, scores_from_probs
from .evaluator._artifact import CALIBRATION_KEYS
from .evaluator._contract import calibrated_probs
from .metrics import MetricSpec, field_text, load_metric, metric_from_dict, render

__all__ = ["KIND", "MockEvaluator", "mock_train", "main"]

KIND = "assay-mock"  # evaluator.json "kind" of the artifacts MockEvaluator saves
_WORD = re.compile(r"[a-z0-9']+")

Value = Union[float, Sequence[float]]  # P(positive) / P(first label), or one probability per label


def _words(metric: MetricSpec, row: Mapping[str, Any]) -> list[str]:
    return _WORD.findall(" ".join(field_text(row.get(f)) for f in metric.fields).lower())


def _as_metric(metric: str | Path | MetricSpec | Mapping[str, Any]) -> MetricSpec:
    if isinstance(metric, MetricSpec):
        return metric
    if isinstance(metric, Mapping):
        return metric_from_dict(dict(metric))
    return load_metric(metric)


class MockEvaluator:
    """A deterministic evaluator without a model; see the module docstring for its rules.

    ``metric``: a preset name, a metric file, a ``MetricSpec`` or its dict. ``threshold``: on
    P(positive) for binary metrics (``None``: the most probable label; categorical metrics always).
    ``info`` is merged over ``{"kind", "family": "mock", "metric"}`` (its calibration keys aside);
    ``calibration`` (a :class:`~assay.evaluator.Calibration` or its dict) is the record it keeps, at
    ``threshold``: as the real Evaluator, ``ev.calibration`` is the one home of temperature, label shift,
    threshold and operator (set a new one whole, e.g. ``ev.calibration = assay.train.calibrate(ev, rows)``).
    """

    def __init__(self, metric: str | Path | MetricSpec | Mapping[str, Any] = "pii", *,
                 threshold: float | None = 0.5, scores: Mapping[str, Value] | None = None,
                 proba: Callable[[Mapping[str, Any]], Value] | None = None,
                 keywords: Mapping[str, Value] | None = None, default: Value | None = None,
                 info: Mapping[str, Any] | None = None, calibration: Calibration | Mapping[str, Any] | None = None):
        self.metric = _as_metric(metric)
        self.labels: tuple[str, ...] = tuple(self.metric.labels)
        self.info: dict[str, Any] = {k: v for k, v in {"kind": KIND, "family": "mock", "metric": self.metric.to_dict(),
                                                        **(info or {})}.items() if k not in CALIBRATION_KEYS}
        record = calibration if isinstance(calibration, Calibration) else Calibration.from_dict(calibration)
        self._record_calibration = calibration is not None
        self._calibration = replace(record, threshold=threshold if self.metric.is_binary else None)
        self.scores = dict(scores or {})
        self.proba = proba
        self.keywords = {k.lower(): v for k, v in (keywords or {}).items()}
        self.default = default
        self.calls = 0
        self.batch_sizes: list[int] = []
        self.prompts: list[str] = []

    # --- the word-count model, saved like an artifact ------------------------------------------
    @classmethod
    def fit(cls, metric: str | MetricSpec | Mapping[str, Any], rows: Sequence[Mapping[str, Any]],
            vocab: int = 3000, threshold: float = 0.5) -> "MockEvaluator":
        """A naive Bayes model over the words of the fields the metric reads, from labeled ``rows``."""
        metric = _as_metric(metric)
        counts = {lab: Counter() for lab in metric.labels}
        n: Counter = Counter()
        for r in rows:
            counts[r["label"]].update(_words(metric, r))
            n[r["label"]] += 1
        common = {w for w, _ in sum(counts.values(), Counter()).most_common(vocab)}
        total = sum(n.values())
        model: dict[str, Any] = {"log_prior": {}, "log_like": {}, "log_unknown": {}}
        for lab in metric.labels:
            denom = sum(counts[lab][w] for w in common) + len(common) + 1
            model["log_prior"][lab] = math.log((n[lab] + 1) / (total + len(metric.labels)))
            model["log_like"][lab] = {w: math.log((counts[lab][w] + 1) / denom) for w in common}
            model["log_unknown"][lab] = math.log(1 / denom)
        return cls(metric, threshold=threshold, info={"threshold": threshold, "rows": total, "word_counts": model})

    @classmethod
    def from_pretrained(cls, path: str | Path) -> "MockEvaluator":
        """Load an ``evaluator.json`` written by :meth:`save_pretrained`."""
        info = json.loads((Path(path) / INFO_FILE).read_text())
        if info.get("kind") != KIND:
            raise ValueError(f"{path} is not a MockEvaluator artifact (kind {info.get('kind')!r})")
        extra = info.get("mock") or {}
        return cls(info["metric"], threshold=info.get("threshold"), scores=extra.get("scores"),
                   keywords=extra.get("keywords"), default=extra.get("default"), info=info,
                   calibration=info.get("calibration"))

    def save_pretrained(self, path: str | Path) -> Path:
        """Write ``evaluator.json`` (the rules, not a ``proba`` function)."""
        if self.proba is not None:
            raise ValueError("a MockEvaluator with a proba function cannot be saved")
        folder = Path(path)
        folder.mkdir(parents=True, exist_ok=True)
        info = {**self.info, "threshold": self.threshold}
        if self._record_calibration:
            info["calibration"] = self._calibration.to_dict()
        if self.scores or self.keywords or self.default is not None:
            info["mock"] = {"scores": self.scores, "keywords": self.keywords, "default": self.default}
        (folder / INFO_FILE).write_text(json.dumps(info))
        return folder

    # --- the contract ---------------------------------------------------------------------------
    @property
    def calibration(self) -> Calibration:
        """The one home of temperature, label shift, threshold and operator (and the record kept)."""
        return self._calibration

    @calibration.setter
    def calibration(self, cal: Calibration) -> None:
        self._calibration = cal if self.metric.is_binary else replace(cal, threshold=None)
        self._record_calibration = True

    @property
    def threshold(self) -> float | None:
        return self._calibration.threshold

    @property
    def temperature(self) -> float:
        return float(self._calibration.temperature)

    @property
    def label_shift(self) -> np.ndarray | None:
        """Per label, added after temperature scaling (None: no shift), as the real Evaluator's."""
        shift = self._calibration.label_shift
        return np.array([float(shift[lab]) for lab in self.labels]) if shift else None

    def _value(self, row: Mapping[str, Any]) -> Value:
        if row.get("id") in self.scores:
            return self.scores[row["id"]]
        if self.proba is not None:
            return self.proba(row)
        if self.keywords:
            text = " ".join(field_text(row.get(f)) for f in self.metric.fields).lower()
            hit = next((v for k, v in self.keywords.items() if k in text), None)
            if hit is not None:
                return hit
            if self.default is not None:
                return self.default
        model = self.info.get("word_counts")
        if model:
            logits = np.array([model["log_prior"][lab] + sum(model["log_like"][lab].get(w, model["log_unknown"][lab])
                                                             for w in _words(self.metric, row))
                               for lab in self.labels])
            z = np.exp(logits - logits.max())
            return list(z / z.sum())
        text = render(self.metric, row)
        self.prompts.append(text)
        return int(hashlib.sha256(text.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF

    def _vector(self, value: Value) -> list[float]:
        if not isinstance(value, (int, float, np.floating)):
            v = [float(x) for x in value]
            if len(v) != len(self.labels):
                raise ValueError(f"{len(v)} probabilities for {len(self.labels)} labels {self.labels}")
            return v
        p = float(value)
        if self.metric.is_binary:
            return [p if lab == self.metric.positive else 1 - p for lab in self.labels]
        return [p] + [(1 - p) / (len(self.labels) - 1)] * (len(self.labels) - 1)

    def _raw(self, rows: Sequence[Mapping[str, Any]]) -> np.ndarray:
        self.calls += 1
        self.batch_sizes.append(len(rows))
        return np.asarray([self._vector(self._value(r)) for r in rows], dtype=float).reshape(len(rows),
                                                                                           len(self.labels))

    def predict_logits(self, rows: Sequence[Mapping[str, Any]], batch_size: int | None = None) -> np.ndarray:
        """Log-probabilities of the rule's values [n_rows, n_labels] (the "raw" scores calibration sees)."""
        return np.log(np.clip(self._raw(rows), 1e-12, None))

    def calibrate(self, logits: Any) -> np.ndarray:
        """softmax(logits / temperature + label_shift), as :meth:`assay.evaluator.Evaluator.calibrate`; with
        the defaults (temperature 1, no shift) the rule's probabilities come back unchanged."""
        return calibrated_probs(logits, self.temperature, self.label_shift)

    def predict_proba(self, rows: Sequence[Mapping[str, Any]], batch_size: int | None = None) -> np.ndarray:
        """Calibrated probabilities [n_rows, n_labels], columns ordered as ``labels`` (uncalibrated: the
        rule's values exactly)."""
        if self.temperature == 1.0 and self.label_shift is None:
            return self._raw(rows)
        return self.calibrate(self.predict_logits(rows, batch_size))

    def decide(self, probs: Any) -> list[int]:
        """The label index per row, by :func:`assay.evaluator.decide`."""
        positive = self.metric.positive if self.metric.is_binary else None
        return [decide(p, self.labels, positive, self.threshold, self._calibration.operator) for p in probs]

    def score(self, rows: Sequence[Mapping[str, Any]], batch_size: int | None = None) -> list[Score]:
        """A :class:`~assay.evaluator.Score` per row (``tokens``: the words of the metric's fields)."""
        positive = self.metric.positive if self.metric.is_binary else None
        return scores_from_probs(self.predict_proba(rows, batch_size), self.labels, positive, self.threshold,
                                 tokens=[len(_words(self.metric, r)) for r in rows],
                                 operator=self._calibration.operator)

    def __repr__(self) -> str:
        return f"MockEvaluator(metric={self.metric.name!r}, threshold={self.threshold!r})"


def mock_train(config: Config | str | Path, *, progress: bool = True,
               on_status: Callable[[str, float | None, str], None] | None = None,
               should_stop: Callable[[], bool] | None = None, steps: int = 4, step_seconds: float = 0.0,
               fail_at_step: int | None = None):
    """Same signature and stages as :func:`assay.train.train` (returns its ``TrainResult``); fits
    :meth:`MockEvaluator.fit` on the seeds (+ ``data.train_set``) in ``steps`` sleeps of
    ``step_seconds``, failing at ``fail_at_step`` if given, and writes a small artifact.
    ``data.extra_train_sets`` rows are added to the training rows, never to the held-out rows."""
    from .registry._worker import Cancelled
    from .report import evaluate, write_report
    from .train import TrainResult

    cfg = config if isinstance(config, Config) else load_config(config)
    status = on_status or (lambda *a: None)
    stop = should_stop or (lambda: False)
    metric = cfg.metric_spec()
    status("preparing", 0.0, "reading the test set")
    split = cfg.prepare_test_set(metric).split  # the split assay train makes
    train_rows = list(split.seeds)
    if cfg.data.train_set:
        train_rows += load_rows(cfg.path(cfg.data.train_set), metric, limit=cfg.data.limit).rows
    elif cfg.generate:
        status("generating", 0.0, "generating training rows (mock: reusing the seeds)")
    for extra in cfg.data.extra_train_sets:  # e.g. reviewed verdicts (assay retrain): training rows only
        train_rows += load_rows(cfg.path(extra), metric).rows
    out = cfg.output_dir()
    out.mkdir(parents=True, exist_ok=True)
    (out / "partial.txt").write_text("training started\n")
    for step in range(steps):
        if stop():
            raise Cancelled(f"cancelled at step {step}")
        if fail_at_step is not None and step == fail_at_step:
            raise RuntimeError(f"mock training failed at step {step}")
        status("training", step / steps, f"step {step + 1}/{steps}")
        time.sleep(step_seconds)
    ev = MockEvaluator.fit(metric, train_rows)
    status("evaluating", 0.0, f"scoring {len(split.held_out)} held-out rows")
    report = evaluate(ev, split.held_out, train_rows=train_rows, config=cfg.report, speed=False)
    status("saving", 0.0, "writing the artifact")
    ev.save_pretrained(out)
    write_report(report, out)
    (out / CARD_FILE).write_text(f"# {metric.name} (assay.testing mock evaluator)\n")
    status("saving", 1.0, "saved")
    return TrainResult(out, report, ev)


def main(argv: Sequence[str] | None = None) -> None:
    """A registry worker whose training is :func:`mock_train` and whose evaluators are mocks."""
    import argparse
    import functools

    from .registry import LocalExecutor, Registry, Worker

    p = argparse.ArgumentParser(description="A registry worker with the mock training (tests only).")
    p.add_argument("--db", required=True)
    p.add_argument("--artifacts", required=True)
    p.add_argument("--steps", type=int, default=4)
    p.add_argument("--step-seconds", type=float, default=0.0)
    p.add_argument("--heartbeat", type=float, default=0.5)
    p.add_argument("--stale-after", type=float, default=30.0)
    p.add_argument("--once", action="store_true")
    a = p.parse_args(argv)
    reg = Registry(a.db, a.artifacts, load_evaluator=MockEvaluator.from_pretrained)
    train = functools.partial(mock_train, steps=a.steps, step_seconds=a.step_seconds)
    worker = Worker(reg, LocalExecutor(train), heartbeat_interval=a.heartbeat, stale_after=a.stale_after)
    print(f"worker {worker.worker_id} ready", flush=True)
    worker.run(once=a.once)


if __name__ == "__main__":
    main()
