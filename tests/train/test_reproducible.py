"""Issue 11.6: seeds are set before any weight is created; the same config on the same machine gives the
same artifact bytes and the same kappa."""

from __future__ import annotations

import hashlib

import pytest

from _train_util import config, make_data


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

    from assay.train import _fit as _select

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


def test_safetensors_bytes_do_not_depend_on_hash_order(tmp_path):
    """safetensors writes its metadata from a hash map (either key order, by chance); save_tensors sorts
    the header, so the same tensors and metadata give the same bytes every time, and the file still loads."""
    import torch
    from safetensors import safe_open
    from safetensors.torch import load_file

    from assay.evaluator._common import save_tensors

    tensors = {"head.b": torch.arange(3, dtype=torch.float64), "head.a": torch.ones(2, 5)}
    meta = {"format": "pt", "blocks": "tfidf,embed", "zeta": "1"}
    ours = set()
    for i in range(24):
        save_tensors(tensors, tmp_path / f"ours{i}.safetensors", meta)
        ours.add((tmp_path / f"ours{i}.safetensors").read_bytes())
    assert len(ours) == 1  # (plain save_file gives several here on safetensors 0.8)
    back = load_file(str(tmp_path / "ours0.safetensors"))
    assert set(back) == set(tensors) and all(torch.equal(back[k], tensors[k]) for k in tensors)
    with safe_open(str(tmp_path / "ours0.safetensors"), "pt") as f:
        assert f.metadata() == meta
