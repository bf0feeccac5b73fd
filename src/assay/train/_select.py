"""Model selection: candidates compared by k-fold cross-validation on the training rows only.

The held-out rows never reach this module (``train`` passes the training rows alone; the
selection records the content hash of every row it saw, in ``rows_hash``).

- Folds: stratified by label, grouped by ``data.group_by`` (rows of one group in one fold;
  ungrouped: rows of one content), shuffled with ``train.seed``: the same config gives the same
  folds. k = ``train.cv_folds``, lowered to the smallest label's row count (never below 2).
- ``tfidf`` / ``embed``: logistic regression (balanced class weights) on the block's features; C
  is chosen on the same folds from a small grid (so the winner's CV kappa is slightly optimistic,
  as for any tuned model; the report says so). Inside each fold the TF-IDF vocabulary and idf are
  fitted on that fold's training part only (:func:`_tfidf_per_fold`), as the refit model will meet
  new rows; embeddings are computed once and reused by every fold.
- ``contrastive``: the base encoder fine-tuned on contrastive pairs (SetFit's recipe,
  ``_contrastive.py``), then logistic regression on its embeddings. The body is tuned anew inside
  every fold on that fold's training part only, so its out-of-fold scores are honest; C as for
  ``embed``. The winner's body is tuned once more on all the training rows.
- ``hybrid``: a weighted log-linear pool of the out-of-fold log-probabilities of ``tfidf`` and
  ``embed`` (and ``contrastive`` when it is a candidate): logits = sum_b w_b log p_b + a bias per
  label, with w_b >= 0 (:func:`pool_head`), cross-validated on the same folds (the standard stacking
  estimate). The weights are non-negative because out-of-fold scores of ~100 rows can be
  anti-correlated with the labels (each fold's model is fitted without that fold's labels and groups):
  an unconstrained stacker learned to invert such a block, reached CV kappa 0.50 and scored -0.26 on
  the held-out rows (PII, seeds regime, split 7 of ``benchmarks/bench_splits.py``). A hybrid may weigh a
  block down to 0, never against its own evidence.
- Every candidate's CV kappa (argmax / P(positive) >= 0.5 on its out-of-fold predictions), a 95%
  bootstrap interval over the rows, and the kappa of each fold.
- The winner (:func:`choose`): among the single blocks the highest CV kappa; when two or more are
  within one standard error of it, their equal-weight pool (``blend``: the mean of their out-of-fold
  log-probabilities, nothing fitted on top) when it scores at least as well less ``TIE``; ``hybrid``
  only when it beats that by more than its own standard error (:func:`_cv_winner`); then the
  ``encoder`` against that winner on the encoder's validation rows (its out-of-fold predictions of every
  training row when there are at most ``train.encoder_cv_rows``: a fresh encoder fine-tuned on each fold's
  training part, as the other candidates are; above that, one held-back slice): the encoder when it is better
  there by more than ``ENCODER_MARGIN`` of its standard errors (at least ``TIE``); when the two are within
  noise of each other (``POOL_BAND`` of the encoder's standard errors there, at least ``TIE``, with at least
  ``POOL_MIN_ROWS`` validation rows), their
  equal-weight pool (``pooled``: the mean of the encoder's log-probabilities and the winner's out-of-fold ones,
  nothing fitted) when it scores within the same band of the better one's kappa (:func:`_encoder_against`).
  On the shipped example (full fine-tune) the encoder and TF-IDF were within 0.01 on the validation slice;
  held out, the encoder read 0.733, TF-IDF 0.688 and their pool 0.751 (argmax, 400 rows; with LoRA 0.741 and 0.762).
- Alternatives measured and not taken (seeds regime, 8 splits x 5 datasets of ``benchmarks/bench_splits.py``,
  every candidate's out-of-fold and held-out logits replayed offline; mean held-out kappa, the rule's 0.446 on
  argmax): choosing by temperature-fitted out-of-fold log-loss with paired standard errors 0.42, by AUROC 0.39,
  a 2 or 3 SE band 0.445, the blend of every single block 0.43, ``embed`` alone 0.43.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from ..data import group_key, row_hash
from ..errors import require
from ..evaluator._linear import LinearHead, LinearModel, TfidfFeatures, log_probs
from ..metrics import swap_pair
from ..stats import bootstrap_ci, cohen_kappa
from . import _contrastive
from ._pool import equal_pool, oof_logits, oof_pool, pool_head

COST_ORDER = ("tfidf", "embed", "lm", "contrastive", "hybrid", "blend", "encoder", "pooled")  # cheapest first: ties
FEATURE_BLOCKS = ("tfidf", "embed", "lm", "contrastive")  # single blocks, which a blend may pool
BLEND = "blend"  # the equal-weight pool of the single blocks within noise of the best (not configurable)
POOLED = "pooled"  # the encoder pooled with the cross-validated winner, when within noise of it (not configurable)
OUT_OF_FOLD = "out-of-fold"  # the encoder's params["validation"] when it was cross-validated (else a slice)
POOL_MIN_ROWS = 100  # fewer validation rows: two kappas there differ by chance more than pooling gains
TIE = 0.01  # kappa within this of the best counts as a tie
# The encoder and the cross-validated winner are within noise of each other, and their pool ships, when their
# kappas (and the pool's against the better one) differ by at most this many standard errors of the encoder's
# (a 95% band). Measured in the seeds regime (4 splits each of PII and toxicity of benchmarks/bench_splits.py,
# ~100 training rows, the encoder cross-validated, argmax): one standard error, with the pool held to the best
# less TIE, pooled on 2 of the 8 and otherwise shipped the encoder or the winner on noise (mean held-out kappa
# PII 0.31, toxicity 0.50); the 95% band pooled on all 8 (0.42 and 0.55; the cross-validated winner alone 0.27
# and 0.51).
POOL_BAND = 2.0
# The encoder ships alone only when it leads the winner by more than this many standard errors of its
# kappa (at least TIE), like a fitted stack: on a slice of ~15 rows a lead of TIE is chance.
ENCODER_MARGIN = 1.0
C_GRID = {"tfidf": (0.3, 1.0, 3.0, 10.0), "embed": (0.1, 0.3, 1.0, 3.0, 10.0),
          "lm": (0.003, 0.01, 0.03, 0.1, 0.3)}  # lm: standardised features, so a stronger prior
C_GRID_LARGE = (1.0, 10.0)  # tfidf with a large feature matrix (long contexts, tool schemas)
LARGE_NNZ = 2_500_000
STACK_C = 1.0
BOOT = 400
Status = Callable[[str, "float | None", str], None]


def _review(t: Any) -> dict[str, float]:
    """The risk-controlled routing settings of a TrainingConfig, for :func:`calibrate`."""
    return {"review_target": t.review_target, "review_delta": t.review_delta}


def selection_score(y: np.ndarray, pred: np.ndarray, k: int) -> float:
    """Cohen's kappa (the report's), 0 when chance agreement is total: a candidate that predicts one label."""
    return cohen_kappa(y, pred, k) or 0.0


def selection_interval(y: np.ndarray, pred: np.ndarray, k: int, seed: int, n_boot: int = BOOT) -> list[float] | None:
    """The report's bootstrap interval for kappa; None below 5 rows."""
    return bootstrap_ci(y, pred, k, n_boot=n_boot, seed=seed)["kappa"] if len(y) >= 5 else None


