"""The contrastive candidate (SetFit's recipe in the product): pairs, the tuning loop, honest folds, artifacts."""

from __future__ import annotations

import numpy as np
import pytest

from _train_util import config, make_data

pytest.importorskip("sklearn")


def test_pairs_are_half_positive_half_negative_and_follow_the_labels():
    from assay.train._contrastive import contrastive_pairs

    y = [0, 0, 0, 1, 1, 2, 2, 2, 2]
    pairs = contrastive_pairs(y, 64, seed=3)
    assert len(pairs) == 64
    assert all(i != j for i, j, _ in pairs)
    assert all((y[i] == y[j]) == (t == 1.0) for i, j, t in pairs)
    assert sum(t for _, _, t in pairs) == 32
    assert contrastive_pairs(y, 64, seed=3) == pairs and contrastive_pairs(y, 64, seed=4) != pairs
    assert contrastive_pairs([1, 1, 1], 8, seed=0) == []  # one label: nothing to contrast


def _separation(block, encoded, y):
    x = block.embed_encoded(encoded)
    sim = x @ x.T
    same = np.equal.outer(y, y) & ~np.eye(len(y), dtype=bool)
    diff = ~np.equal.outer(y, y)
    return float(sim[same].mean() - sim[diff].mean())


def test_tuning_pulls_one_label_together_and_pushes_the_others_apart():
    from assay.evaluator._base_models import resolve_base
    from assay.evaluator._linear import ContrastiveFeatures
    from assay.metrics import load_metric
    from assay.train._contrastive import tune_body

    rows = ([{"input": f"the weather on day {i} is sunny and warm"} for i in range(8)]
            + [{"input": f"invoice number {i} is overdue, please pay"} for i in range(8)])
    rows = [r for pair in zip(rows[:8], rows[8:]) for r in pair]  # interleaved labels
    y = np.array([0, 1] * 8)
    block = ContrastiveFeatures(load_metric("toxicity"), resolve_base("minilm"), 32)
    encoded = block.encode(rows)
    before = _separation(block, encoded, y)
    info = tune_body(block, encoded, y, steps=12, batch_size=8, lr=5e-5, seed=0)
    after = _separation(block, encoded, y)
    assert info["steps"] == 12 and info["pairs"] == 96
    assert info["loss_last"] < info["loss_first"]
    assert after > before + 0.05, (before, after)
    assert not block.net.training


def test_each_fold_tunes_on_its_training_part_only(tmp_path, monkeypatch):
    """The body seen by a fold's validation rows was never tuned on them; the refit tunes on every row."""
    from assay.train import _contrastive, train

    calls: list[frozenset] = []
    real = _contrastive.tune_body

    def spy(block, encoded, y, **kw):
        calls.append(frozenset(tuple(e.ids) for e in encoded))
        return real(block, encoded, y, **kw)

    monkeypatch.setattr(_contrastive, "tune_body", spy)
    make_data(tmp_path, n_train=60, n_test=40)
    result = train(config(tmp_path, ["contrastive"], contrastive_steps=2, contrastive_batch_size=4), progress=False)
    sel = result.report["selection"]
    cand = next(c for c in sel["candidates"] if c["name"] == "contrastive")
    folds = sel["folds"]
    assert len(calls) == folds + 1  # one tuning per fold, then the refit on all rows
    everything = calls[-1]
    for seen in calls[:-1]:
        assert seen < everything  # a strict subset: the fold's validation part is missing
    assert cand["cv_kappa"] is not None and len(cand["fold_kappas"]) == folds
    assert [t["steps"] for t in cand["params"]["tuning_per_fold"]] == [2] * folds


def test_contrastive_artifact_round_trips_with_its_tuned_body(tmp_path):
    from assay.evaluator import Evaluator
    from assay.train import train

    _, test = make_data(tmp_path, n_train=40, n_test=40)
    result = train(config(tmp_path, ["contrastive"], contrastive_steps=3, contrastive_batch_size=4), progress=False)
    ev = result.evaluator
    files = sorted(p.name for p in result.artifact_dir.iterdir())
    assert ev.family == "linear" and "contrastive.safetensors" in files and "linear.safetensors" in files
    loaded = Evaluator.from_pretrained(result.artifact_dir)
    assert loaded.info["linear"]["kind"] == "contrastive"
    rows = test + [{"input": "words nobody saw, zzkq"}, {"input": ""}]
    np.testing.assert_allclose(loaded.predict_proba(rows), ev.predict_proba(rows), rtol=1e-5, atol=1e-6)
    # the stored body is the tuned one, not the package's frozen MiniLM
    from assay.evaluator._linear import EmbedFeatures

    frozen = EmbedFeatures(ev.metric, ev.model.blocks["contrastive"].base, 32)
    enc = frozen.encode(rows[:4])
    assert not np.allclose(frozen.embed_encoded(enc), loaded.model.blocks["contrastive"].embed_encoded(enc), atol=1e-4)


def test_hybrid_stacks_the_tuned_block_read_at_its_own_length(tmp_path, monkeypatch):
    """A hybrid over tfidf, embed (32 tokens) and contrastive (16 tokens) reloads and scores identically."""
    from assay.evaluator import Evaluator
    from assay.train import _select, train

    def pick_hybrid(sel, kinds, val_idx=None):
        sel.winner, sel.reason = "hybrid", "forced by the test"
        return "hybrid"

    monkeypatch.setattr(_select, "choose", pick_hybrid)
    _, test = make_data(tmp_path, n_train=40, n_test=40)
    result = train(config(tmp_path, ["contrastive", "hybrid"], contrastive_steps=2, contrastive_batch_size=4,
                          contrastive_max_length=16), progress=False)
    ev = result.evaluator
    assert ev.family == "hybrid" and list(ev.model.blocks) == ["tfidf", "embed", "contrastive"]
    assert ev.info["linear"]["max_lengths"] == {"embed": 32, "contrastive": 16}
    loaded = Evaluator.from_pretrained(result.artifact_dir)
    assert loaded.model.blocks["contrastive"].max_length == 16
    rows = test + [{"input": "a much longer input " * 20}]
    np.testing.assert_allclose(loaded.predict_proba(rows), ev.predict_proba(rows), rtol=1e-5, atol=1e-6)
