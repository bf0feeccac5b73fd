"""The encoder recipe (issue 14 item 1): class weights, schedule, early stopping, pair encoding, chunking,
full fine-tuning."""

from __future__ import annotations

import math
import random
from types import SimpleNamespace

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from assay.config import EarlyStoppingConfig, ModelConfig, TrainingConfig  # noqa: E402
from assay.evaluator import Evaluator  # noqa: E402
from assay.evaluator._encoder import windows  # noqa: E402
from assay.metrics import get_preset  # noqa: E402
from assay.train import train_loop  # noqa: E402
from assay.train._loop import class_weights, lr_factor, validation_slice  # noqa: E402


def test_class_weights_do_not_fully_balance_by_default():
    y = [0] * 90 + [1] * 10
    balanced = class_weights(y, 2, "balanced")
    sqrt = class_weights(y, 2, "sqrt")
    effective = class_weights(y, 2, "effective")
    assert TrainingConfig().class_weighting == "sqrt"
    ratio = lambda w: w[1] / w[0]  # noqa: E731
    assert ratio(balanced) == pytest.approx(9.0)
    assert ratio(sqrt) == pytest.approx(3.0)
    assert 1.0 < ratio(effective) < ratio(balanced)
    assert class_weights(y, 2, "none") == [1.0, 1.0]
    assert np.mean(sqrt) == pytest.approx(1.0)


def test_schedule_warms_up_then_decays():
    total, warmup = 100, 10
    for schedule in ("linear", "cosine"):
        f = [lr_factor(s, total, warmup, schedule) for s in range(total)]
        assert f[0] < f[5] < f[9] <= 1.0  # warm-up
        assert f[10] == pytest.approx(1.0) and f[99] < 0.05  # then down to ~0
        assert all(a >= b for a, b in zip(f[10:], f[11:]))
    assert lr_factor(50, total, warmup, "constant") == 1.0


def test_windows_cover_long_contexts_with_overlap():
    starts, gaps = windows(100, 40, 8)
    assert starts[0] == 0 and starts[-1] == 60 and not gaps
    assert all(0 < b - a < 40 for a, b in zip(starts, starts[1:]))  # overlapping
    starts, gaps = windows(1000, 40, 4)  # too long for 4 windows: spread out, and some text is skipped
    assert len(starts) == 4 and starts[-1] == 960 and gaps
    assert windows(30, 40, 4) == ([0], False)


# --- early stopping on a validation slice, with a tiny stand-in model --------------------------------
class _Tiny(torch.nn.Module):
    family = "encoder"
    lora = None

    def __init__(self):
        super().__init__()
        self.head = torch.nn.Linear(8, 2)

    def collate(self, batch, device):
        return {"x": torch.tensor([e.x for e in batch], dtype=torch.float32)}

    def forward(self, x):
        return self.head(x)


class _TinyEvaluator:
    labels = ("true", "false")
    device, dtype = "cpu", None

    def __init__(self):
        self.model = _Tiny()

    def encode(self, rows):
        return [SimpleNamespace(x=r["meta"]["x"], tokens=8, truncated=False, sequences=lambda: [[0]]) for r in rows]

    def logits_of(self, encoded, batch_size=None):
        self.model.eval()
        with torch.no_grad():
            return self.model(**self.model.collate(encoded, "cpu")).numpy()


def test_early_stopping_keeps_a_validation_slice_and_restores_the_best_weights():
    rng = random.Random(0)
    rows = [{"id": str(i), "input": f"row {i}", "label": rng.choice(["true", "false"]),
             "meta": {"x": [rng.gauss(0, 1) for _ in range(8)]}} for i in range(400)]  # labels are noise
    cfg = TrainingConfig(epochs=20, batch_size=8, learning_rate=0.5, seed=0, warmup_ratio=0.0,
                         early_stopping=EarlyStoppingConfig(validation_fraction=0.2, patience=2,
                                                            min_validation_rows=20))
    fit, val = validation_slice(rows, cfg)
    assert len(val) == 80 and len(fit) == 320 and not {r["id"] for r in fit} & {r["id"] for r in val}
    ev = _TinyEvaluator()
    stats = train_loop(ev, rows, cfg, progress=False)
    es = stats["early_stopping"]
    assert stats["validation_rows"] == 80 and stats["rows"] == 320
    assert es["stopped_early"] and stats["steps"] < stats["max_steps"]  # noise: validation loss stops improving
    best = min(v for _, v in es["validation_curve"])
    assert es["best_validation_loss"] == pytest.approx(best)
    # the weights left in the model are the best evaluation's, not the last step's
    logits = torch.from_numpy(ev.logits_of(ev.encode(val)))
    y = torch.tensor([ev.labels.index(r["label"]) for r in val])
    w = torch.tensor(list(stats["class_weights"].values()))
    assert float(torch.nn.functional.cross_entropy(logits, y, weight=w)) == pytest.approx(best, abs=1e-4)
    # too few rows for a slice: no early stopping, and the run says so
    small = train_loop(_TinyEvaluator(), rows[:60], TrainingConfig(max_steps=2, batch_size=8), progress=False)
    assert small["validation_rows"] == 0 and str(small["early_stopping"]).startswith("off")