def decide(logits: np.ndarray) -> np.ndarray:
    return np.argmax(logits, axis=1)


@dataclass
class Candidate:
    name: str
    oof_logits: np.ndarray | None = None  # [n_rows, n_labels], out-of-fold
    params: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    validated_on: str = ""
    cv_kappa: float | None = None
    ci: list[float] | None = None
    fold_kappas: list[float] = field(default_factory=list)
    val_kappa: float | None = None  # on the shared validation rows (when the encoder is a candidate)
    val_logits: np.ndarray | None = None  # encoder / pooled: logits of the validation rows (not in the summary)
    error: str | None = None
    skipped: str | None = None  # why the candidate did not run (train.budget)

    def summary(self) -> dict[str, Any]:
        return {"name": self.name, "cv_kappa": self.cv_kappa, "ci": self.ci, "fold_kappas": self.fold_kappas,
                "validation_kappa": self.val_kappa, "seconds": round(self.seconds, 2),
                "validated_on": self.validated_on, "params": self.params, "error": self.error,
                "skipped": self.skipped}


@dataclass
class Selection:
    rows: int
    rows_hash: list[str]  # content hashes of every row selection saw (never held-out rows)
    labels: list[str]
    y: np.ndarray
    folds: list[tuple[np.ndarray, np.ndarray]]
    group_by: str | None
    seed: int
    fit_y: np.ndarray | None = None  # labels of the rows the blocks are fitted on (pairwise: both orders)
    candidates: dict[str, Candidate] = field(default_factory=dict)
    features: dict[str, Any] = field(default_factory=dict)  # fitted blocks + matrices, for the refit
    deferred: dict[str, Callable[[], Any]] = field(default_factory=dict)  # blocks fitted only if the refit needs them
    winner: str | None = None
    reason: str = ""
    compared_on: str = ""
    notes: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        return {"winner": self.winner, "reason": self.reason, "compared_on": self.compared_on,
                "folds": len(self.folds), "rows": self.rows, "group_by": self.group_by, "seed": self.seed,
                "tie_tolerance": TIE, "encoder_band": POOL_BAND, "encoder_margin": ENCODER_MARGIN,
                "rule": "highest CV kappa; within one standard error, the equal-weight pool; hybrid by more than its SE",
                "cost_order": list(COST_ORDER), "notes": self.notes,
                "order": "exact ties: fewest fitted parameters, then cost",
                "fitted_parameters": {n: fitted_parameters(self, n) for n in self.candidates if n != "encoder"},
                "candidates": [c.summary() for c in self.candidates.values()]}


