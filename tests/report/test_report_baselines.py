"""Baselines on real rows: majority and TF-IDF + logistic regression."""

import json

import pytest

from assay.data import read_records, split_rows, to_rows
from assay.metrics import get_preset
from assay.report import baseline_text, run_baselines

pytest.importorskip("sklearn")


@pytest.fixture
def pii_rows(shared_data):
    rows = to_rows(read_records(shared_data / "pii_presidio_synth.jsonl")[:300])
    split = split_rows(rows, fraction=0.5, seed=0)  # disjoint by content hash
    return split.seeds, split.held_out


def test_tfidf_beats_majority_on_pii(pii_rows):
    train, held = pii_rows
    metric = get_preset("pii")
    out = run_baselines(metric, train, held, bootstrap=100)
    assert set(out) == {"majority", "tfidf_logreg"}
    maj, tfidf = out["majority"], out["tfidf_logreg"]
    assert maj["n"] == tfidf["n"] == len(held)
    assert maj["n_train"] == len(train) and maj["dropped_train_rows"] == 0
    # majority: one predicted label, the most frequent in training ("true" for this file)
    assert maj["predicted_counts"]["true"] == len(held) and maj["kappa"] == 0.0
    assert "'true'" in maj["description"]
    assert tfidf["kappa"] > maj["kappa"] + 0.3
    assert tfidf["auroc"] > 0.8
    assert tfidf["C"] in (0.3, 1.0, 3.0, 10.0) and tfidf["cv_folds"] in (2, 3)
    json.dumps(out, allow_nan=False)


def test_unlabeled_training_rows_are_counted_and_one_label_skips_tfidf(pii_rows):
    train, held = pii_rows
    metric = get_preset("pii")
    only_true = [r for r in train if r["label"] == "true"][:40] + [{"input": "x", "label": None}]
    out = run_baselines(metric, only_true, held, bootstrap=0)
    assert out["majority"]["dropped_train_rows"] == 1
    assert "skipped" in out["tfidf_logreg"] and "one label" in out["tfidf_logreg"]["skipped"]
    none = run_baselines(metric, [], held, bootstrap=0)
    assert all("skipped" in v for v in none.values())


def test_baseline_text_names_the_fields_the_metric_reads():
    metric = get_preset("context_adherence")
    text = baseline_text(metric, {"input": "q", "output": "a", "context": "c", "label": "true"})
    assert text.splitlines() == ["input: q", "output: a", "context: c"]
