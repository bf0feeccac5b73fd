"""Linear and hybrid artifacts: safetensors + JSON only, reloaded by Evaluator.from_pretrained, same scores."""

from __future__ import annotations

import numpy as np
import pytest

from _train_util import config, make_data

pytest.importorskip("sklearn")


@pytest.mark.parametrize("candidate,family", [("tfidf", "linear"), ("embed", "linear"), ("hybrid", "hybrid")])
def test_linear_and_hybrid_artifacts_round_trip(tmp_path, candidate, family):
    from assay.evaluator import Evaluator
    from assay.train import train

    _, test = make_data(tmp_path, n_train=80, n_test=40)
    result = train(config(tmp_path, [candidate]), progress=False)
    ev = result.evaluator
    assert ev.family == family
    files = sorted(p.name for p in result.artifact_dir.iterdir())
    assert "linear.safetensors" in files and "evaluator.json" in files
    assert not [f for f in files if f.endswith((".pkl", ".pickle", ".joblib", ".bin", ".pt"))]
    loaded = Evaluator.from_pretrained(result.artifact_dir)
    assert loaded.family == family and loaded.info["linear"]["kind"] == candidate
    rows = test + [{"input": "an input with words nobody saw, zzkq"}, {"input": ""}]
    np.testing.assert_allclose(loaded.predict_proba(rows), ev.predict_proba(rows), rtol=1e-6, atol=1e-7)
    a, b = ev.score(rows), loaded.score(rows)
    assert [s.label for s in a] == [s.label for s in b]
    assert loaded.threshold == pytest.approx(ev.threshold) and loaded.temperature == pytest.approx(ev.temperature)
    probs = loaded.predict_proba(rows)
    assert probs.shape == (len(rows), 2) and np.allclose(probs.sum(1), 1.0)


def test_tfidf_features_rebuilt_from_vocabulary_match_sklearn(tmp_path):
    """The stored vocabulary + idf + analyzer settings rebuild the fitted vectorizers exactly (no pickle)."""
    from assay.evaluator._linear import TfidfFeatures
    from assay.metrics import load_metric

    train, test = make_data(tmp_path, n_train=60, n_test=20)
    metric = load_metric("toxicity")
    fitted = TfidfFeatures(metric)
    fitted.fit(train)
    tensors, meta = fitted.state()
    import json

    rebuilt = TfidfFeatures.from_state(metric, tensors, json.loads(json.dumps(meta)))
    a, b = fitted.transform(test).toarray(), rebuilt.transform(test).toarray()
    assert a.shape == b.shape and a.any()
    np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)


def test_linear_head_from_binary_sklearn_matches_predict_proba():
    from sklearn.linear_model import LogisticRegression

    from assay.evaluator._linear import LinearHead

    rng = np.random.default_rng(0)
    x = rng.normal(size=(50, 4))
    y = (x[:, 0] > 0).astype(int) + 1  # labels 1 and 2 of three: label 0 never seen
    clf = LogisticRegression().fit(x, y)
    head = LinearHead.from_sklearn(clf, 3)
    z = head.logits(x)
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    np.testing.assert_allclose(p[:, 1:], clf.predict_proba(x), atol=1e-9)
    assert p[:, 0].max() < 1e-9


def test_linear_artifact_scores_through_the_cli(tmp_path):
    """`assay score` / `assay inspect` work on a linear artifact unchanged (same Evaluator API)."""
    import json

    from click.testing import CliRunner

    from assay.cli import cli
    from assay.train import train

    _, test = make_data(tmp_path, n_train=60, n_test=30)
    result = train(config(tmp_path, ["tfidf"]), progress=False)
    data = tmp_path / "to_score.jsonl"
    data.write_text("".join(json.dumps({"id": r["id"], "input": r["input"]}) + "\n" for r in test[:5]))
    out = tmp_path / "scores.jsonl"
    res = CliRunner().invoke(cli, ["score", str(result.artifact_dir), str(data), "-o", str(out)])
    assert res.exit_code == 0, res.output
    scored = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(scored) == 5 and all(s["label"] in ("true", "false") for s in scored)
    expect = result.evaluator.score([{"input": r["input"]} for r in test[:5]])
    assert [s["label"] for s in scored] == [s.label for s in expect]
    res = CliRunner().invoke(cli, ["inspect", str(result.artifact_dir), "--json"])
    assert res.exit_code == 0 and json.loads(res.output)["family"] == "linear"


