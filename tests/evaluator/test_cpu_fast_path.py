"""Issue 9, the CPU fast path: bf16 where the CPU has it (detected), int8 scoring, the thread default
from affinity and cgroup quota, and length-aware batching with rows tokenised once."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from _train_util import toy_rows  # noqa: E402

from assay import _cpu  # noqa: E402
from assay.config import ModelConfig, TrainingConfig  # noqa: E402
from assay.errors import AssayError  # noqa: E402
from assay.evaluator import Evaluator, select_dtype  # noqa: E402
from assay.metrics import get_preset  # noqa: E402
from assay.stats import cohen_kappa  # noqa: E402
from assay.train import train_loop  # noqa: E402

# Agreement with fp32 on the held-out rows of the toy example. Measured over three head seeds: bf16
# max |dp| <= 0.0008 on every row; int8 (per-channel dynamic) mean |dp| <= 0.0044 and 99th percentile
# <= 0.022, no label changed, but one row of 200 moved by 0.37 under one seed: int8's bound holds for
# nearly all rows, not each. A barely trained model (20 steps) had 2 of 200 labels change under int8.
BF16_ATOL = 0.01  # every row
INT8_ATOL, INT8_WITHIN, INT8_MEAN = 0.05, 0.98, 0.02  # |dp| <= 0.05 on >= 98% of rows, mean |dp| <= 0.02
MIN_SAME_LABELS = 0.98  # share of rows with the same label as fp32
KAPPA_TOL = 0.01


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    """A small encoder trained on the toy toxicity task (1 thread: seconds), its artifact and held-out rows."""
    threads = torch.get_num_threads()
    train = toy_rows(160, seed=0, noise=0.0)
    held = toy_rows(200, seed=1, noise=0.1, prefix="h")  # label noise: a kappa below 1 to compare
    torch.manual_seed(0)  # the head's initial weights: the same model whichever tests ran before
    ev = Evaluator.create(get_preset("toxicity"), ModelConfig(family="encoder", max_length=32), device="cpu")
    train_loop(ev, train, TrainingConfig(max_steps=40, batch_size=16, seed=0, learning_rate=5e-4,
                                         early_stopping=None, num_threads=1), progress=False)
    out = ev.save_pretrained(tmp_path_factory.mktemp("toy") / "artifact")
    fp32 = Evaluator.from_pretrained(out, device="cpu", precision="fp32")
    yield out, held, fp32, fp32.predict_proba(held)
    torch.set_num_threads(threads)


def _agreement(ev: Evaluator, probs: np.ndarray, ref: np.ndarray, held: list[dict]) -> tuple[float, float]:
    """(share of rows with the fp32 label, |kappa - fp32 kappa| against the held-out labels)."""
    labels = list(ev.labels)
    y = np.array([labels.index(r["label"]) for r in held])
    a, b = np.array(ev.decide(probs)), np.array(ev.decide(ref))
    return float((a == b).mean()), abs(cohen_kappa(y, a, len(labels)) - cohen_kappa(y, b, len(labels)))


# --- precision -------------------------------------------------------------------------------------
def test_cpu_flags_are_read_from_cpuinfo(tmp_path):
    info = tmp_path / "cpuinfo"
    for flags, native in (("fpu sse avx2 fma", False), ("avx2 avx512f avx512_bf16", True), ("avx2 amx_bf16", True)):
        info.write_text(f"processor\t: 0\nmodel name\t: Some CPU\nflags\t\t: {flags}\n\nprocessor\t: 1\n")
        assert _cpu.native_bf16(_cpu.cpu_flags(str(info))) is native
    assert _cpu.cpu_flags(str(tmp_path / "missing")) == frozenset()


def test_auto_precision_is_bf16_only_where_the_cpu_has_it(monkeypatch):
    cpu = torch.device("cpu")
    monkeypatch.setattr(_cpu, "native_bf16", lambda flags=None: True)
    assert select_dtype("auto", cpu) == torch.bfloat16
    assert select_dtype("auto", cpu, training=True) == torch.bfloat16  # training too, on such a CPU
    assert select_dtype("fp32", cpu, training=True) is None
    monkeypatch.setattr(_cpu, "native_bf16", lambda flags=None: False)
    assert select_dtype("auto", cpu) is None
    assert select_dtype("auto", cpu, training=True) is None  # emulated bf16 would be slower than fp32
    assert select_dtype("int8", cpu) is None  # fp32 autocast-wise; the Linear layers are quantised
    for bad, kw in (("int8", {"training": True}), ("fp16", {}), ("fp8", {})):
        with pytest.raises(AssayError) as err:
            select_dtype(bad, cpu, **kw)
        assert err.value.code == "invalid_config"
    with pytest.raises(AssayError):
        select_dtype("int8", torch.device("cuda"))


def test_auto_precision_on_this_cpu_follows_its_flags_and_agrees_with_fp32(toy):
    out, held, fp32, ref = toy
    native = _cpu.native_bf16()
    assert native == bool(set(_cpu.BF16_FLAGS) & _cpu.cpu_flags())  # the detection, asserted either way
    auto = Evaluator.from_pretrained(out, device="cpu")
    if not native:  # AVX2-only: auto falls back to fp32 and scores exactly as fp32
        assert auto.dtype is None
        np.testing.assert_array_equal(auto.predict_proba(held), ref)
        return
    assert auto.dtype == torch.bfloat16
    probs = auto.predict_proba(held)
    np.testing.assert_allclose(probs, ref, atol=BF16_ATOL)
    same, dkappa = _agreement(auto, probs, ref, held)
    assert same >= MIN_SAME_LABELS and dkappa <= KAPPA_TOL, (same, dkappa)


def test_int8_scoring_agrees_with_fp32(toy, tmp_path):
    out, held, fp32, ref = toy
    int8 = Evaluator.from_pretrained(out, device="cpu", precision="int8")
    assert any("quantized" in type(m).__module__ for m in int8.model.net.modules())
    probs = int8.predict_proba(held)
    diff = np.abs(probs - ref).max(axis=1)
    assert (diff <= INT8_ATOL).mean() >= INT8_WITHIN and diff.mean() <= INT8_MEAN, np.sort(diff)[-5:]
    same, dkappa = _agreement(int8, probs, ref, held)
    assert same >= MIN_SAME_LABELS and dkappa <= KAPPA_TOL, (same, dkappa)
    assert [s.label for s in int8.score(held[:8])] == [int8.labels[i] for i in int8.decide(probs[:8])]
    with pytest.raises(AssayError):
        int8.save_pretrained(tmp_path / "quantised")  # never written as an artifact


# --- threads ---------------------------------------------------------------------------------------
def test_usable_cores_is_the_affinity_capped_by_the_cgroup_quota():
    assert _cpu.usable_cores({0, 1, 2, 3}, None) == 4
    assert _cpu.usable_cores(range(8), 1.5) == 2  # a quota of 1.5 CPUs: 2 threads
    assert _cpu.usable_cores({0, 1}, 4.0) == 2
    assert _cpu.usable_cores({5}, 0.25) == 1
    assert _cpu.parse_cpu_max("max 100000") is None
    assert _cpu.parse_cpu_max("200000 100000") == 2.0
    assert _cpu.parse_cpu_max("") is None and _cpu.parse_cpu_max("garbage x") is None
    assert _cpu.parse_cfs("-1", "100000") is None and _cpu.parse_cfs("50000", "100000") == 0.5


def test_the_quota_is_read_from_cgroup_v2_then_v1(tmp_path, monkeypatch):
    v2, quota, period = tmp_path / "cpu.max", tmp_path / "quota", tmp_path / "period"
    monkeypatch.setattr(_cpu, "CPU_MAX", str(v2))
    monkeypatch.setattr(_cpu, "CFS_QUOTA", str(quota))
    monkeypatch.setattr(_cpu, "CFS_PERIOD", str(period))
    assert _cpu.cgroup_quota() is None  # no files: no quota
    quota.write_text("300000\n")
    period.write_text("100000\n")
    assert _cpu.cgroup_quota() == 3.0
    v2.write_text("150000 100000\n")
    assert _cpu.cgroup_quota() == 1.5
    assert _cpu.usable_cores(range(16)) == 2


def test_apply_threads_defaults_to_the_usable_cores_and_keeps_explicit_counts(monkeypatch):
    before = torch.get_num_threads()
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv("MKL_NUM_THREADS", raising=False)
    try:
        monkeypatch.setattr(_cpu, "usable_cores", lambda *a, **k: 1)
        torch.set_num_threads(2)
        assert _cpu.apply_threads() == 1  # lowered to what the process may use
        assert _cpu.apply_threads(2) == 2  # train.num_threads wins
        monkeypatch.setenv("OMP_NUM_THREADS", "2")
        assert _cpu.apply_threads() == 2  # the user's environment wins
        monkeypatch.delenv("OMP_NUM_THREADS")
        monkeypatch.setattr(_cpu, "usable_cores", lambda *a, **k: 4)
        torch.set_num_threads(1)
        assert _cpu.apply_threads() == 1  # never raised above a count already set
    finally:
        torch.set_num_threads(before)


def test_serve_threads_leave_the_event_loop_a_core(monkeypatch):
    for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", _cpu.SERVE_THREADS_ENV):
        monkeypatch.delenv(k, raising=False)
    assert [_cpu.serve_threads(n) for n in (1, 2, 4, 16)] == [1, 1, 3, 15]
    monkeypatch.setattr(_cpu, "usable_cores", lambda *a, **k: 2)
    assert _cpu.serve_threads() == 1
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    assert _cpu.serve_threads() is None  # the user's environment: torch's count left alone
    monkeypatch.setenv(_cpu.SERVE_THREADS_ENV, "2")
    assert _cpu.serve_threads() == 2  # assay serve --threads wins
    for bad in ("0", "two"):
        monkeypatch.setenv(_cpu.SERVE_THREADS_ENV, bad)
        with pytest.raises(AssayError, match="ASSAY_SERVE_THREADS"):
            _cpu.serve_threads()


class _LinearStub(torch.nn.Module):
    """A linear-family model's scoring surface: records the autocast state its features are computed in."""

    family = "linear"
    max_length = 16

    def __init__(self):
        super().__init__()
        self.seen: list = []

    def encode(self, rows):
        from assay.evaluator._linear import RowEncoded

        return [RowEncoded([1, 2], 2, False, row=r) for r in rows]

    def logits_encoded(self, encoded):
        on = torch.is_autocast_enabled("cpu")
        self.seen.append((on, torch.get_autocast_dtype("cpu") if on else None, torch.is_inference_mode_enabled()))
        return np.zeros((len(encoded), 2), dtype=np.float32)


