"""Grounding features: the judged field against each context field (embedding interactions and lexical
overlap) for shapes with context, stored with the artifact and off for single-field metrics."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest

pytest.importorskip("sklearn")

VOCAB = [f"w{i}" for i in range(400)]


def test_lexical_overlap_features_count_what_the_context_supports():
    from assay.evaluator._grounding import LEXICAL, context_fields, lexical
    from assay.metrics import load_metric

    rag = load_metric("context_adherence")
    assert context_fields(rag) == ["input", "context"]
    assert context_fields(load_metric("toxicity")) == []
    rows = [{"input": "q", "context": "Paris has 2 million people", "output": "Paris has 2 million"},
            {"input": "q", "context": "Paris has 2 million people", "output": "Rome has 9 cats"}]
    x = lexical(rag, rows)
    assert x.shape == (2, 2 * len(LEXICAL))
    ctx = slice(len(LEXICAL), 2 * len(LEXICAL))  # the block of the "context" field
    got = dict(zip(LEXICAL, x[0, ctx]))
    assert got["judged_found"] == 1.0 and got["numbers_found"] == 1.0 and got["has_numbers"] == 1.0
    assert got["context_found"] == pytest.approx(4 / 5)
    other = dict(zip(LEXICAL, x[1, ctx]))
    assert other["judged_found"] == pytest.approx(1 / 4) and other["numbers_found"] == 0.0


def _rag_rows(rng: random.Random, n: int, prefix: str) -> list[dict]:
    """Faithful rows copy their answer from the context, unfaithful ones from elsewhere: the label is a
    relation between two fields, invisible in either field alone."""
    rows = []
    for i in range(n):
        ctx = rng.sample(VOCAB, 12)
        faithful = i % 2 == 0
        pool = ctx if faithful else [w for w in VOCAB if w not in ctx]
        rows.append({"id": f"{prefix}{i}", "input": "what does it say?", "context": " ".join(ctx),
                     "output": " ".join(rng.sample(pool, 4)), "label": "true" if faithful else "false"})
    return rows


def _config(tmp_path, grounding: bool, out: str):
    from assay.config import config_from_dict

    return config_from_dict({
        "metric": "context_adherence",
        "data": {"test_set": "test.jsonl", "train_set": "train.jsonl", "seed_fraction": 0.25},
        "model": {"family": "encoder", "max_length": 64},
        "train": {"candidates": ["embed"], "cv_folds": 3, "seed": 0, "grounding": grounding},
        "report": {"bootstrap": 0, "latency_rows": 4, "baselines": False},
        "output": out,
    }, base_dir=tmp_path)


def test_grounding_learns_a_relation_between_fields_and_round_trips(tmp_path):
    from assay.evaluator import Evaluator
    from assay.train import train

    rng = random.Random(0)
    (tmp_path / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in _rag_rows(rng, 120, "t")))
    test = _rag_rows(rng, 80, "h")
    (tmp_path / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in test))

    plain = train(_config(tmp_path, False, "plain"), progress=False)
    grounded = train(_config(tmp_path, True, "grounded"), progress=False)
    k_plain, k_grounded = plain.report["student"]["kappa"], grounded.report["student"]["kappa"]
    assert k_grounded >= 0.8 and k_grounded >= k_plain + 0.3, (k_plain, k_grounded)

    info = grounded.evaluator.info["linear"]
    assert info["grounding"] == {"embed": ["input", "context"]} and not plain.evaluator.info["linear"]["grounding"]
    hidden = 384
    assert grounded.evaluator.model.blocks["embed"].size > hidden == plain.evaluator.model.blocks["embed"].size

    speed = grounded.report["speed"]  # the report times the linear model's own floor too
    assert speed["ratio_to_floor"] > 0 and all(b["floor_rows_per_s"] > 0 for b in speed["batches"])

    loaded = Evaluator.from_pretrained(grounded.artifact_dir)
    rows = test[:10] + [{"input": "", "context": "", "output": ""}]
    np.testing.assert_allclose(loaded.predict_proba(rows), grounded.evaluator.predict_proba(rows), rtol=1e-5,
                               atol=1e-6)


def test_grounding_is_kept_only_when_it_beats_the_plain_block_by_more_than_a_tie():
    from assay.train._select import TIE, _grounding_choice

    assert _grounding_choice({"grounded": (0.50, 1.0, None), "plain": (0.30, 1.0, None)}) == "grounded"
    assert _grounding_choice({"grounded": (0.30 + TIE / 2, 1.0, None), "plain": (0.30, 1.0, None)}) == "plain"
    assert _grounding_choice({"grounded": (0.02, 1.0, None), "plain": (0.28, 1.0, None)}) == "plain"


def test_a_plain_choice_ships_the_block_without_grounding(tmp_path, monkeypatch):
    """When cross-validation keeps the plain block (here forced), the refit model, its artifact and its
    reload have no grounding features; both variants' CV figures are in the report."""
    import assay.train._select as select
    from assay.evaluator import Evaluator
    from assay.train import train

    monkeypatch.setattr(select, "_grounding_choice", lambda results: "plain")
    rng = random.Random(2)
    (tmp_path / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in _rag_rows(rng, 90, "t")))
    (tmp_path / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in _rag_rows(rng, 40, "h")))
    result = train(_config(tmp_path, True, "out"), progress=False)
    (embed,) = [c for c in result.report["selection"]["candidates"] if c["name"] == "embed"]
    by_c = embed["params"]["cv_kappa_by_C"]
    assert any(k.startswith("grounded") for k in by_c) and any(k.startswith("plain") for k in by_c)
    assert embed["params"]["grounding"] is False
    assert not result.evaluator.info["linear"]["grounding"]
    assert result.evaluator.model.blocks["embed"].size == 384
    loaded = Evaluator.from_pretrained(result.artifact_dir)
    assert loaded.model.blocks["embed"].context == []
    probe = _rag_rows(rng, 6, "x")
    np.testing.assert_allclose(loaded.predict_proba(probe), result.evaluator.predict_proba(probe), rtol=1e-5, atol=1e-6)


def test_the_contrastive_block_chooses_its_grounding_too(tmp_path):
    from assay.config import config_from_dict
    from assay.evaluator import Evaluator
    from assay.train import train

    rng = random.Random(3)
    (tmp_path / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in _rag_rows(rng, 60, "t")))
    (tmp_path / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in _rag_rows(rng, 30, "h")))
    cfg = config_from_dict({
        "metric": "context_adherence",
        "data": {"test_set": "test.jsonl", "train_set": "train.jsonl", "seed_fraction": 0.25},
        "model": {"family": "encoder", "max_length": 64},
        "train": {"candidates": ["contrastive"], "cv_folds": 2, "seed": 0, "contrastive_steps": 2,
                  "contrastive_batch_size": 4, "contrastive_max_length": 32},
        "report": {"bootstrap": 0, "latency_rows": 4, "baselines": False},
        "output": "out"}, base_dir=tmp_path)
    result = train(cfg, progress=False)
    (cand,) = [c for c in result.report["selection"]["candidates"] if c["name"] == "contrastive"]
    assert isinstance(cand["params"]["grounding"], bool)
    assert any(k.startswith("grounded") for k in cand["params"]["cv_kappa_by_C"])
    shipped = result.evaluator.info["linear"]["grounding"]
    assert bool(shipped) is cand["params"]["grounding"]
    loaded = Evaluator.from_pretrained(result.artifact_dir)
    probe = _rag_rows(rng, 4, "x")
    np.testing.assert_allclose(loaded.predict_proba(probe), result.evaluator.predict_proba(probe), rtol=1e-5, atol=1e-6)
