"""Model selection (train.candidates): k-fold CV on the training rows only, reproducible, one candidate possible."""

from __future__ import annotations

import json
import random
import re
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

pytest.importorskip("sklearn")

from _train_util import config, make_data, write_rows  # noqa: E402,F401 - shared helpers
from conftest import FIXTURE_DATA  # noqa: E402

from assay import AssayError  # noqa: E402
from assay.cli import cli  # noqa: E402
from assay.config import config_from_dict  # noqa: E402
from assay.data import row_hash  # noqa: E402
from assay.evaluator import Evaluator  # noqa: E402
from assay.evaluator._artifact import Selection as SelectionRecord  # noqa: E402
from assay.evaluator._base_models import resolve_base  # noqa: E402
from assay.evaluator._card import model_card  # noqa: E402
from assay.evaluator._export import export_onnx  # noqa: E402
from assay.evaluator._linear import EmbedFeatures, log_probs  # noqa: E402
from assay.metrics import get_preset, load_metric  # noqa: E402
from assay.report._render import _encoder_rule, _selection_text, render_markdown  # noqa: E402
from assay.stats import cohen_kappa  # noqa: E402
from assay.testing import MockEvaluator  # noqa: E402
from assay.train import _fit, _select, calibrate, train  # noqa: E402
from assay.train._fit import fit_and_select  # noqa: E402
from assay.train._select import (BLEND, ENCODER_MARGIN, POOL_MIN_ROWS, POOLED, TIE, Candidate,  # noqa: E402
                                 Selection, _score, _tfidf_per_fold, choose, cross_validate, fitted_parameters,
                                 make_folds, pool_head, refit, selection_score, standard_error)


def test_model_selection_never_touches_held_out_rows(tmp_path, monkeypatch):
    """A signal that exists only in the held-out rows is not learned, and selection never receives them."""
    _, test = make_data(tmp_path, plant=True)
    seen: list[list[str]] = []
    real = _fit.cross_validate

    def spy(metric, rows, *args, **kwargs):
        seen.append([row_hash(r) for r in rows])
        return real(metric, rows, *args, **kwargs)

    monkeypatch.setattr(_fit, "cross_validate", spy)
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


def _oof(y: np.ndarray, right: float, seed: int) -> np.ndarray:
    """Out-of-fold logits that put the true label on top for about ``right`` of the rows."""
    rng = np.random.default_rng(seed)
    k = int(y.max()) + 1
    hit = rng.permutation(len(y)) < round(right * len(y))  # exactly that share, on different rows per seed
    pred = np.where(hit, y, (y + rng.integers(1, k, len(y))) % k)
    return np.eye(k)[pred] * 2.0 + rng.normal(0, 0.1, (len(y), k))


def _sel(y: np.ndarray, folds: int = 4):
    idx = np.arange(len(y))
    return Selection(rows=len(y), rows_hash=[], labels=["a", "b"], y=y, folds=[(idx, idx[f::folds])
                     for f in range(folds)], group_by=None, seed=0)


def test_a_gap_one_way_ships_the_better_candidate_whatever_its_size():
    """The refusal task: TF-IDF led by less than one SE and the fewest-parameters rule shipped embed
    (0.553 held out against TF-IDF's 0.654). A gap one way now ships the better one; a large vocabulary
    is no reason to ship the worse of two measured candidates."""
    y = np.arange(200) % 2
    sel = _sel(y)
    tfidf = Candidate("tfidf", _oof(y, 0.9, 1), {"features": 5000}, cv_kappa=0.682, fold_kappas=[0.5, 0.9, 0.6, 0.73])
    embed = Candidate("embed", _oof(y, 0.6, 2), {"features": 384}, cv_kappa=0.629, fold_kappas=[0.6, 0.65, 0.62, 0.64])
    sel.candidates = {"tfidf": tfidf, "embed": embed}
    winner = choose(sel, ["tfidf", "embed"])
    assert winner != "embed"
    assert winner == "tfidf" and "highest CV kappa" in sel.reason  # the blend of a 0.9 and a 0.6 model scores below
    assert sel.candidates["blend"].cv_kappa < 0.682 - 0.01 and "below it" in sel.reason
    steady = Candidate("tfidf", tfidf.oof_logits, {"features": 5000}, cv_kappa=0.70, fold_kappas=[0.7] * 4)
    sel.candidates["tfidf"], embed.cv_kappa = steady, 0.40  # far apart: no pool is even tried
    assert choose(sel, ["tfidf", "embed"]) == "tfidf" and "blend" not in sel.candidates


