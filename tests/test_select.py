"""Model selection (train.candidates): k-fold CV on the training rows only, reproducible, one candidate possible."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest

pytest.importorskip("sklearn")

GOOD = ["kind", "thanks", "lovely", "great", "welcome", "friend", "happy", "calm", "sunny", "glad"]
BAD = ["stupid", "hate", "idiot", "awful", "ugly", "trash", "loser", "dumb", "nasty", "gross"]
FILLER = ["the", "a", "day", "you", "we", "really", "today", "this", "that", "is", "so", "very", "my", "team"]


def _text(rng: random.Random, toxic: bool, extra: str = "", noise: float = 0.25) -> str:
    words = [rng.choice(FILLER) for _ in range(rng.randint(4, 8))]
    side = BAD if (toxic != (rng.random() < noise)) else GOOD  # a learnable but noisy signal
    words.insert(rng.randrange(len(words) + 1), rng.choice(side))
    if extra:
        words.insert(rng.randrange(len(words) + 1), extra)
    return " ".join(words)


def write_rows(path, rows) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def make_data(tmp_path, n_train: int = 120, n_test: int = 80, seed: int = 0, plant: bool = False):
    """Training rows (train.jsonl) and a labeled test set (test.jsonl) for the binary `toxicity` preset.

    With ``plant``: every test-set row (seeds and held-out, never a training row) carries a token that
    gives its label away exactly: ``zqxplanted`` on toxic rows, ``zqxcontrol`` on the others.
    """
    rng = random.Random(seed)
    train = [{"id": f"t{i}", "input": _text(rng, i % 2 == 0), "label": "true" if i % 2 == 0 else "false"}
             for i in range(n_train)]
    test = []
    for i in range(n_test):
        toxic = i % 2 == 0
        extra = ("zqxplanted" if toxic else "zqxcontrol") if plant else ""
        test.append({"id": f"h{i}", "input": _text(rng, toxic, extra), "label": "true" if toxic else "false"})
    write_rows(tmp_path / "train.jsonl", train)
    write_rows(tmp_path / "test.jsonl", test)
    return train, test


def config(tmp_path, candidates, *, train_set: bool = True, out: str = "out", **train_kw):
    from assay.config import config_from_dict

    data = {"test_set": "test.jsonl", "seed_fraction": 0.25, "train_on_seeds": not train_set}
    if train_set:
        data["train_set"] = "train.jsonl"
    return config_from_dict({
        "metric": "toxicity", "data": data,
        "model": {"family": "encoder", "max_length": 32},
        "train": {"candidates": candidates, "cv_folds": 3, "seed": 0, **train_kw},
        "report": {"bootstrap": 50, "latency_rows": 4},
        "output": out,
    }, base_dir=tmp_path)


def test_model_selection_never_touches_held_out_rows(tmp_path, monkeypatch):
    """A signal that exists only in the held-out rows is not learned, and selection never receives them."""
    from assay.data import row_hash
    from assay.train import _select, train

    _, test = make_data(tmp_path, plant=True)
    seen: list[list[str]] = []
    real = _select.cross_validate

    def spy(metric, rows, *args, **kwargs):
        seen.append([row_hash(r) for r in rows])
        return real(metric, rows, *args, **kwargs)

    monkeypatch.setattr(_select, "cross_validate", spy)
    result = train(config(tmp_path, ["tfidf"]), progress=False)
    split = json.loads((result.artifact_dir / "split.json").read_text())
    held = set(split["held_out"])
    assert held, "the test set has held-out rows"
    # one candidate: no cross-validation at all; now with a real choice of candidates
    out2 = train(config(tmp_path, ["tfidf", "embed", "hybrid"], out="out2"), progress=False)
    assert seen, "cross-validation ran"
    for hashes in seen:
        assert not held & set(hashes), "selection received held-out rows"
        assert len(hashes) == 120  # exactly the training rows (train_on_seeds: false)
    assert out2.report["selection"]["rows"] == 120
    # the planted tokens never reached the shipped model's features (TF-IDF vocabulary of the training rows)
    for folder in (result.artifact_dir, out2.artifact_dir):
        if (folder / "vocab.json").exists():
            terms = json.loads((folder / "vocab.json").read_text())
            assert not any("zqx" in t for t in terms["word"]["terms"])
            assert not any("zqxpl" in t for t in terms["char"]["terms"])
    # and the model did not learn the held-out-only signal: far from the perfect score it would give
    for r in (result, out2):
        assert r.report["student"]["kappa"] < 0.9
        assert r.report["n"] == len(held)


def test_one_candidate_is_possible_and_selection_reproducible(tmp_path):
    from assay.train import train

    make_data(tmp_path)
    one = train(config(tmp_path, ["tfidf"], out="one"), progress=False)
    assert one.evaluator.family == "linear"
    assert "selection" not in one.report or one.report["selection"]["winner"] == "tfidf"
    a = train(config(tmp_path, ["tfidf", "embed"], out="a"), progress=False)
    b = train(config(tmp_path, ["tfidf", "embed"], out="b"), progress=False)
    sa, sb = a.report["selection"], b.report["selection"]
    assert sa["winner"] == sb["winner"] and sa["winner"] in ("tfidf", "embed")
    assert [c["cv_kappa"] for c in sa["candidates"]] == [c["cv_kappa"] for c in sb["candidates"]]
    assert all(c["ci"] and c["ci"][0] <= c["cv_kappa"] <= c["ci"][1] for c in sa["candidates"])
    assert sa["folds"] == 3 and sa["reason"]
    md = (a.artifact_dir / "report.md").read_text()
    assert "## Candidates" in md and sa["winner"] in md
    card = (a.artifact_dir / "README.md").read_text()
    assert "Model selection" in card


def test_folds_are_stratified_grouped_and_seeded():
    from assay.train._select import make_folds

    rows = [{"input": f"prompt {i // 3}", "output": f"answer {i}", "label": "true" if i % 2 else "false"}
            for i in range(60)]
    y = np.array([i % 2 for i in range(60)])
    folds, notes = make_folds(rows, y, 4, seed=1, group_by="input")
    again, _ = make_folds(rows, y, 4, seed=1, group_by="input")
    assert len(folds) == 4 and not notes
    assert all((a[1] == b[1]).all() for a, b in zip(folds, again))
    for tr, va in folds:
        assert not {rows[i]["input"] for i in tr} & {rows[i]["input"] for i in va}  # groups on one side
        assert set(y[va].tolist()) == {0, 1}
    few, notes = make_folds(rows[:5], np.array([0, 0, 0, 0, 1]), 5, seed=0, group_by=None)
    assert few == [] and any("fewer than 2" in n for n in notes)


def test_ties_go_to_the_cheaper_candidate():
    from assay.train._select import Candidate, Selection, choose

    sel = Selection(rows=10, rows_hash=[], labels=["a", "b"], y=np.zeros(10, dtype=int), folds=[(None, None)] * 3,
                    group_by=None, seed=0)
    sel.candidates = {"tfidf": Candidate("tfidf", cv_kappa=0.700), "embed": Candidate("embed", cv_kappa=0.705),
                      "hybrid": Candidate("hybrid", cv_kappa=0.80)}
    assert choose(sel, ["tfidf", "embed"]) == "tfidf" and "cheaper" in sel.reason
    assert choose(sel, ["tfidf", "embed", "hybrid"]) == "hybrid" and "highest" in sel.reason


def test_seeds_only_calibrates_out_of_fold_and_says_so(tmp_path):
    """Few labels: calibration on out-of-fold scores, and its warning + the seeds-only notice reach report and card."""
    from assay.train import train

    make_data(tmp_path, n_test=120)
    r = train(config(tmp_path, ["tfidf", "embed"], train_set=False), progress=False)
    cal = r.evaluator.info["calibration"]
    assert cal["source"].startswith("out-of-fold") and cal["rows"] == r.data["counts"]["seeds"]
    assert cal["rows"] < 50 and any("only" in w for w in cal["warnings"])
    md = (r.artifact_dir / "report.md").read_text()
    card = (r.artifact_dir / "README.md").read_text()
    for text in (md, card):
        assert "seed rows alone" in text
        assert "calibration fitted on only" in text
    assert r.report["student"]["kappa"] is not None


def test_calibration_at_a_bound_is_a_warning_in_report_and_card():
    """Issue 11.8: a temperature at the end of its search range is reported, in report.md and the model card."""
    from assay.evaluator._card import model_card
    from assay.metrics import load_metric
    from assay.report._render import render_markdown
    from assay.train import calibrate

    metric = load_metric("toxicity")

    class Fixed:  # logits that say the opposite of the truth, confidently: the NLL wants T at its bound
        labels, temperature, threshold, label_shift = tuple(metric.labels), 1.0, 0.5, None

        def __init__(self):
            self.metric = metric

        def predict_logits(self, rows, batch_size=None):
            return np.array([[-8.0, 8.0] if r["label"] == metric.labels[0] else [8.0, -8.0] for r in rows])

        def calibrate(self, z):
            from assay.evaluator import Evaluator

            return Evaluator.calibrate(self, z)

    rows = [{"label": metric.labels[i % 2]} for i in range(60)]
    cal = calibrate(Fixed(), rows)
    assert any("bound" in w for w in cal["warnings"]), cal
    notes = [f"calibration: {w}" for w in cal["warnings"]]
    md = render_markdown({"metric": {"name": "toxicity"}, "notes": notes, "student": {}})
    card = model_card({"metric": metric.to_dict(), "calibration": cal, "data": {"notes": notes}})
    for text in (md, card):
        assert "at a bound of its search range" in text