def test_a_golden_v1_artifact_still_loads_and_scores_the_same():
    """tests/fixtures/artifacts/toxicity-tfidf-v1 was written by assay 0.1.0 (artifact and report format 1);
    every later version must load it and give the scores recorded next to it."""
    import json
    from pathlib import Path

    from assay.evaluator import Evaluator

    here = Path(__file__).parents[1] / "fixtures" / "artifacts"
    want = json.loads((here / "toxicity-tfidf-v1.expected.json").read_text())
    ev = Evaluator.from_pretrained(here / "toxicity-tfidf-v1")
    assert ev.info["format_version"] == 1 and ev.threshold == pytest.approx(want["threshold"])
    np.testing.assert_allclose(ev.predict_proba(want["rows"]), want["probabilities"], rtol=1e-6, atol=1e-9)
    assert [s.label for s in ev.score(want["rows"])] == want["labels"]
    report = json.loads((here / "toxicity-tfidf-v1" / "report.json").read_text())
    assert report["format_version"] == 1 and report["student"]["kappa"] is not None


def test_the_real_evaluator_and_the_mock_keep_the_evaluator_contract(tmp_path):
    """Evaluator and assay.testing.MockEvaluator (the one test double, plain, fitted and loaded from
    an artifact) are all `EvaluatorLike`, with the protocol's signatures, and decide labels with the
    one rule (`assay.evaluator.decide`), so fast tests on the mock stand for the real thing."""
    import inspect
    from pathlib import Path

    from assay.evaluator import Calibration, Evaluator, EvaluatorLike, Score, decide
    from assay.metrics import load_metric
    from assay.testing import MockEvaluator

    def params(fn):
        return [(p.name, p.kind, p.default) for p in inspect.signature(fn).parameters.values()]

    for cls in (Evaluator, MockEvaluator):
        for name in ("predict_proba", "score"):
            assert params(getattr(cls, name)) == params(getattr(EvaluatorLike, name)), (cls, name)
        assert isinstance(cls.calibration, property)

    metric = load_metric("toxicity")
    rows = [{"id": str(i), "input": t, "label": lab} for i, (t, lab) in
            enumerate([("you idiot", "true"), ("lovely day", "false"), ("idiot idiot", "true"), ("hello", "false")])]
    real = Evaluator.from_pretrained(Path(__file__).parents[1] / "fixtures" / "artifacts" / "toxicity-tfidf-v1")
    fitted = MockEvaluator.fit(metric, rows)
    loaded = MockEvaluator.from_pretrained(fitted.save_pretrained(tmp_path / "mock"))
    for ev in (real, fitted, loaded, MockEvaluator("toxicity", threshold=0.4)):
        assert isinstance(ev, EvaluatorLike), type(ev)
        assert isinstance(ev.calibration, Calibration) and ev.calibration.threshold == ev.threshold
        scores, probs = ev.score(rows), ev.predict_proba(rows)
        assert all(isinstance(s, Score) for s in scores)
        want = [ev.labels[decide(p, ev.labels, metric.positive, ev.threshold)] for p in probs]
        assert [s.label for s in scores] == want
    cal = real.calibration
    assert cal.method == "out-of-fold" and cal.n_rows == 40 and cal.small_sample and cal.objective == "f1"
    assert cal.temperature == real.temperature and cal.threshold_method.startswith("max macro F1")


