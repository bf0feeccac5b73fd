"""classification_metrics against sklearn, and its degenerate cases."""

import json
from pathlib import Path

import numpy as np
import pytest

from assay.errors import AssayError
from assay.report import classification_metrics, expected_calibration_error

sk = pytest.importorskip("sklearn.metrics")

LABELS3 = ["hate_speech", "offensive_language", "neither"]


def _random_3class(n=400, seed=1):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    p = rng.dirichlet([1, 1, 1], n)
    p[np.arange(n), y] += 0.6
    p = np.round(p / p.sum(1, keepdims=True), 2)  # ties in the scores on purpose
    p = p / p.sum(1, keepdims=True)
    return y, p


def test_categorical_matches_sklearn():
    y, p = _random_3class()
    m = classification_metrics([LABELS3[i] for i in y], p, LABELS3)
    pred = p.argmax(1)
    assert m["n"] == len(y)
    assert m["accuracy"] == pytest.approx(sk.accuracy_score(y, pred), abs=1e-6)
    assert m["kappa"] == pytest.approx(sk.cohen_kappa_score(y, pred), abs=1e-6)
    assert m["f1_macro"] == pytest.approx(sk.f1_score(y, pred, average="macro"), abs=1e-6)
    assert m["precision_macro"] == pytest.approx(sk.precision_score(y, pred, average="macro"), abs=1e-6)
    assert m["auroc"] == pytest.approx(sk.roc_auc_score(y, p, multi_class="ovr"), abs=1e-6)
    assert m["confusion"] == sk.confusion_matrix(y, pred, labels=[0, 1, 2]).tolist()
    onehot = np.eye(3)[y]
    assert m["brier"] == pytest.approx(np.mean(np.sum((p - onehot) ** 2, 1)), abs=1e-6)
    for i, lab in enumerate(LABELS3):
        assert m["per_class"][lab]["f1"] == pytest.approx(sk.f1_score(y == i, pred == i), abs=1e-6)
        assert m["label_counts"][lab] == int((y == i).sum())
    json.dumps(m, allow_nan=False)  # plain JSON types, no NaN


def test_binary_matches_sklearn_with_threshold_and_positive_second():
    rng = np.random.default_rng(2)
    n = 300
    is_pos = rng.integers(0, 2, n)
    pp = np.round(np.clip(0.35 * is_pos + rng.random(n) * 0.65, 0, 1), 2)
    labels = ["true", "false"]
    # positive is the second label ("false"), as for tool_call_correctness
    y = ["false" if v else "true" for v in is_pos]
    probs = np.c_[1 - pp, pp]
    m = classification_metrics(y, probs, labels, positive="false", threshold=0.4)
    pred = (pp >= 0.4).astype(int)
    assert m["positive"] == "false" and m["threshold"] == 0.4
    assert m["auroc"] == pytest.approx(sk.roc_auc_score(is_pos, pp), abs=1e-6)
    assert m["auprc"] == pytest.approx(sk.average_precision_score(is_pos, pp), abs=1e-6)
    assert m["kappa"] == pytest.approx(sk.cohen_kappa_score(is_pos, pred), abs=1e-6)
    assert m["f1_positive"] == pytest.approx(sk.f1_score(is_pos, pred), abs=1e-6)
    assert m["f1_macro"] == pytest.approx(sk.f1_score(is_pos, pred, average="macro"), abs=1e-6)
    assert m["brier"] == pytest.approx(sk.brier_score_loss(is_pos, pp), abs=1e-6)
    # confusion rows are true labels in label order: index 0 = "true" (= not positive)
    assert m["confusion"] == sk.confusion_matrix(is_pos, pred, labels=[0, 1]).tolist()


def test_perfect_predictions():
    y = ["true"] * 30 + ["false"] * 20
    probs = np.array([[0.99, 0.01]] * 30 + [[0.02, 0.98]] * 20)
    m = classification_metrics(y, probs, ["true", "false"])
    assert m["accuracy"] == 1.0 and m["kappa"] == 1.0 and m["f1_macro"] == 1.0
    assert m["auroc"] == 1.0 and m["auprc"] == 1.0
    assert m["confusion"] == [[30, 0], [0, 20]]
    assert m["ci"]["kappa"] == [1.0, 1.0]


def test_one_class_present_and_all_predictions_one_class():
    # truth has one class, predictions vary: kappa 0, AUROC undefined
    y = ["neither"] * 10
    p = np.tile([0.1, 0.2, 0.7], (10, 1))
    p[0] = [0.8, 0.1, 0.1]
    m = classification_metrics(y, p, LABELS3)
    assert m["kappa"] == 0.0
    assert m["auroc"] is None and m["auprc"] is None
    # truth and predictions all the same label: kappa undefined -> None, nothing crashes
    p2 = np.tile([0.1, 0.2, 0.7], (10, 1))
    m2 = classification_metrics(y, p2, LABELS3, bootstrap=50)
    assert m2["kappa"] is None and m2["ci"]["kappa"] is None
    assert m2["accuracy"] == 1.0 and m2["f1_macro"] == 1.0  # labels absent on both sides are not averaged
    # binary: every prediction the negative label
    yb = ["true"] * 5 + ["false"] * 5
    mb = classification_metrics(yb, np.tile([0.1, 0.9], (10, 1)), ["true", "false"])
    assert mb["kappa"] == 0.0 and mb["auroc"] == 0.5
    assert mb["per_class"]["true"]["precision"] == 0.0
    json.dumps([m, m2, mb], allow_nan=False)


