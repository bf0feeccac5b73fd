"""`assay export ARTIFACT --onnx OUT`: ONNX Runtime scores the exported graph as the Evaluator does."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

torch = pytest.importorskip("torch")

from _train_util import toy_rows  # noqa: E402

from assay.cli import cli  # noqa: E402
from assay.config import ModelConfig  # noqa: E402
from assay.evaluator import Evaluator  # noqa: E402
from assay.evaluator._contract import calibrated_probs  # noqa: E402
from assay.metrics import get_preset  # noqa: E402

GOLDEN = Path(__file__).parents[1] / "fixtures" / "artifacts" / "toxicity-tfidf-v1"


def test_export_onnx_scores_identically_in_onnx_runtime(tmp_path):
    import onnxruntime as ort  # the `onnx` extra, part of `all`: installed in CI, never skipped

    ev = Evaluator.create(get_preset("toxicity"), ModelConfig(family="encoder", max_length=48), device="cpu")
    with torch.no_grad():  # an untrained head is near zero: give it logits worth comparing
        ev.model.head.weight.normal_(0, 2.0)
    ev.calibration = replace(ev.calibration, temperature=1.7)
    artifact = ev.save_pretrained(tmp_path / "artifact")
    res = CliRunner().invoke(cli, ["export", str(artifact), "--onnx", str(tmp_path / "out" / "scorer.onnx"), "--json"])
    assert res.exit_code == 0, res.output
    written = json.loads(res.output)
    meta = json.loads(Path(written["metadata"]).read_text())
    assert meta["labels"] == list(ev.labels) and Path(written["tokenizer"], "tokenizer_config.json").exists()

    loaded = Evaluator.from_pretrained(artifact, device="cpu", precision="fp32")
    rows = toy_rows(13, seed=3)
    rows[2]["input"] = " ".join([rows[2]["input"]] * 12)  # past max_length: the truncation policy's ids
    encoded = loaded.encode(rows)
    batch = loaded.model.collate(encoded, torch.device("cpu"))
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    session = ort.InferenceSession(written["onnx"], opts, providers=["CPUExecutionProvider"])
    logits = session.run(["logits"], {"input_ids": batch["input_ids"].numpy(),
                                      "attention_mask": batch["attention_mask"].numpy()})[0]
    assert logits.shape == (len(rows), len(ev.labels))
    want = loaded.logits_of(encoded)
    assert np.allclose(logits, want, atol=1e-4), np.abs(logits - want).max()
    shift = None if meta["label_shift"] is None else np.array([meta["label_shift"][k] for k in meta["labels"]])
    probs = calibrated_probs(logits, meta["temperature"], shift)
    assert np.allclose(probs, loaded.predict_proba(rows), atol=1e-4)
    one = session.run(["logits"], {"input_ids": batch["input_ids"][:1, :5].numpy(),
                                   "attention_mask": batch["attention_mask"][:1, :5].numpy()})[0]
    assert one.shape == (1, len(ev.labels))  # any batch size and length


def test_the_golden_tfidf_artifact_exports_and_scores_its_recorded_probabilities(tmp_path):
    """A v1 linear artifact (tests/fixtures/artifacts) exports too: the n-gram inputs, pooled and calibrated as
    model.json says, give the probabilities recorded beside it; the text output names what was written."""
    import onnxruntime as ort

    from assay.evaluator._export import graph_inputs, pool_views

    want = json.loads((GOLDEN.parent / "toxicity-tfidf-v1.expected.json").read_text())
    res = CliRunner().invoke(cli, ["export", str(GOLDEN), "--onnx", str(tmp_path / "out")])
    assert res.exit_code == 0, res.output
    assert "linear tfidf: word_ngrams, char_ngrams -> logits" in res.output and "tokenizer" not in res.output
    meta = json.loads((tmp_path / "out" / "model.json").read_text())
    assert meta["format"] == "assay-onnx" and meta["decision"]["threshold"] == pytest.approx(want["threshold"])
    ev = Evaluator.from_pretrained(GOLDEN, device="cpu", precision="fp32")
    inputs = graph_inputs(ev, want["rows"])
    session = ort.InferenceSession(str(tmp_path / "out" / "model.onnx"), providers=["CPUExecutionProvider"])
    logits = pool_views(session.run(["logits"], inputs.feeds)[0], inputs.owner, inputs.swapped, meta)
    cal = meta["calibration"]
    probs = calibrated_probs(logits, cal["temperature"], None if cal["label_shift"] is None else
                             np.array([cal["label_shift"][k] for k in meta["labels"]]))
    assert np.allclose(probs, want["probabilities"], atol=1e-6)


def test_export_refuses_an_unknown_family_and_a_missing_target(tmp_path):
    import shutil

    out = CliRunner().invoke(cli, ["export", str(GOLDEN), "--json"])
    assert out.exit_code == 2 and json.loads(out.output)["error"]["code"] == "invalid_input"
    mock = tmp_path / "mock"
    shutil.copytree(GOLDEN, mock)
    info = json.loads((mock / "evaluator.json").read_text())
    (mock / "evaluator.json").write_text(json.dumps({**info, "family": "mock"}))
    out = CliRunner().invoke(cli, ["export", str(mock), "--onnx", str(tmp_path / "m.onnx"), "--json"])
    assert out.exit_code == 2 and json.loads(out.output)["error"]["code"] == "invalid_input", out.output
    assert "family mock" in json.loads(out.output)["error"]["found"]