def make_folds(rows: Sequence[Mapping[str, Any]], y: np.ndarray, k: int, seed: int,
               group_by: str | None) -> tuple[list[tuple[np.ndarray, np.ndarray]], list[str]]:
    """Stratified (grouped) k folds of the rows; k lowered to the smallest label's count."""
    require("sklearn", "model selection", "train", package="scikit-learn")
    from sklearn.model_selection import StratifiedGroupKFold

    notes = []
    present = np.bincount(y) if len(y) else np.zeros(1, dtype=int)
    smallest = int(present[present > 0].min()) if present.any() else 0
    k_eff = min(k, smallest)
    if k_eff < k:
        notes.append(f"cv_folds lowered from {k} to {k_eff}: the rarest label has {smallest} training rows")
    if k_eff < 2:
        return [], notes + ["no cross-validation: a label has fewer than 2 training rows"]
    groups = [group_key(r, group_by) for r in rows]
    cv = StratifiedGroupKFold(n_splits=k_eff, shuffle=True, random_state=seed)
    folds = [(tr, va) for tr, va in cv.split(np.zeros(len(y)), y, groups) if len(va)]
    return folds, notes


def _lr(c: float, seed: int) -> Any:
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(C=c, class_weight="balanced", max_iter=2000, random_state=seed)


def _oof(x: Any, y: np.ndarray, folds: Sequence[tuple[np.ndarray, np.ndarray]], c: float, n_labels: int,
         seed: int, per_fold: Sequence[tuple[Any, Any]] | None = None) -> np.ndarray:

    return oof_logits(lambda xt, yt: LinearHead.from_sklearn(_lr(c, seed).fit(xt, yt), n_labels), x, y, folds,
                      n_labels, per_fold)


def _tfidf_per_fold(metric: Any, rows: Sequence[Mapping[str, Any]],
                    folds: Sequence[tuple[np.ndarray, np.ndarray]]) -> list[tuple[Any, Any]]:
    """Each fold's TF-IDF matrices, the vocabulary and idf fitted on its training part only.

    With one vocabulary fitted on all the training rows, a validation row's own rare n-grams are in it
    (with a high idf) but have no weight in the fold's model; they take a share of the row's L2 norm and
    dim the n-grams the model knows. Rows scored after training never have that: terms outside the
    vocabulary are dropped. Fitted on all rows, TF-IDF's CV kappa read 0.03 to 0.3 below its held-out
    kappa (toxicity, ~100 and ~400 training rows, 8 test-set draws); fitted inside the fold, as the refit
    model meets new rows, the gap narrowed in all 8 (on tau-bench, where the shared vocabulary had
    flattered some splits, it can fall instead)."""

    out = []
    for tr, va in folds:
        block = TfidfFeatures(metric)
        out.append((block.fit([rows[i] for i in tr]), block.transform([rows[i] for i in va])))
    return out


def _score(cand: Candidate, sel: Selection) -> None:
    k = len(sel.labels)
    pred = decide(cand.oof_logits)
    cand.cv_kappa = selection_score(sel.y, pred, k)
    cand.ci = selection_interval(sel.y, pred, k, sel.seed)
    cand.fold_kappas = [round(selection_score(sel.y[va], pred[va], k), 4) for _, va in sel.folds]


def cross_validate(metric: Any, rows: Sequence[Mapping[str, Any]], kinds: Sequence[str], *, folds: int, seed: int,
                   group_by: str | None, embed: Callable[[], Any] | None = None,
                   contrastive: Callable[[], Any] | None = None, tuning: Mapping[str, Any] | None = None,
                   lm: Callable[[], Any] | None = None,
                   status: Status | None = None) -> Selection:
    """Cross-validate the linear candidates (``tfidf``, ``embed``, ``lm``, ``contrastive``, ``hybrid``) on ``rows``.

    ``embed`` / ``contrastive`` / ``lm`` make a fresh embedding block (``lm``: None when its base is
    missing); ``tuning`` holds the contrastive tuning's ``steps``, ``batch_size`` and ``lr``. Pairwise metrics: the blocks are fitted on every row in
    both orders (:class:`Mirror`), and a row's out-of-fold logits are the mean of its two orders.
    """
    status = status or (lambda *a: None)
    labels = list(metric.labels)
    y = np.array([labels.index(r["label"]) for r in rows], dtype=int)
    fold_list, notes = make_folds(rows, y, folds, seed, group_by)
    sel = Selection(rows=len(rows), rows_hash=[row_hash(r) for r in rows], labels=labels, y=y, folds=fold_list,
                    group_by=group_by, seed=seed, notes=notes)
    mirror = Mirror(metric, rows, y, fold_list)
    sel.fit_y = mirror.y
    need = set(kinds) | ({"tfidf", "embed"} if "hybrid" in kinds else set())
    makers = {"tfidf": lambda: TfidfFeatures(metric), "embed": embed, "lm": lm}
    for kind in ("tfidf", "embed", "lm"):
        if kind in need and makers[kind] is not None:
            _cross_validate_block(sel, metric, mirror, kind, makers[kind], status)
    if "contrastive" in kinds and contrastive is not None:
        _cross_validate_contrastive(sel, rows, contrastive, dict(tuning or {}), status)
    if "hybrid" in kinds:
        _cross_validate_hybrid(sel)
    for kind in list(sel.candidates):  # blocks fitted only for the hybrid are not candidates themselves
        if kind not in kinds:
            sel.candidates[kind].validated_on += " (component of hybrid, not a candidate)"
    return sel