# --- pair encoding and context windows ------------------------------------------------------------------
@pytest.fixture(scope="module")
def rag_rows():
    judged = "The tower was finished in 1889 by Gustave Eiffel's company."
    long = {"id": "long", "input": "When was it built?", "output": judged, "label": "false",
            "context": " ".join(f"sentence {i} about the history of Paris and its monuments." for i in range(12))}
    short = {"id": "short", "input": "Hi", "output": "Hello there.", "context": "A greeting.", "label": "true"}
    return judged, long, short


def _contains(seq, sub):
    return any(seq[i:i + len(sub)] == sub for i in range(len(seq) - len(sub) + 1))


def test_pair_encoding_reads_a_long_context_in_windows_the_same_way_in_training_and_scoring(rag_rows):
    judged, long, short = rag_rows
    metric = get_preset("context_adherence")
    ev = Evaluator.create(metric, ModelConfig(family="encoder", max_length=64, context_chunks=8), device="cpu",
                          precision="fp32")  # the pooling arithmetic, compared with the bare fp32 forward below
    tok = ev.model.tokenizer
    e_long, e_short = ev.encode([long, short])
    views = e_long.sequences()
    assert 1 < len(views) <= 8 and all(len(v) <= 64 for v in views)
    judged_ids = tok(judged, add_special_tokens=False)["input_ids"]
    assert all(_contains(v, judged_ids) for v in views)  # every window sees the whole judged field
    sep = tok.sep_token_id
    assert all(v.count(sep) >= 2 for v in views)  # two segments: [CLS] judged [SEP] context [SEP]
    ctx_ids = tok(f"context: {long['context']}", add_special_tokens=False)["input_ids"]
    seen = set()
    for v in views:  # the windows together cover the whole context
        seps = [k for k, t in enumerate(v) if t == sep]
        tail = v[seps[-2] + 1:-1]  # between the segment separator and the final [SEP]
        i = next(k for k in range(len(ctx_ids)) if ctx_ids[k:k + len(tail)] == tail)
        seen |= set(range(i, i + len(tail)))
    assert seen == set(range(len(ctx_ids))) and not e_long.truncated
    assert e_long.tokens == sum(map(len, views)) and len(e_short.sequences()) == 1
    # the row's logits are the mean of its windows' logits, in scoring and in the training forward alike
    ev.model.eval()
    with torch.no_grad():
        per_window = ev.logits_of([type(e_long)(v, len(v), False) for v in views])
        row = ev.logits_of([e_long])
        batch = ev.model.collate([e_long, e_short], "cpu")
        forward = ev.model(**batch).numpy()
    np.testing.assert_allclose(row[0], per_window.mean(0), atol=1e-5)
    np.testing.assert_allclose(forward[0], row[0], atol=1e-5)
    s = ev.score([long])[0]
    assert s.tokens == e_long.tokens and s.truncated is False
    ev.model.chunk_aggregation = "max"
    with torch.no_grad():
        np.testing.assert_allclose(ev.logits_of([e_long])[0], per_window.max(0), atol=1e-5)
    # one window only: the context is cut (head and tail around [...]) and the row says so
    one = Evaluator.create(metric, ModelConfig(family="encoder", max_length=64, context_chunks=1), device="cpu")
    e1 = one.encode([long])[0]
    assert len(e1.sequences()) == 1 and e1.truncated and "[..." in tok.decode(e1.ids) and len(e1.ids) <= 64
    assert _contains(e1.ids, judged_ids)


