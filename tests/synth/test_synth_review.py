"""Human review of generated rows: stratified sample, decisions, feedback into the next round."""

from __future__ import annotations

import threading
from collections import Counter

import pytest

from _synth_util import make_config
from assay.data import row_hash
from assay.errors import AssayError
from assay.providers._mock import MockProvider
from assay.synth import NearDuplicateIndex, ReviewLog, generate_training_set, sample_for_review


def _stratum(r):
    return (r["label"], r["meta"]["lineage"]["strategy"])


def test_review_sample_is_50_rows_stratified(tmp_path):
    cfg, seeds, held = make_config(tmp_path, generate={"target_size": 200})
    res = generate_training_set(cfg, seeds, held)
    sample = ReviewLog(res.data_dir).sample()
    assert len(sample) == 50 == res.report["review_sample"]
    assert len({r["id"] for r in sample}) == 50 and {r["id"] for r in sample} <= {r["id"] for r in res.rows}
    full, got = Counter(map(_stratum, res.rows)), Counter(map(_stratum, sample))
    assert set(got) == set(full)  # every (label, strategy) stratum is represented
    for k, n in full.items():
        assert abs(got[k] - 50 * n / len(res.rows)) < 2  # in proportion to its size
    assert Counter(r["label"] for r in sample) == {"true": 25, "false": 25}


def test_sample_for_review_small_sets_and_zero():
    rows = [{"id": str(i), "label": "true" if i % 3 else "false", "meta": {"lineage": {"strategy": "create"}}}
            for i in range(12)]
    assert len(sample_for_review(rows, 50)) == 12
    assert sample_for_review(rows, 0) == []
    s = sample_for_review(rows, 4, seed=1)
    assert len(s) == 4 and {r["label"] for r in s} == {"true", "false"}
    assert s == sample_for_review(rows, 4, seed=1)  # deterministic


def test_decisions_are_recorded_and_validated(tmp_path):
    cfg, seeds, held = make_config(tmp_path)
    res = generate_training_set(cfg, seeds, held)
    log = ReviewLog(res.data_dir)
    ids = [r["id"] for r in log.sample()]
    log.record(ids[:2], "accept")
    log.record([ids[1]], "reject", "labels look wrong")  # the latest decision wins
    st = log.status()
    assert (st["accept"], st["reject"], st["pending"]) == (1, 1, len(ids) - 2)
    assert st["feedback"] == ["labels look wrong (1 row)"]
    with pytest.raises(AssayError, match="reason"):
        log.record([ids[2]], "regenerate")
    with pytest.raises(AssayError, match="accept"):
        log.record([ids[2]], "maybe")
    with pytest.raises(AssayError, match="unknown ids"):
        log.record(["nope"], "accept")
    assert len(log.history()) == 3


def test_reasons_reach_the_next_prompts_and_rejected_content_is_excluded(tmp_path, monkeypatch):
    cfg, seeds, held = make_config(tmp_path)
    first = generate_training_set(cfg, seeds, held)
    log = ReviewLog(first.data_dir)
    sample = log.sample()
    rejected = sample[0]
    log.record([rejected["id"]], "reject", "off-topic")
    log.record([sample[1]["id"]], "regenerate", "too repetitive: every row mentions the harbor")

    prompts: list[str] = []
    lock = threading.Lock()
    original = MockProvider._send

    def recording(self, payload):
        with lock:
            prompts.append(payload["messages"][-1]["content"])
        return original(self, payload)

    monkeypatch.setattr(MockProvider, "_send", recording)
    # a generator that keeps writing the rejected row again (exactly, or with one typo)
    gen = {"options": {"echo_texts": [rejected["input"]], "echo_rate": 0.3}}
    cfg2, _, _ = make_config(tmp_path, generate=gen)
    second = generate_training_set(cfg2, seeds, held)
    gen_prompts = [p for p in prompts if "<seeds>" in p]
    assert gen_prompts
    for p in gen_prompts:
        assert "A reviewer flagged problems" in p
        assert "off-topic (1 row)" in p and "too repetitive: every row mentions the harbor (1 row)" in p
    assert second.report["dropped"].get("rejected_in_review", 0) > 0
    assert row_hash(rejected) not in {row_hash(r) for r in second.rows}
    near = NearDuplicateIndex(cfg.generate.near_duplicate_threshold)
    near.add("rejected", rejected["input"])
    assert not any(near.match(r["input"]) for r in second.rows)  # one-typo copies are left out too
    assert second.report["feedback"] == log.feedback()