def test_candidates_within_noise_ship_their_equal_weight_pool():
    """Two models of about equal accuracy that err on different rows: their pool (the mean of their
    out-of-fold log-probabilities, nothing fitted on top) scores above both on the same rows, and ships."""
    y = np.arange(400) % 2
    sel = _sel(y)
    for name, seed, feats in (("tfidf", 3, 5000), ("embed", 4, 384)):
        sel.candidates[name] = Candidate(name, _oof(y, 0.75, seed), {"features": feats})
        _score(sel.candidates[name], sel)
    a, b = sel.candidates["tfidf"].cv_kappa, sel.candidates["embed"].cv_kappa
    assert abs(a - b) < 0.1
    assert choose(sel, ["tfidf", "embed"]) == BLEND and "equal-weight pool" in sel.reason
    pool = sel.candidates[BLEND]
    assert pool.cv_kappa > max(a, b) and pool.params["stacked"] == ["tfidf", "embed"]
    assert fitted_parameters(sel, BLEND) == 5001 + 385  # its blocks' heads; the pool fits nothing
    assert [c["name"] for c in sel.summary()["candidates"]] == ["tfidf", "embed", BLEND]
    assert choose(sel, ["tfidf"]) == "tfidf" and BLEND not in sel.candidates  # one candidate: nothing to pool


def test_a_fitted_stack_must_beat_the_single_blocks_by_its_own_standard_error():
    """hybrid's pool is a second fit on the blocks' out-of-fold scores of the same rows: its CV kappa carries
    that fit's optimism (PII split 7: CV ahead, 0.00 held out against TF-IDF's 0.18). It ships only when it
    leads the single blocks' winner by more than its own standard error."""
    y = np.arange(200) % 2
    sel = _sel(y)
    sel.candidates = {"tfidf": Candidate("tfidf", _oof(y, 0.6, 1), {"features": 50}, cv_kappa=0.20, fold_kappas=[0.2] * 4),
                      "embed": Candidate("embed", _oof(y, 0.8, 2), {"features": 384}, cv_kappa=0.60,
                                         fold_kappas=[0.6] * 4),
                      "hybrid": Candidate("hybrid", _oof(y, 0.85, 3), {"stacked": ["tfidf", "embed"]}, cv_kappa=0.66,
                                          fold_kappas=[0.4, 0.9, 0.5, 0.84])}  # SE 0.12
    assert choose(sel, ["tfidf", "embed", "hybrid"]) == "embed" and "does not beat it" in sel.reason
    sel.candidates["hybrid"].fold_kappas = [0.65, 0.67, 0.66, 0.66]  # the same lead, steady folds: real
    assert choose(sel, ["tfidf", "embed", "hybrid"]) == "hybrid" and "beats the single blocks' winner" in sel.reason


def test_exact_ties_go_to_the_simpler_candidate():
    y = np.arange(10) % 2
    sel = _sel(y, folds=2)
    oof = np.zeros((10, 2))
    same = [0.70, 0.70]
    sel.candidates = {"tfidf": Candidate("tfidf", oof, {"features": 50}, cv_kappa=0.70, fold_kappas=same),
                      "hybrid": Candidate("hybrid", oof, {"stacked": ["tfidf"]}, cv_kappa=0.80, fold_kappas=same)}
    assert choose(sel, ["tfidf", "hybrid"]) == "hybrid" and "highest" in sel.reason
    sel.candidates["hybrid"].cv_kappa = 0.70  # the same kappa: the one with fewer fitted parameters
    assert choose(sel, ["tfidf", "hybrid"]) == "tfidf"


def test_the_report_states_the_rule():
    y = np.arange(40) % 2
    sel = _sel(y)
    sel.candidates = {"tfidf": Candidate("tfidf", _oof(y, 0.9, 0), {"features": 50}, cv_kappa=0.8,
                                         fold_kappas=[0.8] * 4)}
    choose(sel, ["tfidf"])
    text = _selection_text(SelectionRecord.model_validate(sel.summary()))
    assert "the highest CV kappa wins" in text and "equal-weight pool" in text and "hybrid" in text


