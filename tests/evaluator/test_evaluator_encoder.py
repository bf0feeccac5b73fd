"""Encoder family (MiniLM + LoRA + label head): train a few steps, save, reload, score the same."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from assay.config import ModelConfig, TrainingConfig  # noqa: E402
from assay.data import read_records, to_rows  # noqa: E402
from assay.evaluator import Evaluator, Score  # noqa: E402
from assay.metrics import get_preset  # noqa: E402
from assay.train import calibrate, train_loop  # noqa: E402


def _rows(shared_data, name: str, n: int) -> list[dict]:
    rows = to_rows(read_records(shared_data / name))
    by_label: dict[str, list] = {}
    for r in rows:
        by_label.setdefault(r["label"], []).append(r)
    k = len(by_label)
    out = [r for lab in sorted(by_label) for r in by_label[lab][: n // k]]
    return out


def _contains(seq: list[int], sub: list[int]) -> bool:
    return any(seq[i:i + len(sub)] == sub for i in range(len(seq) - len(sub) + 1))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from conftest import SHARED_DATA  # tests/fixtures/data unless ASSAY_SHARED_DATA is set

    rows = _rows(SHARED_DATA, "pii_presidio_synth.jsonl", 64)
    metric = get_preset("pii")
    ev = Evaluator.create(metric, ModelConfig(family="encoder", max_length=64), device="cpu",
                          precision="fp32")  # auto trains in bf16 on some CPUs: the reload is compared in fp32
    stats = train_loop(ev, rows[:48], TrainingConfig(max_steps=4, batch_size=8, seed=0), progress=False)
    cal = calibrate(ev, rows[48:] + rows[:8], "f1")
    ev.calibration = cal
    out = tmp_path_factory.mktemp("enc") / "artifact"
    ev.save_pretrained(out)
    return ev, rows, stats, cal, out


def test_encoder_trains_saves_and_reloads_identically(trained):
    ev, rows, stats, cal, out = trained
    assert np.isfinite(stats["loss_first"]) and np.isfinite(stats["loss_last"])
    assert stats["steps"] == 4
    assert {p.name for p in out.iterdir()} >= {"evaluator.json", "adapter_model.safetensors", "head.safetensors",
                                                "README.md"}
    assert not list(out.glob("*.bin")) and not list(out.glob("*.pt"))  # no pickle anywhere
    again = Evaluator.from_pretrained(out, device="cpu", precision="fp32")  # auto: bf16 on some CPUs
    a = ev.predict_proba(rows[:16], batch_size=5)
    b = again.predict_proba(rows[:16], batch_size=16)
    np.testing.assert_allclose(a, b, atol=1e-5)
    assert again.temperature == pytest.approx(ev.temperature)
    assert again.threshold == pytest.approx(ev.threshold)


def test_calibrated_probabilities_sum_to_one_and_scores_are_consistent(trained):
    ev, rows, _, cal, _ = trained
    probs = ev.predict_proba(rows[:10])
    assert probs.shape == (10, 2)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-9)
    assert cal.temperature > 0 and cal.n_rows == len(rows[48:] + rows[:8])
    scores = ev.score(rows[:10])
    assert all(isinstance(s, Score) for s in scores)
    for s, p in zip(scores, probs):
        assert s.score == pytest.approx(p[0])  # P(true), the positive label
        assert s.label == ("true" if s.score >= ev.threshold else "false")
        assert s.confidence == pytest.approx(s.probabilities[s.label])
        assert set(s.probabilities) == {"true", "false"}
        assert s.tokens > 2 and s.truncated is False
        d = s.to_dict()
        assert json.loads(json.dumps(d))["label"] == s.label


def test_evaluator_json_records_what_reproduces_it(trained):
    _, _, _, _, out = trained
    info = json.loads((out / "evaluator.json").read_text())
    assert info["format_version"] == 1 and info["family"] == "encoder"
    assert info["base"]["name"] == "minilm" and len(info["base"]["files"]["model.safetensors"]) == 64
    assert info["metric"]["name"] == "pii" and info["labels"] == ["true", "false"]
    assert {"torch", "transformers", "peft", "python"} <= set(info["versions"])
    assert "judged field" in info["truncation_policy"]
    assert info["network"]["pooling"] == "mean"
    card = (out / "README.md").read_text()
    assert "pii" in card and "Intended use" in card and "Limits" in card


def test_encoder_truncation_keeps_the_judged_field(tmp_path):
    metric = get_preset("context_adherence")  # the compact form (pair encoding reads long contexts in windows)
    ev = Evaluator.create(metric, ModelConfig(family="encoder", max_length=64, pair_encoding=False), device="cpu")
    judged = "The tower was finished in 1889 by Gustave Eiffel's company."
    row = {"id": "long", "input": "When was it built?", "output": judged,
           "context": " ".join(f"sentence {i} about the history of Paris and its monuments." for i in range(200))}
    short = {"id": "short", "input": "Hi", "output": "Hello there.", "context": "A greeting."}
    enc_long, enc_short = ev.encode([row, short])
    assert enc_long.truncated and enc_long.tokens <= 64
    assert not enc_short.truncated and enc_short.tokens == len(enc_short.ids)
    judged_ids = ev.model.tokenizer(judged, add_special_tokens=False)["input_ids"]
    assert _contains(enc_long.ids, judged_ids)  # the whole judged field, token for token
    assert "[..." in ev.model.tokenizer.decode(enc_long.ids)  # the context was cut instead
    s_long, s_short = ev.score([row, short])
    assert s_long.truncated is True and s_long.tokens == enc_long.tokens and s_short.truncated is False
