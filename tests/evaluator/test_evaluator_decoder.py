"""Decoder family (SmolLM2 from the PyPI GGUF + LoRA): one-token verdicts from label logits only."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from assay.config import ModelConfig, TrainingConfig  # noqa: E402
from assay.evaluator import Calibration, Evaluator  # noqa: E402
from assay.metrics import metric_from_dict  # noqa: E402
from assay.train import train_loop  # noqa: E402

# Short prompts keep CPU forward passes cheap; the presets' prompts work the same way.
PII = metric_from_dict({"name": "pii_short", "shape": "message",
                        "prompt": "Does this text contain personal data?\n{input}\nAnswer true or false."})
RAG = metric_from_dict({"name": "rag_short", "shape": "rag",
                        "prompt": "Context: {context}\nQuestion: {input}\nResponse: {output}\nUnsupported claims?"})

ROWS = [
    {"id": "a", "input": "Call Maria Lopez at 555-201-3344 about the lease.", "label": "true"},
    {"id": "b", "input": "The weather in the valley is mild in spring.", "label": "false"},
    {"id": "c", "input": "Send the invoice to john.smith@example.com today.", "label": "true"},
    {"id": "d", "input": "Our quarterly meeting moved to the large room.", "label": "false"},
    {"id": "e", "input": "SSN 078-05-1120 belongs to the applicant.", "label": "true"},
    {"id": "f", "input": "Bake the bread for forty minutes.", "label": "false"},
]


@pytest.fixture(scope="module")
def decoder(tmp_path_factory):
    pytest.importorskip("gguf")
    ev = Evaluator.create(PII, ModelConfig(family="decoder", max_length=128, base="smollm2"),
                          device="cpu", precision="fp32")  # auto trains in bf16 on some CPUs: compared in fp32
    before = ev.predict_logits(ROWS)
    stats = train_loop(ev, ROWS, TrainingConfig(max_steps=3, batch_size=2, learning_rate=1e-3, seed=0),
                       progress=False)
    ev.calibration = Calibration(temperature=1.3, threshold=0.4)
    out = tmp_path_factory.mktemp("dec") / "artifact"
    ev.save_pretrained(out)
    return ev, before, stats, out


@pytest.mark.slow
def test_decoder_lora_trains_and_scores_identically_after_reload(decoder):
    ev, before, stats, out = decoder
    assert np.isfinite(stats["loss_first"]) and np.isfinite(stats["loss_last"])
    after = ev.predict_logits(ROWS)
    assert not np.allclose(before, after)  # the adapters learned something
    assert (out / "adapter_model.safetensors").exists() and not (out / "model.safetensors").exists()
    again = Evaluator.from_pretrained(out, device="cpu", precision="fp32")  # auto: bf16 on some CPUs
    np.testing.assert_allclose(again.predict_proba(ROWS), ev.predict_proba(ROWS), atol=1e-5)
    assert (again.temperature, again.threshold) == (1.3, 0.4)
    assert again.info["network"]["label_token_ids"] == ev.info["network"]["label_token_ids"]


@pytest.mark.slow
def test_verbalizers_are_single_tokens_after_the_answer_prefix(decoder):
    ev, *_ = decoder
    net = ev.model.describe()
    assert net["verbalizers"] == {"true": " true", "false": " false"}
    assert net["single_token_verbalizers"] is True
    tok = ev.model.tokenizer
    for label, tid in net["label_token_ids"].items():
        assert tok(" " + label, add_special_tokens=False)["input_ids"] == [tid]
    prompt = tok.decode(ev.encode(ROWS[:1])[0].ids)
    assert prompt.endswith("<|im_start|>assistant\nAnswer:") and "Call Maria Lopez" in prompt


@pytest.mark.slow
def test_scoring_computes_only_the_label_rows_of_the_output_head(decoder):
    ev, *_ = decoder
    model = ev.model
    batch = model.collate(ev.encode(ROWS[:4]), ev.device)
    calls = []
    head = model.causal_lm.get_output_embeddings()
    hook = head.register_forward_hook(lambda mod, args, out: calls.append(tuple(out.shape)))
    try:
        with torch.no_grad():
            restricted = model(**batch)
        assert calls == []  # the [batch, seq, vocab] projection never runs
        with torch.no_grad():
            full = model.full_logits(**batch)
        assert calls and calls[0][-1] == head.weight.shape[0]
    finally:
        hook.remove()
    assert restricted.shape == (4, 2)
    torch.testing.assert_close(restricted, full, atol=1e-4, rtol=1e-4)


@pytest.mark.slow
def test_left_padding_gives_the_same_logits_as_one_row_at_a_time(decoder):
    ev, *_ = decoder
    together = ev.predict_logits(ROWS, batch_size=6)
    alone = np.concatenate([ev.predict_logits([r], batch_size=1) for r in ROWS])
    np.testing.assert_allclose(together, alone, atol=1e-4)


@pytest.mark.slow
def test_decoder_truncation_keeps_the_judged_output(decoder):
    ev, *_ = decoder
    judged = "The museum opened in 1793 and the pyramid entrance was added in 1989."
    row = {"id": "x", "input": "Tell me about the Louvre.", "output": judged,
           "context": " ".join(f"Paragraph {i} about French art collections and royal palaces." for i in range(150))}
    ev.model.metric = RAG  # same labels, a rag prompt
    try:
        (enc,) = ev.encode([row])
    finally:
        ev.model.metric = PII
    text = ev.model.tokenizer.decode(enc.ids)
    assert enc.truncated and judged in text and "[...]" in text
    assert enc.tokens == len(enc.ids) <= 128


def test_categorical_labels_whose_first_tokens_collide_are_one_clear_error():
    from assay.errors import AssayError
    from assay.metrics import metric_from_dict

    metric = metric_from_dict({
        "name": "quality", "output": "categorical", "labels": ["very_good", "very_bad", "ok"],
        "prompt": "Rate: {input}", "verbalizers": {"very_good": "very good", "very_bad": "very bad"},
    })
    with pytest.raises(AssayError) as err:
        Evaluator.create(metric, ModelConfig(family="decoder", max_length=128), device="cpu")
    msg = str(err.value)
    assert "\n" not in msg
    assert msg.startswith("expected distinct first tokens")
    assert "'very good' and 'very bad' both start with token" in msg and "metric.verbalizers" in msg