@pytest.mark.parametrize("precision,dtype", [("fp32", None), ("bf16", "bfloat16")])
def test_linear_families_embed_at_the_scoring_precision(precision, dtype):
    model = _LinearStub()
    ev = Evaluator(get_preset("toxicity"), model, device="cpu", precision=precision)
    ev.score([{"input": "a"}, {"input": "b"}])
    ev.forward_runner([{"input": "a"}], 8)()
    want = (dtype is not None, getattr(torch, dtype) if dtype else None, True)
    assert model.seen == [want, want]


def test_the_auto_precision_of_a_linear_family_follows_the_cpu(monkeypatch):
    for flags, dtype in (({"avx2"}, None), ({"avx2", "avx512_bf16"}, torch.bfloat16)):
        monkeypatch.setattr(_cpu, "cpu_flags", lambda path=_cpu.CPUINFO, f=flags: frozenset(f))
        model = _LinearStub()
        Evaluator(get_preset("toxicity"), model, device="cpu").score([{"input": "a"}])
        assert model.seen[0][1] == dtype


# --- length-aware batching -------------------------------------------------------------------------
def _varied(held: list[dict]) -> list[dict]:
    """Rows of very different lengths (some past max_length), in no length order."""
    out = []
    for i, r in enumerate(held[:23]):
        out.append({**r, "input": " ".join([r["input"]] * (1 + (i * 7) % 5))})
    return out