class Mirror:
    """The rows a block is fitted on: a pairwise metric's rows in both orders (row i's mirror is row n + i,
    responses A and B exchanged, its label a <-> b), in the same fold as the row itself; other metrics'
    rows as they are. :meth:`fold_back` turns logits of those rows into one row's: the mean of its two
    orders, the mirror's mapped back (a <-> b), so a pairwise candidate's out-of-fold verdict cannot
    depend on which response came first."""

    def __init__(self, metric: Any, rows: Sequence[Mapping[str, Any]], y: np.ndarray,
                 folds: Sequence[tuple[np.ndarray, np.ndarray]]):

        self.perm = metric.swap_permutation()
        self.n = len(rows)
        if self.perm is None:
            self.rows, self.y, self.folds = list(rows), y, list(folds)
            return
        p = np.asarray(self.perm, dtype=int)
        self.rows = list(rows) + [swap_pair(r) for r in rows]
        self.y = np.concatenate([y, p[y]])
        self.folds = [(np.concatenate([tr, tr + self.n]), np.concatenate([va, va + self.n])) for tr, va in folds]

    def fold_back(self, logits: np.ndarray) -> np.ndarray:
        if self.perm is None:
            return logits
        return (logits[:self.n] + logits[self.n:][:, self.perm]) / 2.0


def _cross_validate_block(sel: Selection, metric: Any, mirror: Mirror, kind: str, make: Callable[[], Any],
                          status: Status) -> None:
    """One single-block candidate (``tfidf``, ``embed`` or ``lm``): its features, C (and for ``embed`` on
    shapes with context, grounding or not) picked by the same folds' kappa, its out-of-fold logits."""
    t0 = time.perf_counter()
    rows, y, n, fold_list = mirror.rows, sel.y, len(sel.labels), sel.folds
    status("selecting", None, f"{kind}: features of {sel.rows} training rows")
    block = make()
    x = block.fit(rows)
    sel.features[kind] = (block, x)
    cand = Candidate(kind, validated_on=f"{len(fold_list)}-fold CV" if fold_list else "not validated")
    if fold_list:
        grid = C_GRID[kind] if kind != "tfidf" or x.nnz <= LARGE_NNZ else C_GRID_LARGE
        grounded = kind == "embed" and bool(block.context)
        variants = {"grounded": x, "plain": x[:, :block.plain_size]} if grounded else {"": x}
        per_fold = _tfidf_per_fold(metric, rows, mirror.folds) if kind == "tfidf" else None
        results: dict[str, tuple[float, float, np.ndarray]] = {}
        by_c = {}
        for name, xv in variants.items():
            for c in grid:
                status("selecting", None, f"{kind}: {len(fold_list)}-fold CV, C={c}" + (f", {name}" if name else ""))
                logits = mirror.fold_back(_oof(xv, mirror.y, mirror.folds, c, n, sel.seed, per_fold))
                kp = selection_score(y, decide(logits), n)
                by_c[_grid_key(name, c)] = round(kp, 4)
                if name not in results or kp > results[name][0] + 1e-12:
                    results[name] = (kp, c, logits)
        name = _grounding_choice(results) if grounded else ""
        kp, c, logits = results[name]
        cand.oof_logits, cand.params = logits, {"C": c, "cv_kappa_by_C": by_c}
        if grounded:
            cand.params["grounding"] = name == "grounded"
            if name == "plain":
                block.drop_grounding()
                x = variants["plain"]
                sel.features[kind] = (block, x)
        _score(cand, sel)
    else:
        cand.params = {"C": 1.0}
    cand.params["features"] = int(x.shape[1])
    cand.seconds = time.perf_counter() - t0
    sel.candidates[kind] = cand


def _cross_validate_hybrid(sel: Selection) -> None:
    """The ``hybrid`` candidate: the non-negative pool of its blocks' out-of-fold log-probabilities,
    cross-validated on the same folds."""

    t0 = time.perf_counter()
    fold_list = sel.folds
    stacked = ["tfidf", "embed"] + [b for b in ("lm", "contrastive") if sel.candidates.get(b) is not None
                                    and sel.candidates[b].oof_logits is not None]
    cand = Candidate("hybrid", params={"C": STACK_C, "stacked": stacked, "weights": "non-negative, one per block"},
                     validated_on=f"{len(fold_list)}-fold CV of the stack on out-of-fold probabilities"
                     if fold_list else "not validated")
    if fold_list:
        z = np.hstack([log_probs(sel.candidates[b].oof_logits) for b in stacked])
        sel.features["hybrid"] = z
        cand.oof_logits = oof_pool(z, sel.y, fold_list, len(sel.labels), STACK_C)
        _score(cand, sel)
    cand.seconds = time.perf_counter() - t0 + sum(sel.candidates[b].seconds for b in stacked)
    sel.candidates["hybrid"] = cand