@pytest.mark.slow
def test_full_fine_tune_trains_saves_and_reloads(tmp_path, rag_rows):
    _, long, short = rag_rows
    rows = [dict(short, id=f"s{i}", output=f"Hello there {i}.") for i in range(8)] + \
           [dict(long, id=f"l{i}", output=f"It was built in {1880 + i}.") for i in range(8)]
    metric = get_preset("context_adherence")
    ev = Evaluator.create(metric, ModelConfig(family="encoder", max_length=64, lora=None), device="cpu",
                          precision="fp32")  # auto trains in bf16 on some CPUs: the reload is compared in fp32
    before = {k: p.detach().clone() for k, p in ev.model.net.named_parameters()}
    stats = train_loop(ev, rows, TrainingConfig(max_steps=2, batch_size=8, seed=0), progress=False)
    assert stats["learning_rate"] == pytest.approx(5e-5) and stats["head_learning_rate"] == pytest.approx(1e-3)
    changed = sum(not torch.equal(before[k], p) for k, p in ev.model.net.named_parameters())
    assert changed > 10 and math.isfinite(stats["loss_last"])  # the whole body trains, not adapters
    out = ev.save_pretrained(tmp_path / "full")
    assert (out / "model.safetensors").exists() and not (out / "adapter_model.safetensors").exists()
    again = Evaluator.from_pretrained(out, device="cpu", precision="fp32")  # auto: bf16 on some CPUs
    np.testing.assert_allclose(again.predict_proba(rows), ev.predict_proba(rows), atol=1e-5)


def test_a_long_batch_trains_in_parts_with_the_same_gradient():
    """A batch over ``TRAIN_MAX_TOKENS`` padded tokens runs in parts (a 16 x 256-token MiniLM step held
    2.3 GB); each part's summed loss over the whole batch's weight gives the very gradient of the batch."""
    from assay.train._loop import TRAIN_MAX_TOKENS, _Data, token_parts, train_step

    tokens = dict(zip(range(10, 26), [256] * 8 + [40] * 8))
    parts = token_parts(list(tokens), list(tokens.values()), max_tokens=1024)
    assert sorted(i for p in parts for i in p) == list(tokens)  # every row once
    assert all(len(p) * max(tokens[i] for i in p) <= 1024 for p in parts) and len(parts) == 3  # 8 short, 4 + 4 long
    assert token_parts([1, 2], [5000, 5000], max_tokens=1024) == [[1], [2]]  # a row over the limit goes alone
    assert TRAIN_MAX_TOKENS >= 512

    metric = get_preset("toxicity_3class")
    ev = Evaluator.create(metric, ModelConfig(max_length=64, lora=None), device="cpu", precision="fp32")
    words = "you are such a terrible and hateful person who nobody likes at all ".split()
    rows = [{"input": " ".join(words[: 3 + 3 * i]) * (1 + i % 3), "label": metric.labels[i % 3]} for i in range(12)]
    encoded = ev.encode(rows)
    y = [metric.labels.index(r["label"]) for r in rows]
    data = _Data(list(metric.labels), rows, [], y, encoded, [], torch.tensor([]),
                 torch.tensor([1.0, 2.0, 0.5]))
    params = [p for p in ev.model.parameters() if p.requires_grad]

    class Record:  # an optimizer that keeps the step's gradients
        param_groups = [{"params": params}]
        grads: list = []

        def step(self):
            self.grads = [None if p.grad is None else p.grad.clone() for p in params]

        def zero_grad(self, set_to_none=True):
            for p in params:
                p.grad = None

    ev.model.eval()  # no dropout: the two runs must see the same network
    cfg = TrainingConfig(gradient_accumulation=1)
    whole, split = Record(), Record()
    import assay.train._loop as loop

    loss_whole = train_step(ev, data, lambda: list(range(12)), whole, SimpleNamespace(step=lambda: None), cfg, 0)
    old = loop.TRAIN_MAX_TOKENS
    loop.TRAIN_MAX_TOKENS = 40  # every row or two its own part
    try:
        loss_split = train_step(ev, data, lambda: list(range(12)), split, SimpleNamespace(step=lambda: None), cfg, 0)
    finally:
        loop.TRAIN_MAX_TOKENS = old
    assert len(token_parts(list(range(12)), [e.tokens for e in encoded], max_tokens=40)) > 3
    assert loss_split == pytest.approx(loss_whole, rel=1e-5)
    assert sum(g is not None for g in whole.grads) > 10
    for a, b in zip(whole.grads, split.grads):
        assert (a is None) == (b is None)
        if a is not None:
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)
