"""Risk-controlled routing (issue 12): the region of scores sent to people is certified on the calibration
rows so that auto-accepted verdicts disagree with people at most the target, with the stated confidence;
the monitor routes by it (around the calibrated threshold, wherever that is); the report shows it."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import numpy as np
import pytest

from assay.evaluator._risk import RiskControl, control_risk, realised

LABELS = ["false", "true"]  # positive: "true" (index 1)
FIXTURES = Path(__file__).parents[1] / "fixtures"


def _scores(rng, n, shift=0.0, noise=1.0):
    """Labels and calibrated-looking P(true) with overlap (a model that is often unsure)."""
    y = rng.integers(0, 2, n)
    logit = (2 * y - 1) * 1.5 + rng.normal(0, noise, n) + shift
    p1 = 1 / (1 + np.exp(-logit))
    return np.stack([1 - p1, p1], axis=1), y


def _true_risk(control, rng, threshold, shift=0.0):
    probs, y = _scores(rng, 200_000, shift)
    return realised(control, probs, y, LABELS, "true", threshold)["accepted_disagreement"]


def test_the_certified_region_keeps_its_promise_over_repeated_calibrations():
    """Over many calibration sets, the true disagreement among auto-accepted verdicts exceeds the target in
    at most about `delta` of them (the guarantee), and the region is not trivially "send everything"."""
    rng = np.random.default_rng(0)
    target, delta, trials = 0.05, 0.1, 60
    violations, routed = 0, []
    for _ in range(trials):
        probs, y = _scores(rng, 600)
        rc = control_risk(probs, y, LABELS, "true", 0.5, target, delta)
        assert rc.met and rc.band is not None
        violations += _true_risk(rc, rng, 0.5) > target
        routed.append(rc.routed_share)
    # binomial slack around delta for 60 trials
    assert violations / trials <= delta + 2 * math.sqrt(delta * (1 - delta) / trials)
    assert 0.0 < min(routed) and float(np.mean(routed)) < 0.5  # the raw error rate (6.7%) is above the target


def test_region_follows_a_threshold_far_from_one_half():
    """A calibrated threshold of 0.15 (label shift): the band is centred on it in log-odds, and the monitor
    routes a score near 0.15 to people and a score of 0.5 (confidently positive there) not."""
    from assay.monitor._checks import Verdict
    from assay.monitor._route import Router

    rng = np.random.default_rng(1)
    probs, y = _scores(rng, 3000, shift=-1.7)
    rc = control_risk(probs, y, LABELS, "true", 0.15, 0.05, 0.1)
    assert rc.met
    lo, hi = rc.band
    assert lo < 0.15 < hi
    centre = math.log(0.15 / 0.85)
    assert math.log(lo / (1 - lo)) == pytest.approx(centre - rc.margin, abs=1e-4)
    assert math.log(hi / (1 - hi)) == pytest.approx(centre + rc.margin, abs=1e-4)

    def verdict(score):
        return Verdict("t", "m", "evaluator", "true" if score >= 0.15 else "false", score < 0.15, score=score,
                       confidence=max(score, 1 - score), binary=True, threshold=0.15, review_band=rc.band)

    router = Router(audit_rate=0.0)
    assert router.route(verdict(0.16)).reason == "uncertain"
    assert hi < 0.9 and router.route(verdict(0.95)).route == "recorded"
    assert Router(audit_rate=0.0, margin=0.01).route(verdict((lo + 0.15) / 2)).route == "recorded"  # margin wins


def test_few_rows_certify_nothing_and_say_so():
    rng = np.random.default_rng(2)
    probs, y = _scores(rng, 30)
    rc = control_risk(probs, y, LABELS, "true", 0.5)
    assert not rc.met and rc.band is None
    assert RiskControl.from_dict(rc.to_dict()) == rc


def test_categorical_region_is_a_confidence_cut():
    rng = np.random.default_rng(3)
    n = 2000
    y = rng.integers(0, 3, n)
    logits = rng.normal(0, 1, (n, 3))
    logits[np.arange(n), y] += 2.0
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    rc = control_risk(probs[:1000], y[:1000], ["a", "b", "c"], None, None, 0.05, 0.1)
    assert rc.met and rc.min_confidence is not None and rc.band is None
    held = realised(rc, probs[1000:], y[1000:], ["a", "b", "c"], None, None)
    assert held["accepted_disagreement"] <= 0.05 + 2 * math.sqrt(0.05 * 0.95 / (1000 * (1 - held["routed_share"])))


def test_trained_evaluator_on_real_rows_routes_within_the_target_on_held_out_rows(tmp_path):
    """Real rows (the PII fixture from ../shared/data): train a TF-IDF evaluator, certify the region on its
    out-of-fold scores, and check on the held-out rows that the auto-accepted verdicts stay within the
    target's bound; the report shows target, share routed and the realised disagreement; a monitor
    check loaded from the artifact routes by the certified band."""
    from assay.config import config_from_dict
    from assay.evaluator import Evaluator
    from assay.monitor._checks import ModelCheck
    from assay.train import train

    shutil.copy(FIXTURES / "data" / "pii_presidio_synth.jsonl", tmp_path / "test.jsonl")
    cfg = config_from_dict({
        "metric": "pii", "data": {"test_set": "test.jsonl", "seed_fraction": 0.4, "train_on_seeds": True},
        "train": {"candidates": ["tfidf"], "cv_folds": 5, "review_target": 0.05, "review_delta": 0.1},
        "report": {"bootstrap": 0, "latency_rows": 4}, "output": "out"}, base_dir=tmp_path)
    result = train(cfg, progress=False)
    routing = result.report["routing"]
    cert, held = routing["certified"], routing["held_out"]
    assert cert["met"] and routing["applies"] and cert["target"] == 0.05
    n_acc = held["rows"] * (1 - held["routed_share"])
    assert held["accepted_disagreement"] <= 0.05 + 2 * math.sqrt(0.05 * 0.95 / n_acc)
    md = (result.artifact_dir / "report.md").read_text()
    assert "## Routing to people" in md and "held-out rows" in md
    ev = Evaluator.from_pretrained(result.artifact_dir)
    check = ModelCheck(ev, source=result.artifact_dir)
    assert check.review_region is not None and tuple(check.review_region["band"]) == tuple(cert["band"])
    ev.calibration = ev.calibration.with_decision(min(0.99, ev.threshold + 0.1))  # a registered version moved it
    assert ModelCheck(ev, source=result.artifact_dir).review_region is None
