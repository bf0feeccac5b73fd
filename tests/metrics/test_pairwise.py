"""Pairwise metrics (issue 14 item 5): prompt + responses A and B -> a / b / tie, both orders."""

from __future__ import annotations

import numpy as np
import pytest

from assay import AssayError
from assay.data import row_hash, to_rows, validate_rows
from assay.metrics import get_preset, load_metric, render, swap_pair

GOOD = ["Paris is the capital of France.", "Water boils at 100 degrees Celsius at sea level.",
        "There are seven continents.", "The Pacific is the largest ocean.", "Light is faster than sound."]
BAD = ["I don't know, maybe Berlin?", "lol no idea", "Ask someone else.", "Whatever.", "Not sure, sorry."]


def _pairs(n: int = 40) -> list[dict]:
    rows = []
    for i in range(n):
        good, bad = GOOD[i % 5], BAD[(i * 3) % 5]
        prompt = f"Question {i}: tell me a fact."
        if i % 5 == 4:
            rows.append({"id": f"p{i}", "input": prompt, "output": good, "output_b": good + " Indeed.", "label": "tie"})
        elif i % 2:
            rows.append({"id": f"p{i}", "input": prompt, "output": good, "output_b": bad, "label": "a"})
        else:
            rows.append({"id": f"p{i}", "input": prompt, "output": bad, "output_b": good, "label": "b"})
    return rows


def test_pairwise_preset_prompt_and_validation():
    m = get_preset("pairwise_preference")
    assert m.shape.value == "pairwise" and m.labels == ("a", "b", "tie")
    assert m.fields == ("input", "output", "output_b")
    assert m.swap_permutation() == [1, 0, 2]
    text = render(m, {"input": "Q", "output": "first", "output_b": "second"})
    assert text.index("first") < text.index("second") and "Response B" in text
    rows = to_rows([{"prompt": "Q", "a": "x", "b": "y", "winner": "A"}, {"prompt": "Q2", "a": "x", "winner": "tie"}],
                   columns={"input": "prompt", "output": "a", "output_b": "b", "label": "winner"},
                   label_map={"A": "a", "B": "b"})
    v = validate_rows(rows, m)
    assert len(v.rows) == 1 and v.errors[0].field == "output_b"  # both responses are required
    assert row_hash(rows[0]) != row_hash(swap_pair(rows[0]))  # B is part of the content
    with pytest.raises(AssayError) as err:  # a pairwise metric says which label is A and which is B
        load_metric({"name": "pw", "shape": "pairwise", "output": "categorical", "labels": ["x", "y"],
                     "prompt": "{input} {output} {output_b}"})
    assert "'a' and 'b'" in str(err.value)


def test_swap_maps_the_label_and_keeps_ties():
    r = {"input": "q", "output": "A", "output_b": "B", "label": "a"}
    s = swap_pair(r)
    assert (s["output"], s["output_b"], s["label"]) == ("B", "A", "b")
    assert swap_pair({**r, "label": "tie"})["label"] == "tie"
    assert swap_pair(s) == r


def test_pairwise_trains_and_scores_both_orders(tmp_path):
    torch = pytest.importorskip("torch")
    from assay.config import ModelConfig, TrainingConfig
    from assay.evaluator import Evaluator
    from assay.train import train_loop

    torch.manual_seed(0)
    m = get_preset("pairwise_preference")
    rows = _pairs(40)
    ev = Evaluator.create(m, ModelConfig(family="encoder", max_length=64), device="cpu",
                          precision="fp32")  # exact mirror images: bf16 (auto on some CPUs) rounds by batch padding
    enc = ev.encode(rows[:1])[0]
    assert enc.swapped == [False, True] and len(enc.sequences()) == 2  # each row is read in both orders
    stats = train_loop(ev, rows, TrainingConfig(max_steps=3, batch_size=8, seed=0, early_stopping=None),
                       progress=False)
    assert stats["steps"] == 3 and np.isfinite(stats["loss_last"])
    swapped = [swap_pair(r) for r in rows]
    p = ev.predict_proba(rows[:12], batch_size=5)
    q = ev.predict_proba(swapped[:12], batch_size=7)
    # (B, A) scores are the mirror image of (A, B): P(a) and P(b) exchange, P(tie) stays
    np.testing.assert_allclose(q, p[:, [1, 0, 2]], atol=1e-5)
    scores = ev.score(rows[:3])
    assert all(s.label in ("a", "b", "tie") and s.tokens > 0 for s in scores)
    out = ev.save_pretrained(tmp_path / "pw")
    again = Evaluator.from_pretrained(out, device="cpu", precision="fp32")  # auto: bf16 on some CPUs
    np.testing.assert_allclose(again.predict_proba(rows[:12]), p, atol=1e-5)