def _cross_validate_contrastive(sel: Selection, rows: Sequence[Mapping[str, Any]], make: Callable[[], Any],
                                tuning: dict[str, Any], status: Status) -> None:
    """The ``contrastive`` candidate: the body tuned inside each fold on that fold's training part only."""

    t0 = time.perf_counter()
    y, n, folds = sel.y, len(sel.labels), sel.folds
    status("selecting", None, f"contrastive: encoding {len(rows)} training rows")
    first = make()
    encoded = first.encode(rows)
    cand = Candidate("contrastive", validated_on=f"{len(folds)}-fold CV, the body tuned anew in each fold"
                     if folds else "not validated")
    grid = C_GRID["embed"]
    tuned: list[dict[str, Any]] = []
    grounded = bool(first.context)
    names = ("grounded", "plain") if grounded else ("",)
    use_grounding = grounded
    if folds:
        per_fold: dict[str, list[tuple[Any, Any]]] = {v: [] for v in names}  # each fold's own tuned features
        for f, (tr, va) in enumerate(folds):
            status("selecting", None, f"contrastive: tuning the body for fold {f + 1} of {len(folds)}")
            block = first if f == 0 else make()
            tuned.append(_contrastive.tune_body(block, [encoded[i] for i in tr], y[tr], seed=sel.seed + f, **tuning))
            block.fit_grounding(rows)
            full = block.features(encoded)
            for v in names:
                x = full[:, :block.plain_size] if v == "plain" else full
                per_fold[v].append((x[tr], x[va]))
            del block
        oof = {(v, c): _oof(None, y, folds, c, n, sel.seed, per_fold[v]) for v in names for c in grid}
        kappa = {key: round(selection_score(y, decide(logits), n), 4) for key, logits in oof.items()}
        by_c = {_grid_key(v, c): kappa[(v, c)] for v, c in kappa}
        best = {v: max(grid, key=lambda c: (kappa[(v, c)], -grid.index(c))) for v in names}
        v = _grounding_choice({v: (kappa[(v, best[v])], best[v], None) for v in names}) if grounded else ""
        use_grounding = v == "grounded"
        cand.oof_logits = oof[(v, best[v])]
        cand.params = {"C": best[v], "cv_kappa_by_C": by_c}
        if grounded:
            cand.params["grounding"] = use_grounding
        _score(cand, sel)
    else:
        cand.params = {"C": 1.0}
    cand.params.update({"features": int(first.size), "max_length": first.max_length,
                        "body_parameters": int(sum(p.numel() for p in first.net.parameters())),
                        "tuning": {k: tuning.get(k) for k in ("steps", "batch_size", "lr")},
                        "tuning_per_fold": tuned})
    cand.seconds = time.perf_counter() - t0
    sel.candidates["contrastive"] = cand

    def fit_all() -> tuple[Any, np.ndarray]:
        block = make()
        block.tuning = _contrastive.tune_body(block, encoded, y, seed=sel.seed, **tuning)
        if use_grounding:
            block.fit_grounding(rows)
        else:
            block.drop_grounding()
        return block, block.features(encoded)

    sel.deferred["contrastive"] = fit_all


def _grid_key(variant: str, c: float) -> str:
    """The report's key of one grid point: ``C`` alone, or ``grounded C=1.0`` / ``plain C=1.0``."""
    return f"{variant} C={c}" if variant else str(c)


def _grounding_choice(results: Mapping[str, tuple[float, Any, Any]]) -> str:
    """``grounded`` or ``plain`` (the same block without its grounding features), by CV kappa on the
    same folds; the grounding features must beat the plain block by more than ``TIE`` (they are many
    more features, a risk with few rows or long contexts)."""
    return "grounded" if results["grounded"][0] > results["plain"][0] + TIE else "plain"


def standard_error(c: Candidate) -> float:
    """The standard error of a candidate's CV kappa: the spread of its fold kappas / sqrt(folds)."""
    f = np.asarray(c.fold_kappas, dtype=float)
    return float(f.std(ddof=1) / np.sqrt(len(f))) if len(f) >= 2 else 0.0