def test_bootstrap_interval_contains_point_estimate():
    y, p = _random_3class(n=300, seed=5)
    m = classification_metrics([LABELS3[i] for i in y], p, LABELS3, bootstrap=500, seed=3)
    lo, hi = m["ci"]["kappa"]
    assert lo < m["kappa"] < hi
    lo, hi = m["ci"]["f1_macro"]
    assert lo < m["f1_macro"] < hi
    again = classification_metrics([LABELS3[i] for i in y], p, LABELS3, bootstrap=500, seed=3)
    assert again["ci"] == m["ci"]  # fixed seed, same interval
    assert classification_metrics([LABELS3[i] for i in y], p, LABELS3, bootstrap=0)["ci"]["kappa"] is None


def test_ece_calibrated_small_overconfident_large():
    rng = np.random.default_rng(0)
    n = 20000
    conf = rng.uniform(0.5, 1.0, n)
    hit = rng.random(n) < conf  # right with exactly the stated probability
    assert expected_calibration_error(conf, hit) < 0.02
    over = rng.random(n) < 0.6  # says 0.5-1.0, right 60% of the time
    assert expected_calibration_error(conf, over) > 0.1
    # through classification_metrics: the binary P(positive) of a calibrated scorer
    pp = rng.random(n)
    y = np.where(rng.random(n) < pp, "true", "false")
    m = classification_metrics(y, np.c_[pp, 1 - pp], ["true", "false"], bootstrap=0)
    assert m["ece_positive"] < 0.02 and m["ece"] < 0.02
    sharp = np.where(pp >= 0.5, 0.99, 0.01)
    m2 = classification_metrics(y, np.c_[sharp, 1 - sharp], ["true", "false"], bootstrap=0)
    assert m2["ece"] > 0.15
    assert sum(b["count"] for b in m["reliability"]) == n


def test_bad_inputs_are_clear_errors():
    with pytest.raises(AssayError, match="2 rows without a label"):
        classification_metrics(["true", None, ""], np.full((3, 2), 0.5), ["true", "false"])
    with pytest.raises(AssayError, match="unknown labels"):
        classification_metrics(["true", "maybe"], np.full((2, 2), 0.5), ["true", "false"])
    with pytest.raises(AssayError, match="shape"):
        classification_metrics(["true", "false"], np.full((2, 3), 0.5), ["true", "false"])
    with pytest.raises(AssayError, match="NaN"):
        classification_metrics(["true", "false"], [[0.5, np.nan], [0.5, 0.5]], ["true", "false"])


def test_every_kappa_entry_point_is_the_one_implementation():
    """Judge agreement, monitor/drift, selection, calibration and the report all give sklearn's kappa,
    with the same None for an undefined kappa (issue 10: one copy of each rule)."""
    import numpy as np
    from sklearn.metrics import cohen_kappa_score

    from assay.providers import measure_judge  # noqa: F401 - the judge's kappa: stats.judge_agreement (cohen_kappa)
    from assay.report import agreement_kappa, cohen_kappa, kappa_of_confusion
    from assay.train._calibrate import _objective

    rng = np.random.default_rng(0)
    labels = ["a", "b", "c"]
    for _ in range(20):
        y, p = rng.integers(0, 3, 60), rng.integers(0, 3, 60)
        ys, ps = [labels[i] for i in y], [labels[i] for i in p]
        want = cohen_kappa_score(y, p)
        assert cohen_kappa(y, p, 3) == pytest.approx(want)
        assert agreement_kappa(ys, ps, labels) == pytest.approx(want)
        assert agreement_kappa(ys, ps) == pytest.approx(want)  # the judge's call: labels seen
        yb, pb = y % 2, p % 2
        tp, fp = float(((pb == 1) & (yb == 1)).sum()), float(((pb == 1) & (yb == 0)).sum())
        fn, tn = float(((pb == 0) & (yb == 1)).sum()), float(((pb == 0) & (yb == 0)).sum())
        assert _objective("kappa", tp, fp, fn, tn) == pytest.approx(cohen_kappa_score(yb, pb))
    cms = np.stack([np.bincount(3 * a + b, minlength=9).reshape(3, 3) for a, b in
                    (rng.integers(0, 3, (2, 40)) for _ in range(5))])
    batch = kappa_of_confusion(cms)
    assert batch.shape == (5,) and all(batch[i] == pytest.approx(kappa_of_confusion(cms[i])) for i in range(5))
    one_label = ["a"] * 5
    assert agreement_kappa(one_label, one_label) is None and agreement_kappa(one_label, one_label, labels) is None
    assert agreement_kappa([], []) is None and cohen_kappa(np.zeros(4, int), np.zeros(4, int), 2) is None


def test_one_definition_of_kappa_in_the_source():
    """`grep` finds one implementation of Cohen's kappa (assay.stats); everything else imports it."""
    import re

    src = Path(__file__).resolve().parents[2] / "src" / "assay"
    defs = [f"{p.relative_to(src)}:{m.group(1)}" for p in sorted(src.rglob("*.py"))
            for m in re.finditer(r"^def (\w*kappa\w*)\(", p.read_text(encoding="utf-8"), re.M)]
    readers = {"monitor/_checks.py:report_kappa"}  # reads the figure from report.json, computes nothing
    assert sorted(set(defs) - readers) == ["stats.py:agreement_kappa", "stats.py:cohen_kappa",
                                           "stats.py:kappa_of_confusion"], defs