def test_batches_are_sorted_by_length_padded_to_their_longest_and_restored(toy, monkeypatch):
    from assay.evaluator._chunks import PAD_MULTIPLE, padded_width

    out, held, ev, _ = toy
    rows = _varied(held)
    encoded = ev.encode(rows)
    widths, lengths = [], []
    collate = ev.model.collate

    def spy(batch, device):
        widths.append(max(len(s) for e in batch for s in e.sequences()))
        lengths.append([e.tokens for e in batch])
        got = collate(batch, device)
        # padded to the batch's longest rounded up to PAD_MULTIPLE (few shapes for oneDNN's caches), not max_length
        assert got["input_ids"].shape[1] == padded_width(widths[-1]) < widths[-1] + PAD_MULTIPLE
        return got

    monkeypatch.setattr(ev.model, "collate", spy)
    batched = ev.logits_of(encoded, batch_size=4)
    assert widths == sorted(widths) and min(widths) < ev.model.max_length  # shortest rows first
    assert all(x <= y for a, b in zip(lengths, lengths[1:]) for x in a for y in b)
    monkeypatch.setattr(ev.model, "collate", collate)
    one_by_one = np.concatenate([ev.logits_of([e], batch_size=1) for e in encoded])  # the unsorted path
    np.testing.assert_allclose(batched, one_by_one, atol=1e-5)
    perm = np.random.default_rng(0).permutation(len(rows))
    shuffled = ev.logits_of([encoded[i] for i in perm], batch_size=4)
    np.testing.assert_allclose(shuffled, batched[perm], atol=1e-5)  # each row keeps its own logits