def fitted_parameters(sel: Selection, name: str) -> int | None:
    """How many parameters the candidate fits to the training rows: its head's weights and biases (one
    weight vector per label; one for a binary metric), the contrastive body's tuned weights, and for the
    hybrid its blocks' heads plus the pool's weights and biases. None when a count is unknown."""
    n = len(sel.labels)
    heads = 1 if n == 2 else n
    c = sel.candidates.get(name)
    if c is None:
        return None
    if name in ("hybrid", BLEND):  # the blend's pool fits nothing: only its blocks' heads
        parts = [fitted_parameters(sel, b) for b in c.params.get("stacked") or []]
        if not parts or any(p is None for p in parts):
            return None
        return int(sum(parts)) + ((len(parts) + n) if name == "hybrid" else 0)  # type: ignore[arg-type]
    features = c.params.get("features")
    if features is None:
        return None
    return int(features) * heads + heads + int(c.params.get("body_parameters", 0))


def _simplicity(sel: Selection, names: Sequence[str]) -> dict[str, tuple[int, int]]:
    """The order among candidates with exactly the same CV kappa: fewest fitted parameters first (when
    every count is known), then cost (``COST_ORDER``)."""
    counts = {n: fitted_parameters(sel, n) for n in names}
    known = all(v is not None for v in counts.values())
    return {n: ((counts[n] or 0) if known else 0, COST_ORDER.index(n) if n in COST_ORDER else len(COST_ORDER))
            for n in names}


def blend(sel: Selection, members: Sequence[str]) -> Candidate:
    """The equal-weight log-linear pool of ``members`` (single feature blocks): logits = the mean of their
    log-probabilities. Nothing is fitted on top of the blocks, so its out-of-fold kappa is as honest as
    theirs (no second-level fit on the same folds, unlike ``hybrid``'s pool)."""

    oof = np.mean([log_probs(sel.candidates[m].oof_logits) for m in members], axis=0)
    cand = Candidate(BLEND, oof, params={"stacked": list(members), "weights": "equal, fixed"},
                     validated_on=f"{len(sel.folds)}-fold CV (the mean of its blocks' out-of-fold log-probabilities)",
                     seconds=sum(sel.candidates[m].seconds for m in members))
    _score(cand, sel)
    return cand


def _cv_winner(sel: Selection, scored: Mapping[str, float]) -> str:
    """The cross-validated candidates' winner, with ``sel.reason``.

    First among the single blocks (:func:`_single_winner`: the highest CV kappa, or the equal-weight
    pool of those within one standard error of it). A fitted stack (``hybrid``: a pool fitted on the
    blocks' out-of-fold scores, a second level of fitting on the same ~100 rows) replaces it only when its
    CV kappa is higher by more than its own standard error: its estimate carries that second fit's
    optimism (PII, seeds regime, 8 splits: the highest-CV rule shipped hybrid on 4 splits, one at 0.00
    held out against TF-IDF's 0.18; with the margin on 3, that one still among them:
    ``benchmarks/results/splits.md``).
    """
    singles = {n: k for n, k in scored.items() if n in FEATURE_BLOCKS}
    stacks = {n: k for n, k in scored.items() if n not in FEATURE_BLOCKS}
    if not singles:
        top = max(stacks, key=lambda n: stacks[n])
        sel.reason = f"{top} has the highest CV kappa ({stacks[top]:.3f})"
        return top
    winner = _single_winner(sel, singles)
    best = sel.candidates[winner].cv_kappa or 0.0
    for name in sorted(stacks, key=lambda n: -stacks[n]):
        margin = max(TIE, standard_error(sel.candidates[name]))
        if stacks[name] > best + margin:
            sel.reason = (f"{name} ({stacks[name]:.3f}) beats the single blocks' winner, {winner} ({best:.3f}), by "
                          f"more than its own standard error ({margin:.3f}); before that: {sel.reason}")
            return name
        sel.reason += (f"; {name} ({stacks[name]:.3f}) does not beat it by more than its own standard error "
                       f"({margin:.3f})")
    return winner


def _single_winner(sel: Selection, scored: Mapping[str, float]) -> str:
    """The single blocks' winner, with ``sel.reason``.

    ``top`` is the highest CV kappa. The candidates within one standard error of it (its fold kappas'
    spread / sqrt(k), at least ``TIE``) are within noise of each other: picking one of them by any fixed
    preference ships the worse one on some tasks (fewest parameters kept ``embed`` on a refusal task
    where TF-IDF led by less than one SE, 0.553 held out against TF-IDF's 0.654). When two or more
    are within noise, their equal-weight pool (:func:`blend`) is scored on the same out-of-fold rows and
    ships when its CV kappa is at least the top's less ``TIE``: two models of about equal accuracy that
    read a row differently (n-grams, embeddings) err on different rows, and their average is the safer
    bet on both kinds of task. Otherwise the top ships: a gap one way ships the better candidate, never
    the worse one.
    """
    simple = _simplicity(sel, list(scored))
    top = max(scored, key=lambda n: (scored[n], tuple(-v for v in simple[n])))
    tol = max(TIE, standard_error(sel.candidates[top]))
    tied = [n for n in COST_ORDER if n in scored and scored[n] >= scored[top] - tol]
    others = ", ".join(f"{n} {scored[n]:.3f}" for n in sorted(scored, key=lambda n: -scored[n]) if n != top)
    sel.reason = f"{top} has the highest CV kappa ({scored[top]:.3f}" + (f"; then {others})" if others else ")")
    if len(tied) < 2:
        return top
    pool = blend(sel, tied)
    sel.candidates[BLEND] = pool
    if pool.cv_kappa is not None and pool.cv_kappa >= scored[top] - TIE:
        sel.reason = (f"{', '.join(tied)} are within one standard error ({tol:.3f}) of the best CV kappa "
                      f"({top} {scored[top]:.3f}): their equal-weight pool scores {pool.cv_kappa:.3f} on the same "
                      f"out-of-fold rows and ships" + (f" (all: {others})" if others else ""))
        return BLEND
    sel.reason += (f"; the equal-weight pool of {', '.join(tied)} (within one standard error, {tol:.3f}) "
                   f"scores {pool.cv_kappa:.3f}, below it by more than {TIE}")
    return top