def test_tfidf_vocabulary_is_fitted_inside_each_fold():
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


def test_the_encoder_alone_must_lead_by_more_than_its_standard_error():
    """A lead of TIE on a ~15-row slice is chance (a kappa there has a standard error of ~0.2): the encoder
    ships alone only when it leads the cross-validated winner by more than one standard error of its kappa,
    read from its interval; with a narrow interval the same lead ships it."""
    y = np.array([0, 1] * 10)
    z = np.eye(2)[y] * 5.0
    z[[14, 15]] = np.eye(2)[1 - y[[14, 15]]] * 5.0  # two of the six validation rows wrong
    val = np.arange(14, 20)
    lin_kappa = selection_score(y[val], z[val].argmax(1), 2)
    for ci, expect in (([0.0, 0.9], "tfidf"), ([lin_kappa + 0.1, lin_kappa + 0.3], "encoder")):
        sel = Selection(rows=20, rows_hash=[], labels=["a", "b"], y=y, folds=[(None, None)] * 3, group_by=None,
                        seed=0)
        sel.candidates = {"tfidf": Candidate("tfidf", z, cv_kappa=0.8, fold_kappas=[0.8] * 3),
                          "encoder": Candidate("encoder", val_kappa=lin_kappa + 0.2, ci=ci)}
        assert choose(sel, ["encoder", "tfidf"], val) == expect, sel.reason
        assert "standard error" in sel.reason
    rule = _encoder_rule(SelectionRecord(**sel.summary()))
    assert f"by more than {ENCODER_MARGIN:g} of its standard errors" in rule
    old = SelectionRecord(**{**sel.summary(), "encoder_margin": None})  # an artifact from before the margin
    assert "by more than 0.01;" in _encoder_rule(old)


def test_seeds_only_calibrates_out_of_fold_and_says_so(tmp_path):
    """Few labels: calibration on out-of-fold scores, and its warning + the seeds-only notice reach report and card."""
    make_data(tmp_path, n_test=120)
    r = train(config(tmp_path, ["tfidf", "embed"], train_set=False), progress=False)
    cal = r.evaluator.calibration
    assert cal.source.startswith("out-of-fold") and cal.n_rows == r.data["counts"]["seeds"]
    assert cal.n_rows < 50 and any("only" in w for w in cal.warnings)
    md = (r.artifact_dir / "report.md").read_text()
    card = (r.artifact_dir / "README.md").read_text()
    for text in (md, card):
        assert "seed rows alone" in text
        assert "calibration fitted on only" in text
    assert r.report["student"]["kappa"] is not None


def test_calibration_at_a_bound_is_a_warning_in_report_and_card():
    """Issue 11.8: a temperature at the end of its search range is reported, in report.md and the model card."""
    metric = load_metric("toxicity")


    # confident scores that say the opposite of the truth: the NLL wants the temperature at its bound
    wrong = MockEvaluator(metric, proba=lambda r: [1e-7, 1 - 1e-7] if r["label"] == metric.labels[0]
                          else [1 - 1e-7, 1e-7], threshold=0.5)

    rows = [{"label": metric.labels[i % 2]} for i in range(60)]
    cal = calibrate(wrong, rows)
    assert any("bound" in w for w in cal.warnings), cal
    notes = [f"calibration: {w}" for w in cal.warnings]
    md = render_markdown({"metric": {"name": "toxicity"}, "notes": notes, "student": {}})
    card = model_card({"metric": metric.to_dict(), "family": "linear", "calibration": cal.to_dict(),
                       "data": {"notes": notes}})
    for text in (md, card):
        assert "at a bound of its search range" in text


def test_the_hybrid_pool_never_inverts_a_block():
    """Out-of-fold scores of few rows can be anti-correlated with the labels; an unconstrained stacker
    inverted such a block (CV kappa 0.50, held-out -0.26). The pool weighs it down to 0 instead."""
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


