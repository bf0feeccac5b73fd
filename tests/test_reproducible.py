"""Issue 11.6: seeds are set before any weight is created; the same config on the same machine gives the
same artifact bytes and the same kappa."""

from __future__ import annotations

import hashlib

import pytest

from test_select import config, make_data


def _digests(folder):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())
            if p.suffix in (".safetensors",) or p.name in ("vocab.json",)}


def test_linear_runs_are_byte_identical(tmp_path):
    pytest.importorskip("sklearn")
    from assay.train import train

    make_data(tmp_path)
    a = train(config(tmp_path, ["tfidf", "embed", "hybrid"], out="a"), progress=False)
    b = train(config(tmp_path, ["tfidf", "embed", "hybrid"], out="b"), progress=False)
    da, db = _digests(a.artifact_dir), _digests(b.artifact_dir)
    assert da and da == db
    assert a.report["student"]["kappa"] == b.report["student"]["kappa"]
    assert a.evaluator.temperature == b.evaluator.temperature


@pytest.mark.slow
def test_encoder_runs_are_byte_identical(tmp_path):
    """A tiny real fine-tune, twice: same weights (head included), same loss curve, same kappa."""
    from assay.train import train

    make_data(tmp_path, n_train=48, n_test=40)
    kw = dict(max_steps=3, batch_size=8, num_threads=1, early_stopping=None)
    a = train(config(tmp_path, ["encoder"], out="a", **kw), progress=False)
    b = train(config(tmp_path, ["encoder"], out="b", **kw), progress=False)
    da, db = _digests(a.artifact_dir), _digests(b.artifact_dir)
    assert "head.safetensors" in da and da == db
    assert a.training["loss_first"] == b.training["loss_first"]
    assert a.report["student"]["kappa"] == b.report["student"]["kappa"]
    assert a.evaluator.temperature == b.evaluator.temperature


def test_seeds_are_set_before_the_head_is_created(monkeypatch):
    """fit_and_select seeds torch before Evaluator.create builds the head (the order issue 11.6 found)."""
    import torch

    from assay.train import _select

    order: list[str] = []
    monkeypatch.setattr(_select, "set_seeds", lambda seed: order.append(f"seed {seed}"))

    class Stop(Exception):
        pass

    def create(*a, **k):
        order.append("create")
        raise Stop

    from assay.evaluator import Evaluator

    monkeypatch.setattr(Evaluator, "create", staticmethod(create))
    from assay.config import config_from_dict
    from assay.metrics import load_metric

    cfg = config_from_dict({"metric": "toxicity", "data": {"test_set": "x.jsonl"},
                            "train": {"candidates": ["encoder"], "seed": 7}})
    with pytest.raises(Stop):
        rows = [{"input": "a", "label": "true"}, {"input": "b", "label": "false"}]
        _select.fit_and_select(cfg, load_metric("toxicity"), rows, rows, [], None, progress=False)
    assert order and order[0] == "seed 7" and order[-1] == "create"
    assert torch.initial_seed() is not None