def choose(sel: Selection, candidates: Sequence[str], val_idx: np.ndarray | None = None) -> str:
    """Pick the winner among ``candidates``.

    1. The cross-validated candidates (all but ``encoder``): :func:`_cv_winner` (the highest CV kappa,
       or the equal-weight pool of the single blocks within one standard error of it).
    2. ``encoder`` against that winner on ``val_idx``, the encoder's validation rows (every training row
       when it was cross-validated on the same folds, up to ``train.encoder_cv_rows`` rows; else the
       calibration slice: k fine-tunes cost too much): it must beat the winner's out-of-fold kappa there by
       more than one standard error of its own kappa (it is the costliest candidate), or be within noise of
       it and pool with it (:func:`_encoder_against`).
    """
    k = len(sel.labels)
    sel.candidates.pop(BLEND, None)  # pools from an earlier call: rebuilt from the candidates asked for
    sel.candidates.pop(POOLED, None)
    usable = [n for n in candidates if n in sel.candidates and not sel.candidates[n].error and n != POOLED]
    scored = {n: sel.candidates[n].cv_kappa for n in usable if n != "encoder" and sel.candidates[n].cv_kappa is not None
              and sel.candidates[n].oof_logits is not None}
    enc = sel.candidates.get("encoder") if "encoder" in usable else None
    if not scored and (enc is None or enc.val_kappa is None):
        sel.winner = usable[0] if usable else candidates[0]
        sel.reason = f"no cross-validation was possible ({'; '.join(sel.notes) or 'too few rows'}): the first " \
                     f"configured candidate, {sel.winner}, is used"
        sel.compared_on = "nothing"
        return sel.winner
    sel.compared_on = f"{len(sel.folds)}-fold cross-validation on {sel.rows} training rows"
    winner = _cv_winner(sel, scored) if scored else None  # type: ignore[arg-type]
    if val_idx is not None and len(val_idx):  # for the report: every candidate on the encoder's validation rows
        for n, c in sel.candidates.items():
            if n != "encoder" and c.oof_logits is not None:
                c.val_kappa = selection_score(sel.y[val_idx], decide(c.oof_logits[val_idx]), k)
    if enc is not None and enc.val_kappa is not None:
        winner = _encoder_against(sel, enc, winner, val_idx)
    sel.winner = winner
    return winner  # type: ignore[return-value]


def _encoder_against(sel: Selection, enc: Candidate, winner: str | None, val_idx: np.ndarray | None) -> str:
    """The encoder against the cross-validated winner on its validation rows (with ``sel.reason``): their
    equal-weight pool (``POOLED``, see :func:`_pooled`) when the two are within noise of each other
    (``POOL_BAND``) and the pool scores within that band of the better one's kappa; else the encoder when it
    beats the winner there by more than one standard error of its kappa (at least ``TIE``), the rule a fitted
    stack meets (:func:`_cv_winner`); else the winner. On a slice too small to pool on (fewer than
    ``POOL_MIN_ROWS`` rows: ~15 of 100 training rows when the encoder could not be cross-validated in the
    budget), a lead of ``TIE`` is chance: a kappa on 15 rows has a standard error of about 0.2."""
    if enc.params.get("validation") == OUT_OF_FOLD and val_idx is not None:
        where = f"the out-of-fold predictions of every training row ({len(val_idx)} rows, the same folds)"
    elif val_idx is not None:
        where = f"the encoder's validation rows (the calibration slice of the training rows, {len(val_idx)} rows)"
    else:
        where = "the encoder's validation rows"
    sel.compared_on += f", then the encoder against the winner on {where}"
    if winner is None:
        sel.reason = f"encoder is the only candidate with a validation kappa ({enc.val_kappa:.3f})"
        return "encoder"
    lin = sel.candidates[winner]
    pool = _pooled(sel, enc, winner, val_idx)
    if pool is not None and lin.val_kappa is not None:
        tol = max(TIE, POOL_BAND * _interval_se(enc.ci))
        best = max(enc.val_kappa, lin.val_kappa)  # type: ignore[type-var]
        if abs(enc.val_kappa - lin.val_kappa) <= tol and pool.val_kappa >= best - tol:  # type: ignore[operator]
            follows = _dominated(sel, pool, winner, val_idx)  # type: ignore[arg-type]  # a pool has its rows
            sel.reason = (f"the encoder ({enc.val_kappa:.3f}) and the cross-validated winner {winner} "
                          f"({lin.val_kappa:.3f}) are within noise of each other ({tol:.3f}) on {where}: their "
                          f"equal-weight pool scores {pool.val_kappa:.3f} there and ships{follows}; before that: "
                          f"{sel.reason}")
            return POOLED
    margin = max(TIE, ENCODER_MARGIN * _interval_se(enc.ci))
    if lin.val_kappa is not None and enc.val_kappa > lin.val_kappa + margin:  # type: ignore[operator]
        sel.reason = (f"encoder ({enc.val_kappa:.3f}) beats the cross-validated winner {winner} "
                      f"({lin.val_kappa:.3f}, its out-of-fold predictions) by more than its own standard error "
                      f"({margin:.3f}) on {where}; before that: {sel.reason}")
        return "encoder"
    got = f"{lin.val_kappa:.3f}" if lin.val_kappa is not None else "n/a"
    sel.reason += (f"; the encoder ({enc.val_kappa:.3f}) does not beat it by more than its own standard error "
                   f"({margin:.3f}) on {where} ({winner} {got} there)")
    return winner


