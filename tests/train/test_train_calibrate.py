"""Calibration: temperature, threshold, and the label-shift correction towards the seeds' label mix."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from assay.evaluator import Calibration
from assay.metrics import metric_from_dict
from assay.train import calibrate, choose_threshold, fit_temperature, smoothed_prior


def _Fixed(metric, logits):
    """The public MockEvaluator, its probabilities given per row id as softmax(logits): its raw scores
    are then those logits (up to a per-row constant that calibration ignores)."""
    from assay.testing import MockEvaluator

    def proba(row):
        z = np.exp(logits[row["id"]] - np.max(logits[row["id"]]))
        return list(z / z.sum())

    return MockEvaluator(metric, proba=proba, threshold=None)


def _rows(rng, n_per_label, labels, sep=1.5):
    rows, logits = [], {}
    for k, lab in enumerate(labels):
        for i in range(n_per_label[lab]):
            z = rng.normal(0, 1, len(labels))
            z[k] += sep
            rid = f"{lab}{i}"
            rows.append({"id": rid, "label": lab})
            logits[rid] = z
    return rows, logits


def test_temperature_recovers_a_known_scale():
    rng = np.random.default_rng(0)
    true = rng.normal(0, 2, (4000, 3))
    y = np.array([rng.choice(3, p=np.exp(z) / np.exp(z).sum()) for z in true])
    fit = fit_temperature(true * 3.0, y)  # over-confident by 3x
    assert fit["temperature"] == pytest.approx(3.0, rel=0.1) and fit["nll_after"] < fit["nll_before"]


def test_label_shift_moves_probabilities_to_the_target_mix_and_helps_accuracy_there():
    labels = ["a", "b", "c"]
    metric = metric_from_dict({"name": "m", "output": "categorical", "labels": labels, "prompt": "{input}"})
    rng = np.random.default_rng(1)
    cal_rows, cal_logits = _rows(rng, {"a": 300, "b": 300, "c": 300}, labels)  # balanced, like the training rows
    target = {"a": 0.1, "b": 0.45, "c": 0.45}
    test_rows, test_logits = _rows(rng, {"a": 100, "b": 450, "c": 450}, labels)  # the mix to be scored
    ev = _Fixed(metric, {**cal_logits, **test_logits})
    out = calibrate(ev, cal_rows, target_prior=target)
    assert out.prior["target"] == pytest.approx(target) and out.label_shift == out.prior["label_shift"]
    assert ev.label_shift is None  # calibrate() returns the calibration; the evaluator is left as it was
    ev.calibration = out
    assert ev.label_shift[0] < 0 < ev.label_shift[1]  # the rare label is pulled down
    z = ev.predict_logits(test_rows)
    y = np.array([labels.index(r["label"]) for r in test_rows])
    shifted = ev.calibrate(z)
    ev.calibration = replace(out, label_shift=None)
    plain = ev.calibrate(z)
    assert shifted.mean(0)[0] < plain.mean(0)[0]
    assert abs(shifted.mean(0)[0] - 0.1) < abs(plain.mean(0)[0] - 0.1)
    assert (shifted.argmax(1) == y).mean() > (plain.argmax(1) == y).mean()


def test_no_target_prior_means_no_shift():
    metric = metric_from_dict({"name": "m", "prompt": "{input}"})
    rng = np.random.default_rng(2)
    rows, logits = _rows(rng, {"true": 50, "false": 50}, ["true", "false"])
    ev = _Fixed(metric, logits)
    out = calibrate(ev, rows)
    assert out.label_shift is None and out.prior is None and "prior" not in out.to_dict() and 0 < out.threshold < 1


def test_calibrate_returns_a_calibration_and_leaves_the_evaluator_alone():
    """calibrate() fits and returns a Calibration; the evaluator's own calibration is untouched until
    it is set whole, after which the evaluator decides with it (one stored threshold and temperature)."""
    metric = metric_from_dict({"name": "m", "prompt": "{input}"})
    rows, logits = _rows(np.random.default_rng(3), {"true": 60, "false": 60}, ["true", "false"], sep=1.0)
    ev = _Fixed(metric, logits)
    before = ev.calibration
    out = calibrate(ev, rows, objective="kappa", target_prior={"true": 0.2, "false": 0.8})
    assert isinstance(out, Calibration) and ev.calibration is before
    assert ev.threshold is None and ev.temperature == 1.0 and ev.label_shift is None  # as it was
    assert out.method == "slice" and out.n_rows == 120 and out.objective == "kappa" and out.routing is not None
    assert out.temperature != 1.0 and 0 < out.threshold < 1 and out.label_shift["true"] < 0
    ev.calibration = out
    assert ev.calibration is out and ev.threshold == out.threshold and ev.temperature == out.temperature
    assert ev.calibration.to_dict()["threshold"] == out.threshold
    # too few rows: not calibrated, still a Calibration, still no mutation
    other = _Fixed(metric, logits)
    few = calibrate(other, rows[:5])
    assert few.method == "none" and few.threshold == 0.5 and few.temperature == 1.0 and other.threshold is None


def test_weighted_threshold_follows_the_weights():
    p = np.array([0.2, 0.4, 0.6, 0.8])
    pos = np.array([False, True, False, True])
    plain = choose_threshold(p, pos, "f1")["threshold"]
    heavy_pos = choose_threshold(p, pos, "f1", weights=[1, 10, 1, 1])["threshold"]
    assert heavy_pos < 0.4 < plain  # many more positives like the one at p = 0.4: the threshold drops below it


def test_smoothed_prior_keeps_every_label():
    prior = smoothed_prior(["a"] * 8, ["a", "b"])
    assert prior == {"a": 0.9, "b": 0.1}