def test_rows_that_fit_are_tokenised_once_and_encode_as_before(toy):
    from assay.evaluator._common import render_fitted

    out, held, ev, _ = toy
    model = ev.model
    real = model.tokenizer

    class Counting:
        calls = 0

        def __call__(self, *a, **k):
            Counting.calls += 1
            return real(*a, **k)

        def __getattr__(self, name):
            return getattr(real, name)

    rows = _varied(held)
    model.tokenizer = Counting()
    try:
        fast = [model._encode_compact(r) for r in rows]
        for r, e in zip(rows, fast):  # the policy's own path: render fitted to the budget, then tokenise
            text, cut = render_fitted(model.view, r, model.budget, real)
            ids = real(text)["input_ids"]
            if len(ids) > model.max_length:
                ids, cut = real(text, truncation=True, max_length=model.max_length)["input_ids"], True
            assert (e.ids, e.tokens, e.truncated) == (ids, len(ids), cut)
        assert any(e.truncated for e in fast) and not all(e.truncated for e in fast)
        Counting.calls = 0
        model._encode_compact(held[0])  # a short row
        assert Counting.calls == 1
    finally:
        model.tokenizer = real


def test_the_report_times_the_bare_forward_next_to_scoring():
    """The speed section's floor: the encoder's bare forward on pre-tokenised rows, per batch size."""
    from assay.config import ModelConfig
    from assay.evaluator import Evaluator
    from assay.metrics import get_preset
    from assay.report import measure_speed

    ev = Evaluator.create(get_preset("toxicity"), ModelConfig(family="encoder", max_length=32), device="cpu")
    rows = [{"input": f"row number {i} says {'hello ' * (i % 5)}"} for i in range(24)]
    out = measure_speed(ev.predict_proba, rows, batch_sizes=(1, 8), floor=ev.forward_runner)
    assert [b["batch_size"] for b in out["batches"]] == [1, 8]
    assert all(b["floor_rows_per_s"] > 0 and b["ratio_to_floor"] > 0 for b in out["batches"])
    runner = ev.forward_runner(rows, 8)
    assert runner() is None  # a forward pass over prepared batches, nothing decoded or calibrated