def test_the_embedding_memo_keeps_each_precision_apart(monkeypatch):
    """The opt-in memo (benchmarks) must never hand an fp32 fit the rows a bf16 scoring pass embedded."""
    import torch

    from assay.evaluator._base_models import resolve_base
    from assay.evaluator._device import autocast
    from assay.evaluator._linear import EmbedFeatures
    from assay.metrics import load_metric

    block = EmbedFeatures(load_metric("toxicity"), resolve_base("minilm"), 32)
    rows = [{"input": "you are a wonderful person"}, {"input": "what a terrible, hateful thing to say"}]
    plain = block.transform(rows)  # no memo
    monkeypatch.setattr(EmbedFeatures, "cache", {})
    with torch.inference_mode(), autocast(torch.device("cpu"), torch.bfloat16):
        low = block.transform(rows)
    again = block.transform(rows)
    assert {k[1] for k in EmbedFeatures.cache} == {"fp32", str(torch.bfloat16)} and len(EmbedFeatures.cache) == 4
    np.testing.assert_array_equal(again, plain)  # fp32 rows from the memo are the fp32 forward's own
    assert not np.array_equal(low, plain)  # the bf16 pass differs (and is kept apart)


def test_embed_block_of_a_trace_metric_reads_the_trajectory_s_end_and_the_artifact_keeps_it(tmp_path):
    """A trajectory longer than max_length: the embed block of a trace metric reads its latest turns (where
    the outcome is), records that in evaluator.json, and reads the same tokens after reload; an artifact
    from before the setting reads head 2/3 + tail 1/3, as it was trained."""
    import json
    import random

    from _train_util import write_rows

    from assay.config import config_from_dict
    from assay.evaluator import Evaluator
    from assay.evaluator._artifact import read_info
    from assay.train import train

    rng = random.Random(0)

    def row(i: int) -> dict:
        ok = i % 2 == 0
        turns = [{"role": "user", "content": "hello i need to change my booking " + " ".join(
            rng.choice(["please", "flight", "seat", "date", "today", "thanks"]) for _ in range(60))}]
        turns.append({"role": "assistant", "content": "your booking is changed" if ok else "sorry that failed"})
        return {"id": f"r{i}", "input": "change booking", "context": "policy", "output": turns,
                "label": "true" if ok else "false"}

    write_rows(tmp_path / "test.jsonl", [row(i) for i in range(60)])
    cfg = config_from_dict({"metric": "agent_task_success", "output": "out",
                            "data": {"test_set": "test.jsonl", "seed_fraction": 0.5, "group_by": "none"},
                            "model": {"family": "encoder", "max_length": 32},
                            "train": {"candidates": ["embed"], "cv_folds": 3, "seed": 0, "grounding": False},
                            "report": {"bootstrap": 20, "latency_rows": 2}}, base_dir=tmp_path)
    result = train(cfg, progress=False)
    info = read_info(result.artifact_dir)
    assert info.linear.keep_end == {"embed": True}
    rows = [row(i) for i in range(100, 104)]
    block = result.evaluator.model.blocks["embed"]
    text = block.tokenizer.decode(block.encode(rows[:1])[0].ids)
    assert "your booking is changed" in text and "hello" not in text
    loaded = Evaluator.from_pretrained(result.artifact_dir)
    assert loaded.model.blocks["embed"].keep_end
    assert [e.ids for e in loaded.model.blocks["embed"].encode(rows)] == [e.ids for e in block.encode(rows)]
    np.testing.assert_allclose(loaded.predict_proba(rows), result.evaluator.predict_proba(rows), rtol=1e-6, atol=1e-7)

    raw = info.to_dict()
    del raw["linear"]["keep_end"]  # an artifact written before the setting existed
    (result.artifact_dir / "evaluator.json").write_text(json.dumps(raw))
    old = Evaluator.from_pretrained(result.artifact_dir).model.blocks["embed"]
    assert not old.keep_end and "hello" in old.tokenizer.decode(old.encode(rows[:1])[0].ids)