@pytest.mark.slow
def test_a_phrase_driven_task_does_not_ship_the_worse_candidate():
    """Real tweets (Davidson et al.) relabelled by a few phrases (``lol``, ``u``, ``ur``, ...): a label a
    bag of words reads and a sentence embedding only half sees. TF-IDF leads embed by less than one SE of
    its CV kappa, where the fewest-parameters rule shipped ``embed``; the shipped model must score at
    least the worse single candidate's held-out kappa and must not be that candidate."""


    phrases = re.compile(r"\b(lol|lmao|smh|tho|yall|ya|u|ur)\b", re.I)
    tweets = [json.loads(line) for line in (FIXTURE_DATA / "toxicity_davidson.jsonl").read_text().splitlines()]
    rows = [{"id": r["id"], "input": r["input"], "label": "true" if phrases.search(r["input"]) else "false"}
            for r in tweets]
    random.Random(2).shuffle(rows)
    train_rows, held = rows[:200], rows[200:]
    metric = load_metric("toxicity")
    kinds = ["tfidf", "embed", "hybrid"]
    sel = cross_validate(metric, train_rows, kinds, folds=5, seed=0, group_by=None,
                         embed=lambda: EmbedFeatures(metric, resolve_base("minilm"), 128, 32))
    tfidf, embed = sel.candidates["tfidf"], sel.candidates["embed"]
    assert 0 < tfidf.cv_kappa - embed.cv_kappa < standard_error(tfidf)  # the refusal task's shape
    winner = choose(sel, kinds)
    y = np.array([metric.labels.index(r["label"]) for r in held])

    def held_out(kind: str) -> float:
        model = refit(metric, sel, kind, 128)
        return cohen_kappa(y, model.logits_encoded(model.encode(held)).argmax(1), 2)

    singles = {k: held_out(k) for k in ("tfidf", "embed")}
    worse = min(singles, key=singles.get)
    assert winner != worse, sel.reason
    assert held_out(winner) >= singles[worse]


def test_an_encoder_within_noise_of_the_winner_ships_their_pool():
    """The shipped example's case: the fine-tuned encoder and TF-IDF within noise on the validation slice,
    erring on different rows. Their equal-weight pool (the encoder's logits there with TF-IDF's out-of-fold
    ones) scores above both and ships; an encoder far ahead ships alone; too few validation rows: no pool."""

    def confident_when_right(y: np.ndarray, seed: int) -> np.ndarray:  # right on 80% of rows, unsure when wrong
        rng = np.random.default_rng(seed)
        hit = rng.permutation(len(y)) < round(0.8 * len(y))
        return np.where(hit[:, None], np.eye(2)[y] * 3.0, np.eye(2)[1 - y] * 0.5)

    y = np.arange(300) % 2
    val = np.arange(100, 300)
    sel = _sel(y)
    lin = confident_when_right(y, 1)
    lin[val] = confident_when_right(y[val], 3)  # right on 80% of the validation rows too
    enc_logits = confident_when_right(y[val], 2)  # as accurate, on other rows
    kappa = lambda z, yy: float(np.mean(z.argmax(1) == yy)) * 2 - 1  # noqa: E731 - balanced binary kappa
    sel.candidates = {"tfidf": Candidate("tfidf", lin, cv_kappa=0.6, fold_kappas=[0.55, 0.6, 0.65, 0.6]),
                      "encoder": Candidate("encoder", val_kappa=kappa(enc_logits, y[val]), ci=[0.5, 0.7],
                                           val_logits=enc_logits)}
    assert choose(sel, ["encoder", "tfidf"], val) == POOLED and "within noise" in sel.reason
    assert "on every row" not in sel.reason  # the pool decides rows differently from either member
    pool = sel.candidates[POOLED]
    assert pool.params["members"] == ["encoder", "tfidf"]
    assert pool.val_kappa > max(sel.candidates["encoder"].val_kappa, sel.candidates["tfidf"].val_kappa)
    loud = enc_logits * 10.0  # the same decisions, ten times as confident: the mean follows the encoder
    sel.candidates["encoder"] = Candidate("encoder", val_kappa=kappa(loud, y[val]), ci=[0.5, 0.7], val_logits=loud)
    assert choose(sel, ["encoder", "tfidf"], val) == POOLED
    assert "its decisions there are encoder's on every row" in sel.reason
    ahead = np.eye(2)[y[val]] * 5.0  # an encoder always right there: far ahead, alone
    sel.candidates["encoder"] = Candidate("encoder", val_kappa=1.0, ci=[0.98, 1.0], val_logits=ahead)
    assert choose(sel, ["encoder", "tfidf"], val) == "encoder"
    few = val[:POOL_MIN_ROWS - 1]
    sel.candidates["encoder"] = Candidate("encoder", val_kappa=kappa(enc_logits[:len(few)], y[few]), ci=[0.4, 0.8],
                                          val_logits=enc_logits[:len(few)])
    assert choose(sel, ["encoder", "tfidf"], few) != POOLED and POOLED not in sel.candidates


