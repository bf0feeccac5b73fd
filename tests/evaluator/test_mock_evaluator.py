"""assay.testing.MockEvaluator, the one evaluator double (monitor, registry, server and report tests use it):
its probability rules, call counts, word-count model round trip and calibration record."""

from __future__ import annotations

import json

import numpy as np
import pytest

from assay.evaluator import Calibration, EvaluatorLike, Score
from assay.metrics import get_preset, render
from assay.testing import KIND, MockEvaluator

ROWS = [{"id": "a", "input": "call me on 555-123-4567"}, {"id": "b", "input": "hello there"},
        {"id": "c", "input": "my email is x@example.com"}]


def test_hash_rule_is_deterministic_and_records_prompts():
    ev = MockEvaluator("pii")
    assert isinstance(ev, EvaluatorLike) and ev.labels == ("true", "false") and ev.threshold == 0.5
    p = ev.predict_proba(ROWS)
    assert p.shape == (3, 2) and np.allclose(p.sum(axis=1), 1)
    np.testing.assert_array_equal(p, MockEvaluator("pii").predict_proba(ROWS))
    assert ev.prompts == [render(ev.metric, r) for r in ROWS]
    scores = ev.score(ROWS, batch_size=2)
    assert all(isinstance(s, Score) for s in scores) and [s.score for s in scores] == list(p[:, 0])
    assert [s.label for s in scores] == ["true" if x >= 0.5 else "false" for x in p[:, 0]]
    assert scores[1].tokens == 2
    assert ev.calls == 2 and ev.batch_sizes == [3, 3]


def test_fixed_scores_and_threshold_skip_the_model():
    ev = MockEvaluator("pii", threshold=0.15, scores={"a": 0.2, "b": 0.1, "c": 0.15})
    assert [s.label for s in ev.score(ROWS)] == ["true", "false", "true"]
    assert ev.prompts == []
    assert ev.predict_proba([]).shape == (0, 2)


def test_keywords_proba_and_categorical_vectors():
    metric = get_preset("toxicity_3class")
    ev = MockEvaluator(metric, threshold=0.9, keywords={"Hate": [0.7, 0.2, 0.1], "idiot": 0.6},
                       default=[0.1, 0.1, 0.8])
    assert ev.threshold is None  # categorical: argmax
    p = ev.predict_proba([{"input": "I hate it"}, {"input": "idiot"}, {"input": "fine"}])
    np.testing.assert_allclose(p, [[0.7, 0.2, 0.1], [0.6, 0.2, 0.2], [0.1, 0.1, 0.8]])
    assert [s.label for s in ev.score([{"input": "idiot"}])] == ["hate_speech"]
    fn = MockEvaluator("toxicity", proba=lambda r: 0.9 if "idiot" in r["input"] else 0.2)
    assert [s.label for s in fn.score([{"input": "you idiot"}, {"input": "hi"}])] == ["true", "false"]
    with pytest.raises(ValueError, match="2 probabilities for 3 labels"):
        MockEvaluator(metric, proba=lambda r: [0.5, 0.5]).predict_proba([{"input": "x"}])
    with pytest.raises(ValueError, match="proba function"):
        fn.save_pretrained("unused")


def test_fitted_word_model_round_trips_through_an_artifact(tmp_path):
    rows = [{"input": t, "label": lab} for t, lab in
            [("you idiot", "true"), ("idiot fool", "true"), ("lovely day", "false"), ("hello friend", "false")]]
    ev = MockEvaluator.fit("toxicity", rows)
    assert ev.threshold == 0.5 and ev.info["kind"] == KIND
    assert [s.label for s in ev.score([{"input": "idiot"}, {"input": "lovely"}])] == ["true", "false"]
    back = MockEvaluator.from_pretrained(ev.save_pretrained(tmp_path / "art"))
    probe = [{"input": "what an idiot"}, {"input": "a lovely friend"}, {"input": "unknown words"}]
    np.testing.assert_allclose(back.predict_proba(probe), ev.predict_proba(probe))
    kw = MockEvaluator("toxicity", keywords={"idiot": 0.9}, default=0.1, threshold=0.3)
    again = MockEvaluator.from_pretrained(kw.save_pretrained(tmp_path / "kw"))
    assert again.threshold == 0.3 and again.predict_proba(probe)[:, 0].tolist() == [0.9, 0.1, 0.1]
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "evaluator.json").write_text(json.dumps({"kind": "linear"}))
    with pytest.raises(ValueError, match="not a MockEvaluator artifact"):
        MockEvaluator.from_pretrained(tmp_path / "other")


def test_calibration_record():
    ev = MockEvaluator("pii", threshold=0.3, calibration=Calibration(temperature=1.3, n_rows=20, method="slice",
                                                                     small_sample=True))
    cal = ev.calibration
    assert cal.temperature == 1.3 and cal.threshold == 0.3 and cal.small_sample and cal.method == "slice"
    assert Calibration.from_dict(cal.to_dict()) == cal
    assert MockEvaluator("pii").calibration.method == "none"


def test_one_threshold_rule_in_the_source():
    """The decision rule is written once (evaluator/_contract.py: decide and its row-wise form); the report,
    routing and every evaluator call it instead of comparing P(positive) with a threshold themselves."""
    import re
    from pathlib import Path

    import numpy as np

    from assay.evaluator import decide, decide_rows

    src = Path(__file__).resolve().parents[2] / "src" / "assay"
    rule = re.compile(r"\[[^\]]*pos[^\]]*\]\s*>=?\s*(self\.)?threshold|score\s*>=\s*threshold")
    hits = [f"{p.relative_to(src)}:{i}" for p in sorted(src.rglob("*.py"))
            for i, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1)
            if rule.search(line) and not line.lstrip().startswith(("#", "-", '"', "'"))
            and not any(k in line for k in ("help=", "description="))]  # option help texts say the rule in words
    assert all(h.startswith("evaluator/_contract.py") for h in hits), hits
    probs = np.random.default_rng(0).random((50, 2))
    probs /= probs.sum(axis=1, keepdims=True)
    for t in (0.2, 0.5, 0.8):
        assert list(decide_rows(probs, ["false", "true"], "true", t)) == [
            decide(p, ["false", "true"], "true", t) for p in probs]