def _real_pairs(n: int) -> list[dict]:
    """Pairwise rows from real tweets (Davidson et al., tests/fixtures/data): "which reply is less
    offensive", A and B two tweets, ``a`` / ``b`` when one is ``neither`` and the other is not, else ``tie``."""
    import json

    from conftest import FIXTURE_DATA

    tweets = [json.loads(line) for line in (FIXTURE_DATA / "toxicity_davidson.jsonl").read_text().splitlines()]
    rows = []
    for i in range(n):
        a, b = tweets[i], tweets[(i * 7 + 3) % len(tweets)]
        clean_a, clean_b = a["label"] == "neither", b["label"] == "neither"
        label = "tie" if clean_a == clean_b else ("a" if clean_a else "b")
        rows.append({"id": f"pw{i}", "input": "Which reply is less offensive?", "output": a["input"],
                     "output_b": b["input"], "label": label})
    return rows


@pytest.mark.slow
@pytest.mark.parametrize("family,candidates", [("linear", ["tfidf"]), ("linear", ["embed"]),
                                                ("linear", ["tfidf", "embed", "hybrid"]),
                                                ("encoder", ["encoder"]), ("decoder", ["encoder"]),
                                                ("pooled", ["encoder", "tfidf"])])
def test_every_family_scores_pairs_order_invariant_on_real_rows(tmp_path, monkeypatch, family, candidates):
    """P(a | A, B) = P(b | B, A) and P(tie) the same, exactly (to float precision), after calibration with a
    label-prior shift, for every family assay ships (``pooled``: the encoder pooled with TF-IDF)."""
    from assay.config import config_from_dict
    from assay.train import _select
    from assay.train._fit import fit_and_select

    if family == "pooled":  # the pool is shipped whatever the rule says (tests/train/test_select.py tests the rule)
        real = _select._encoder_against
        monkeypatch.setattr(_select, "POOL_MIN_ROWS", 1)
        monkeypatch.setattr(_select, "_encoder_against", lambda *a: (real(*a), _select.POOLED)[1])

    metric = get_preset("pairwise_preference")
    rows = _real_pairs(150 if family in ("linear", "pooled") else 48)
    model = {"family": "decoder" if family == "decoder" else "encoder", "max_length": 96}
    cfg = config_from_dict({"metric": "pairwise_preference", "data": {"test_set": "unused.jsonl"}, "model": model,
                            "train": {"candidates": candidates, "cv_folds": 3, "seed": 0, "max_steps": 2,
                                      "batch_size": 4, "early_stopping": None}}, base_dir=tmp_path)
    prior = {"a": 0.5, "b": 0.3, "tie": 0.2}  # a skewed target prior: the shift must not favour a position
    ev, _, _, summary = fit_and_select(cfg, metric, rows, rows[:-16], rows[-16:], prior, progress=False)
    assert family != "pooled" or list(ev.model.blocks) == ["tfidf", "encoder"]
    scored = rows[:24]
    p = ev.predict_proba(scored)
    q = ev.predict_proba([swap_pair(r) for r in scored])
    np.testing.assert_allclose(q, p[:, metric.swap_permutation()], atol=1e-5)
    assert len({s.label for s in ev.score(scored)}) >= 1 and np.ptp(p[:, 0]) > 0  # not a constant model