@pytest.mark.slow
def test_a_pooled_evaluator_saves_loads_and_scores_the_same(tmp_path):
    """The pooled winner is one artifact: the refit linear blocks, the network's own weight files, and a
    stacking head that averages the two; from_pretrained gives the same probabilities, and the ONNX export
    refuses it with a clear error rather than writing a graph that leaves the network out."""

    rows = [json.loads(line) for line in (FIXTURE_DATA / "toxicity_davidson.jsonl").read_text().splitlines()][:260]
    metric = get_preset("toxicity_3class")
    cfg = config_from_dict({"metric": "toxicity_3class", "data": {"test_set": "unused.jsonl"},
                            "model": {"family": "encoder", "max_length": 48},
                            "train": {"candidates": ["encoder", "tfidf"], "cv_folds": 3, "seed": 0, "max_steps": 6,
                                      "batch_size": 8, "early_stopping": None,
                                      "encoder_cv_rows": 0}}, base_dir=tmp_path)  # the slice path
    real = _select._encoder_against

    def pooled_always(sel, enc, winner, val_idx):  # the rule is tested above; here the artifact
        real(sel, enc, winner, val_idx)
        return _select.POOLED

    fit_rows, cal_rows = rows[:-120], rows[-120:]
    try:
        _select._encoder_against = pooled_always
        ev, stats, cal, summary = fit_and_select(cfg, metric, rows, fit_rows, cal_rows, None, progress=False)
    finally:
        _select._encoder_against = real
    assert summary["winner"] == "pooled" and list(ev.model.blocks) == ["tfidf", "encoder"]
    assert ev.info["linear"]["neural"]["family"] == "encoder" and stats["member"] == "tfidf"
    assert cal.n_rows == len(cal_rows) and cal.method == "slice"
    out = ev.save_pretrained(tmp_path / "pooled")
    assert {"linear.safetensors", "vocab.json", "adapter_model.safetensors", "head.safetensors"} <= {
        p.name for p in out.iterdir()}
    again = Evaluator.from_pretrained(out, device="cpu")  # the precision the trained one scores at (auto)
    np.testing.assert_allclose(again.predict_proba(rows[:30]), ev.predict_proba(rows[:30]), atol=1e-6)
    head = ev.model.heads["tfidf"]
    lin = ev.model.blocks["tfidf"].transform(rows[:30]) @ head.weight.T + head.bias
    net = ev.model.blocks["encoder"].transform(rows[:30])
    want = (log_probs(np.asarray(lin)) + log_probs(net)) / 2  # the pool, by hand: the mean of the log-probabilities
    got = ev.model.logits_encoded(ev.model.encode(rows[:30]))
    np.testing.assert_allclose(log_probs(got), log_probs(want), atol=1e-4)
    with pytest.raises(AssayError, match="pooled evaluator"):
        export_onnx(again, tmp_path / "x.onnx")


    shown = CliRunner().invoke(cli, ["inspect", str(out)])
    assert shown.exit_code == 0 and "family: hybrid (pooled)" in shown.output
    assert "encoder: base minilm, fine-tuned as the encoder family" in shown.output