def _pooled(sel: Selection, enc: Candidate, winner: str, val_idx: np.ndarray | None) -> Candidate | None:
    """The encoder pooled with the cross-validated winner at equal weight (the mean of their log-probabilities)
    on the encoder's validation rows, recorded as the ``POOLED`` candidate; None without the logits. Both
    members' logits there are honest: the encoder never trained on those rows, and the winner's are its
    out-of-fold logits. The refit ships the pool as one hybrid model (``evaluator._linear.pool_with``)."""
    lin = sel.candidates[winner]
    if (enc.val_logits is None or lin.oof_logits is None or val_idx is None or len(val_idx) != len(enc.val_logits)
            or len(val_idx) < POOL_MIN_ROWS):
        return None
    k = len(sel.labels)
    z = (log_probs(enc.val_logits) + log_probs(lin.oof_logits[val_idx])) / 2.0
    yv = sel.y[val_idx]
    cand = Candidate(POOLED, params={"members": ["encoder", winner], "weights": "equal, fixed"},
                     validated_on=enc.validated_on + " (the encoder's logits pooled with the winner's out-of-fold "
                                                     "logits)", seconds=enc.seconds + lin.seconds, val_logits=z)
    cand.val_kappa = cand.cv_kappa = selection_score(yv, decide(z), k)
    cand.ci = selection_interval(yv, decide(z), k, sel.seed)
    sel.candidates[POOLED] = cand
    return cand


def _dominated(sel: Selection, pool: Candidate, winner: str, val_idx: np.ndarray) -> str:
    """Words for the report when the pool decides every validation row as one member does: the mean of
    log-probabilities follows the more confident member (a fine-tuned encoder's logits are often several
    times a regularised head's), and the pool is then that member in all but name."""
    members = {"encoder": sel.candidates["encoder"].val_logits, winner: sel.candidates[winner].oof_logits[val_idx]}
    pooled = decide(pool.val_logits)
    same = [n for n, z in members.items() if np.array_equal(decide(z), pooled)]
    return (f" (its decisions there are {same[0]}'s on every row: the more confident member's log-probabilities "
            f"decide the mean)") if same else ""


def _interval_se(ci: Sequence[float] | None) -> float:
    """A standard error from a 95% interval (its width / 3.92); 0 without one."""
    return float(ci[1] - ci[0]) / 3.92 if ci and len(ci) == 2 else 0.0


def refit(metric: Any, sel: Selection, kind: str, max_length: int) -> Any:
    """The winner refit on all the selection's rows: a LinearModel (linear or hybrid)."""

    n = len(sel.labels)
    heads, blocks = {}, {}
    for b in (sel.candidates[kind].params["stacked"] if kind in ("hybrid", BLEND) else (kind,)):
        if b not in sel.features and b in sel.deferred:
            sel.features[b] = sel.deferred.pop(b)()
        block, x = sel.features[b]
        c = float(sel.candidates[b].params.get("C", 1.0))
        y = sel.fit_y if sel.fit_y is not None and x.shape[0] == len(sel.fit_y) else sel.y  # pairwise: both orders
        heads[b] = LinearHead.from_sklearn(_lr(c, sel.seed).fit(x, y), n)
        blocks[b] = block
    stack = None
    if kind == "hybrid":
        stack = pool_head(sel.features["hybrid"], sel.y, n, STACK_C)
    elif kind == BLEND:
        stack = equal_pool(len(blocks), n)
    return LinearModel(metric, blocks, heads, stack, max_length)
