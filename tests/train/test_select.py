"""Model selection (train.candidates): k-fold CV on the training rows only, reproducible, one candidate possible."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("sklearn")

from _train_util import config, make_data, write_rows  # noqa: F401 - shared helpers


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
    oof = np.zeros((10, 2))
    same = [0.70, 0.70, 0.70]  # no fold-to-fold spread: the tolerance is TIE
    sel.candidates = {"tfidf": Candidate("tfidf", oof, cv_kappa=0.700, fold_kappas=same),
                      "embed": Candidate("embed", oof, cv_kappa=0.705, fold_kappas=same),
                      "hybrid": Candidate("hybrid", oof, cv_kappa=0.80, fold_kappas=same)}
    assert choose(sel, ["tfidf", "embed"]) == "tfidf" and "cheaper" in sel.reason
    assert choose(sel, ["tfidf", "embed", "hybrid"]) == "hybrid" and "highest" in sel.reason


def test_one_standard_error_rule_prefers_the_cheaper_candidate_when_folds_disagree():
    from assay.train._select import TIE, Candidate, Selection, choose, standard_error

    sel = Selection(rows=10, rows_hash=[], labels=["a", "b"], y=np.zeros(10, dtype=int), folds=[(None, None)] * 4,
                    group_by=None, seed=0)
    oof = np.zeros((10, 2))
    noisy = Candidate("embed", oof, cv_kappa=0.40, fold_kappas=[0.1, 0.7, 0.2, 0.6])  # SE = 0.148
    sel.candidates = {"tfidf": Candidate("tfidf", oof, cv_kappa=0.30, fold_kappas=[0.3, 0.3, 0.3, 0.3]),
                      "embed": noisy}
    se = standard_error(noisy)
    assert se == pytest.approx(np.std([0.1, 0.7, 0.2, 0.6], ddof=1) / 2) and se > TIE
    assert choose(sel, ["tfidf", "embed"]) == "tfidf" and "one standard error" in sel.reason
    steady = Candidate("embed", oof, cv_kappa=0.40, fold_kappas=[0.39, 0.41, 0.40, 0.40])
    sel.candidates["embed"] = steady  # the same mean, consistent folds: the gap is real
    assert choose(sel, ["tfidf", "embed"]) == "embed" and "highest" in sel.reason


def test_one_standard_error_rule_prefers_fewer_fitted_parameters():
    from assay.report._render import _selection_text
    from assay.train._select import Candidate, Selection, choose, fitted_parameters

    sel = Selection(rows=10, rows_hash=[], labels=["a", "b"], y=np.zeros(10, dtype=int), folds=[(None, None)] * 4,
                    group_by=None, seed=0)
    oof = np.zeros((10, 2))
    spread = [0.2, 0.6, 0.3, 0.5]  # SE 0.091
    sel.candidates = {"tfidf": Candidate("tfidf", oof, {"features": 5000}, cv_kappa=0.45, fold_kappas=spread),
                      "embed": Candidate("embed", oof, {"features": 384}, cv_kappa=0.40, fold_kappas=spread),
                      "hybrid": Candidate("hybrid", oof, {"stacked": ["tfidf", "embed"]}, cv_kappa=0.44,
                                          fold_kappas=spread)}
    assert fitted_parameters(sel, "embed") == 385 and fitted_parameters(sel, "tfidf") == 5001
    assert fitted_parameters(sel, "hybrid") == 5001 + 385 + 2 + 2  # both heads, a weight per block, a bias per label
    # embed is within one SE of tfidf's best and fits fewer parameters: it wins, though tfidf is the cheaper
    assert choose(sel, ["tfidf", "embed", "hybrid"]) == "embed"
    assert "fewer fitted parameters (385 against 5,001)" in sel.reason
    text = _selection_text(sel.summary())
    assert "fewest fitted parameters (embed 385 < tfidf 5,001 < hybrid 5,390)" in text
    # a small vocabulary (tiny data): tfidf is the simpler one and wins the same tie
    sel.candidates["tfidf"].params["features"] = 200
    sel.candidates["tfidf"].cv_kappa, sel.candidates["embed"].cv_kappa = 0.40, 0.45
    assert choose(sel, ["tfidf", "embed"]) == "tfidf" and "(201 against 385)" in sel.reason
    # a gap larger than the SE: the better one wins whatever its size
    sel.candidates["tfidf"].cv_kappa = 0.30
    assert choose(sel, ["tfidf", "embed"]) == "embed" and "highest" in sel.reason
    # three labels: one weight vector per label
    sel.labels = ["a", "b", "c"]
    assert fitted_parameters(sel, "embed") == 384 * 3 + 3


def test_tfidf_vocabulary_is_fitted_inside_each_fold():
    from assay.metrics import load_metric
    from assay.train._select import _tfidf_per_fold, make_folds

    metric = load_metric("toxicity")
    rows = [{"input": f"common words here {'zyxwvu' if i == 0 else 'plain'} {i}", "label": ["true", "false"][i % 2]}
            for i in range(20)]
    y = np.array([i % 2 for i in range(20)])
    folds, _ = make_folds(rows, y, 4, seed=0, group_by=None)
    per_fold = _tfidf_per_fold(metric, rows, folds)
    for (tr, va), (xt, xv) in zip(folds, per_fold):
        assert xt.shape == (len(tr), xv.shape[1]) and xv.shape[0] == len(va)
        if 0 in va:  # the validation part's own word is not in the fold's vocabulary: its row keeps its known terms
            assert xt.shape[1] < _tfidf_per_fold(metric, rows, [(np.arange(20), np.arange(20))])[0][0].shape[1]
            i = int(np.where(va == 0)[0][0])
            assert xv[i].nnz > 0 and abs(float(xv[i].multiply(xv[i]).sum()) - 2.0) < 1e-6  # word + char, unit each


def test_the_encoder_must_beat_the_cv_winner_on_its_validation_rows():
    from assay.train._select import TIE, Candidate, Selection, choose

    y = np.array([0, 1] * 10)
    sel = Selection(rows=20, rows_hash=[], labels=["a", "b"], y=y, folds=[(None, None)] * 3, group_by=None, seed=0)
    right = np.eye(2)[y] * 5.0  # out-of-fold logits that are always right
    sel.candidates = {"tfidf": Candidate("tfidf", right, cv_kappa=1.0, fold_kappas=[1.0] * 3),
                      "encoder": Candidate("encoder", val_kappa=1.0)}
    val = np.arange(14, 20)
    assert choose(sel, ["encoder", "tfidf"], val) == "tfidf"  # equal on the validation rows: the cheaper one
    assert sel.candidates["tfidf"].val_kappa == 1.0 and "does not beat" in sel.reason
    wrong = np.eye(2)[1 - y] * 5.0
    sel.candidates["tfidf"] = Candidate("tfidf", wrong, cv_kappa=0.2, fold_kappas=[0.2] * 3)
    sel.candidates["encoder"].val_kappa = 0.5
    assert choose(sel, ["encoder", "tfidf"], val) == "encoder" and "beats" in sel.reason
    assert sel.candidates["encoder"].val_kappa > sel.candidates["tfidf"].val_kappa + TIE


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

    from assay.testing import MockEvaluator

    # confident scores that say the opposite of the truth: the NLL wants the temperature at its bound
    wrong = MockEvaluator(metric, proba=lambda r: [1e-7, 1 - 1e-7] if r["label"] == metric.labels[0]
                          else [1 - 1e-7, 1e-7], threshold=0.5)

    rows = [{"label": metric.labels[i % 2]} for i in range(60)]
    cal = calibrate(wrong, rows)
    assert any("bound" in w for w in cal["warnings"]), cal
    notes = [f"calibration: {w}" for w in cal["warnings"]]
    md = render_markdown({"metric": {"name": "toxicity"}, "notes": notes, "student": {}})
    card = model_card({"metric": metric.to_dict(), "calibration": cal, "data": {"notes": notes}})
    for text in (md, card):
        assert "at a bound of its search range" in text


def test_the_hybrid_pool_never_inverts_a_block():
    """Out-of-fold scores of few rows can be anti-correlated with the labels; an unconstrained stacker
    inverted such a block (CV kappa 0.50, held-out -0.26). The pool weighs it down to 0 instead."""
    from assay.evaluator._linear import log_probs
    from assay.train._select import pool_head

    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 300)
    signal = np.eye(3)[y] * 2.0 + rng.normal(0, 1, (300, 3))
    anti = -np.eye(3)[y] * 2.0 + rng.normal(0, 1, (300, 3))  # predicts against the labels
    z = np.hstack([log_probs(anti), log_probs(signal)])
    head = pool_head(z, y, 3)
    w_anti, w_signal = head.weight[0, 0], head.weight[0, 3]
    assert w_anti == 0.0 and w_signal > 0.5
    assert np.count_nonzero(head.weight) <= 6  # one weight per block, on each label's own column
    assert (head.logits(z).argmax(1) == y).mean() > 0.8
    alone = pool_head(log_probs(anti), y, 3)
    assert alone.weight.max() == 0.0  # nothing but the labels' prior: no inverted evidence