@pytest.mark.slow
def test_a_small_training_set_cross_validates_the_encoder(tmp_path, monkeypatch):
    """Up to train.encoder_cv_rows training rows the encoder is cross-validated on the linear candidates' own
    folds: a fresh encoder trained on each fold's training part scores that fold's other rows, and the
    shipped one trains on every row. Its kappa is read on those out-of-fold logits of every training row,
    and a shipped encoder is calibrated on them (no held-back slice)."""

    rows = [json.loads(line) for line in (FIXTURE_DATA / "toxicity_davidson.jsonl").read_text().splitlines()][:120]
    metric = get_preset("toxicity_3class")
    cfg = config_from_dict({"metric": "toxicity_3class", "data": {"test_set": "unused.jsonl"},
                            "model": {"family": "encoder", "max_length": 32},
                            "train": {"candidates": ["encoder", "tfidf"], "cv_folds": 3, "seed": 0, "max_steps": 3,
                                      "batch_size": 8, "early_stopping": None}}, base_dir=tmp_path)
    trained: list[set[str]] = []
    real_loop, real_against = _fit.train_loop, _select._encoder_against

    def loop(ev, fit, *args, **kwargs):
        trained.append({row_hash(r) for r in fit})
        return real_loop(ev, fit, *args, **kwargs)

    oof: dict[str, np.ndarray] = {}

    def encoder_wins(sel, enc, winner, val_idx):  # the rule is tested above; here the validation and calibration
        oof["logits"], oof["idx"] = enc.val_logits, val_idx
        real_against(sel, enc, winner, val_idx)
        return "encoder"

    monkeypatch.setattr(_fit, "train_loop", loop)
    monkeypatch.setattr(_select, "_encoder_against", encoder_wins)
    fit_rows, cal_rows = rows[:100], rows[100:]  # what a slice would be: unused here
    ev, stats, cal, summary = _fit.fit_and_select(cfg, metric, rows, fit_rows, cal_rows, None, progress=False)

    everyone = {row_hash(r) for r in rows}
    assert len(trained) == 4 and trained[-1] == everyone  # 3 folds, then every row
    left_out = [everyone - t for t in trained[:3]]
    assert all(left_out) and set().union(*left_out) == everyone and sum(map(len, left_out)) == len(everyone)
    enc = next(c for c in summary["candidates"] if c["name"] == "encoder")
    assert enc["params"]["validation"] == "out-of-fold" and len(enc["fold_kappas"]) == 3
    assert "out-of-fold" in enc["validated_on"] and "out-of-fold predictions of every training row" in summary[
        "compared_on"]
    y = np.array([metric.labels.index(r["label"]) for r in rows])
    assert np.array_equal(oof["idx"], np.arange(len(rows))) and oof["logits"].shape == (len(rows), 3)
    assert enc["validation_kappa"] == pytest.approx(cohen_kappa(y, oof["logits"].argmax(1), 3) or 0.0)
    assert stats["validation"] == "out-of-fold" and summary["winner"] == "encoder"
    assert cal.method == "out-of-fold" and cal.n_rows == len(rows) and "cross-validation" in cal.source
    # the shipped encoder is not one of the fold models: on its own training rows it differs from their
    # out-of-fold logits
    assert not np.allclose(ev.predict_logits(rows), oof["logits"], atol=1e-3)
    # above the limit: one held-back slice, as before
    trained.clear()
    cfg.train.encoder_cv_rows = 100
    ev, stats, cal, summary = _fit.fit_and_select(cfg, metric, rows, fit_rows, cal_rows, None, progress=False)
    assert len(trained) == 1 and trained[0] == {row_hash(r) for r in fit_rows}
    assert "validation" not in stats and cal.n_rows == len(cal_rows) and cal.method == "slice"


def test_the_encoder_s_cross_validation_shares_the_budget_and_falls_back_when_it_is_spent(monkeypatch):
    """Each of the k + 1 fine-tunes gets an equal share of the time left; with none left the encoder is not
    cross-validated (the slice path then records it as skipped by the budget)."""

    now = time.perf_counter()
    assert _fit._share(None, 3) is None
    share = _fit._share(now + 60.0, 3)
    assert share is not None and 19.0 < share - now <= 20.5
    assert _fit._share(now - 5.0, 2) <= time.perf_counter()  # already past: no time, never negative
    sel = _sel(np.arange(40) % 2)
    sel.folds = [(np.arange(20, 40), np.arange(20)), (np.arange(20), np.arange(20, 40))]

    def never(*a, **k):
        raise AssertionError("no fine-tune may start after the deadline")

    monkeypatch.setattr(_fit, "train_loop", never)
    monkeypatch.setattr(_fit.Evaluator, "create", never)


    cfg = config_from_dict({"metric": "toxicity", "data": {"test_set": "unused.jsonl"}}, base_dir=Path("."))
    out = _fit._train_neural_cv(cfg, get_preset("toxicity"), None, sel, [{}] * 40, progress=False,
                                status=lambda *a: None, should_stop=None, deadline=time.perf_counter() - 1.0)
    assert out == {} and "encoder" not in sel.candidates
