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
- The winner (:func:`choose`): the one-standard-error rule over the CV kappas (the simplest candidate
  within one standard error of the best: the fewest fitted parameters, :func:`fitted_parameters`; equal
  counts or unknown ones go by cost, tfidf < embed < contrastive < hybrid), then the ``encoder``
  against that winner on the encoder's validation slice.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from ..errors import require
from ..metrics._render import keeps_end
from ..stats import bootstrap_ci, cohen_kappa
from ._pool import oof_logits, oof_pool, pool_head

COST_ORDER = ("tfidf", "embed", "contrastive", "hybrid", "encoder")  # cheapest first: the tie-break after parameters
TIE = 0.01  # kappa within this of the best counts as a tie
C_GRID = {"tfidf": (0.3, 1.0, 3.0, 10.0), "embed": (0.1, 0.3, 1.0, 3.0, 10.0)}
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
    error: str | None = None

    def summary(self) -> dict[str, Any]:
        return {"name": self.name, "cv_kappa": self.cv_kappa, "ci": self.ci, "fold_kappas": self.fold_kappas,
                "validation_kappa": self.val_kappa, "seconds": round(self.seconds, 2),
                "validated_on": self.validated_on, "params": self.params, "error": self.error}


@dataclass
class Selection:
    rows: int
    rows_hash: list[str]  # content hashes of every row selection saw (never held-out rows)
    labels: list[str]
    y: np.ndarray
    folds: list[tuple[np.ndarray, np.ndarray]]
    group_by: str | None
    seed: int
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
                "tie_tolerance": TIE, "rule": "one standard error", "cost_order": list(COST_ORDER), "notes": self.notes,
                "order": "fewest fitted parameters, then cost",
                "fitted_parameters": {n: fitted_parameters(self, n) for n in self.candidates if n != "encoder"},
                "candidates": [c.summary() for c in self.candidates.values()]}


def make_folds(rows: Sequence[Mapping[str, Any]], y: np.ndarray, k: int, seed: int,
               group_by: str | None) -> tuple[list[tuple[np.ndarray, np.ndarray]], list[str]]:
    """Stratified (grouped) k folds of the rows; k lowered to the smallest label's count."""
    require("sklearn", "model selection", "train", package="scikit-learn")
    from sklearn.model_selection import StratifiedGroupKFold

    from ..data import row_hash

    notes = []
    present = np.bincount(y) if len(y) else np.zeros(1, dtype=int)
    smallest = int(present[present > 0].min()) if present.any() else 0
    k_eff = min(k, smallest)
    if k_eff < k:
        notes.append(f"cv_folds lowered from {k} to {k_eff}: the rarest label has {smallest} training rows")
    if k_eff < 2:
        return [], notes + ["no cross-validation: a label has fewer than 2 training rows"]
    try:
        from ..data import group_key

        groups = [group_key(r, group_by) for r in rows]
    except ImportError:  # pragma: no cover - older data module
        groups = [row_hash(r) for r in rows]
    cv = StratifiedGroupKFold(n_splits=k_eff, shuffle=True, random_state=seed)
    folds = [(tr, va) for tr, va in cv.split(np.zeros(len(y)), y, groups) if len(va)]
    return folds, notes


def _lr(c: float, seed: int) -> Any:
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(C=c, class_weight="balanced", max_iter=2000, random_state=seed)


def _oof(x: Any, y: np.ndarray, folds: Sequence[tuple[np.ndarray, np.ndarray]], c: float, n_labels: int,
         seed: int, per_fold: Sequence[tuple[Any, Any]] | None = None) -> np.ndarray:
    from ..evaluator._linear import LinearHead

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
    from ..evaluator._linear import TfidfFeatures

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
                   status: Status | None = None) -> Selection:
    """Cross-validate the linear candidates (``tfidf``, ``embed``, ``contrastive``, ``hybrid``) on ``rows``.

    ``embed`` / ``contrastive`` make a fresh embedding block; ``tuning`` holds the contrastive
    tuning's ``steps``, ``batch_size`` and ``lr``.
    """
    from ..data import row_hash
    from ..evaluator._linear import TfidfFeatures, log_probs

    status = status or (lambda *a: None)
    labels = list(metric.labels)
    y = np.array([labels.index(r["label"]) for r in rows], dtype=int)
    fold_list, notes = make_folds(rows, y, folds, seed, group_by)
    sel = Selection(rows=len(rows), rows_hash=[row_hash(r) for r in rows], labels=labels, y=y, folds=fold_list,
                    group_by=group_by, seed=seed, notes=notes)
    need = set(kinds) | ({"tfidf", "embed"} if "hybrid" in kinds else set())
    n = len(labels)
    for kind in ("tfidf", "embed"):
        if kind not in need:
            continue
        t0 = time.perf_counter()
        status("selecting", None, f"{kind}: features of {len(rows)} training rows")
        block = TfidfFeatures(metric) if kind == "tfidf" else embed()  # type: ignore[misc]
        x = block.fit(rows)
        sel.features[kind] = (block, x)
        cand = Candidate(kind, validated_on=f"{len(fold_list)}-fold CV" if fold_list else "not validated")
        if fold_list:
            grid = C_GRID[kind] if kind == "embed" or x.nnz <= LARGE_NNZ else C_GRID_LARGE
            grounded = kind == "embed" and bool(block.context)
            variants = {"grounded": x, "plain": x[:, :block.plain_size]} if grounded else {"": x}
            per_fold = _tfidf_per_fold(metric, rows, fold_list) if kind == "tfidf" else None
            results: dict[str, tuple[float, float, np.ndarray]] = {}
            by_c = {}
            for name, xv in variants.items():
                for c in grid:
                    status("selecting", None, f"{kind}: {len(fold_list)}-fold CV, C={c}" + (f", {name}" if name else ""))
                    logits = _oof(xv, y, fold_list, c, n, seed, per_fold)
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
    if "contrastive" in kinds and contrastive is not None:
        _cross_validate_contrastive(sel, rows, contrastive, dict(tuning or {}), status)
    if "hybrid" in kinds:
        t0 = time.perf_counter()
        stacked = ["tfidf", "embed"] + (["contrastive"] if sel.candidates.get("contrastive") is not None
                                        and sel.candidates["contrastive"].oof_logits is not None else [])
        cand = Candidate("hybrid", params={"C": STACK_C, "stacked": stacked, "weights": "non-negative, one per block"},
                         validated_on=f"{len(fold_list)}-fold CV of the stack on out-of-fold probabilities"
                         if fold_list else "not validated")
        if fold_list:
            z = np.hstack([log_probs(sel.candidates[b].oof_logits) for b in stacked])
            sel.features["hybrid"] = z
            cand.oof_logits = oof_pool(z, y, fold_list, n, STACK_C)
            _score(cand, sel)
        cand.seconds = time.perf_counter() - t0 + sum(sel.candidates[b].seconds for b in stacked)
        sel.candidates["hybrid"] = cand
    for kind in list(sel.candidates):  # blocks fitted only for the hybrid are not candidates themselves
        if kind not in kinds:
            sel.candidates[kind].validated_on += " (component of hybrid, not a candidate)"
    return sel


def _cross_validate_contrastive(sel: Selection, rows: Sequence[Mapping[str, Any]], make: Callable[[], Any],
                                tuning: dict[str, Any], status: Status) -> None:
    """The ``contrastive`` candidate: the body tuned inside each fold on that fold's training part only."""
    from ._contrastive import tune_body

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
            tuned.append(tune_body(block, [encoded[i] for i in tr], y[tr], seed=sel.seed + f, **tuning))
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
        block.tuning = tune_body(block, encoded, y, seed=sel.seed, **tuning)
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
    if name == "hybrid":
        parts = [fitted_parameters(sel, b) for b in c.params.get("stacked") or []]
        if not parts or any(p is None for p in parts):
            return None
        return int(sum(parts)) + len(parts) + n  # type: ignore[arg-type]
    features = c.params.get("features")
    if features is None:
        return None
    return int(features) * heads + heads + int(c.params.get("body_parameters", 0))


def _simplicity(sel: Selection, names: Sequence[str]) -> dict[str, tuple[int, int]]:
    """The one-standard-error rule's order: fewest fitted parameters first (when every count is
    known), then cost (``COST_ORDER``)."""
    counts = {n: fitted_parameters(sel, n) for n in names}
    known = all(v is not None for v in counts.values())
    return {n: ((counts[n] or 0) if known else 0, COST_ORDER.index(n)) for n in names}


def choose(sel: Selection, candidates: Sequence[str], val_idx: np.ndarray | None = None) -> str:
    """Pick the winner among ``candidates``.

    1. The cross-validated candidates (all but ``encoder``) by the one-standard-error rule: the
       simplest whose CV kappa is within one standard error of the best's (at least ``TIE``): the
       fewest fitted parameters (:func:`fitted_parameters`; a 384-wide head on frozen embeddings fits
       fewer than one on a TF-IDF vocabulary of thousands of terms), then the cheaper. With a hundred
       rows, fold-to-fold noise is often larger than the gaps between candidates, and the model with
       fewer parameters is then the safer pick (Hastie, Tibshirani and Friedman, *The Elements of
       Statistical Learning*, 7.10). Over 8 seed / held-out splits of each of five datasets, the cost
       order (tfidf first) scored 0.037 (tau-bench) and 0.024 (tool calls) less held-out kappa than
       this one, and the same on the other three (``benchmarks/results/splits.md``).
    2. ``encoder`` (no out-of-fold predictions: k fine-tunes cost too much) against that winner on
       ``val_idx``, the encoder's validation rows: it must beat the winner's out-of-fold kappa there by
       more than ``TIE`` (it is the costliest candidate).
    """
    k = len(sel.labels)
    usable = [n for n in candidates if n in sel.candidates and not sel.candidates[n].error]
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
    if val_idx is not None and len(val_idx):  # for the report: every candidate on the encoder's validation rows
        for n in scored:
            c = sel.candidates[n]
            c.val_kappa = selection_score(sel.y[val_idx], decide(c.oof_logits[val_idx]), k)
    winner = None
    if scored:
        simple = _simplicity(sel, list(scored))
        top = max(scored, key=lambda n: (scored[n], tuple(-v for v in simple[n])))
        se = standard_error(sel.candidates[top])
        tol = max(TIE, se)
        tied = [n for n in scored if scored[n] >= scored[top] - tol]
        winner = min(tied, key=lambda n: (simple[n], -scored[n]))
        others = ", ".join(f"{n} {scored[n]:.3f}" for n in sorted(scored, key=lambda n: -scored[n]) if n != winner)
        if winner == top:
            sel.reason = f"{winner} has the highest CV kappa ({scored[winner]:.3f}" + (f"; then {others})" if others else ")")
        else:
            why = (f"fewer fitted parameters ({simple[winner][0]:,} against {simple[top][0]:,})"
                   if simple[winner][0] < simple[top][0] else "as many fitted parameters or fewer, and cheaper")
            sel.reason = (f"{winner} ({scored[winner]:.3f}) is within one standard error ({tol:.3f}) of the best, "
                          f"{top} ({scored[top]:.3f}), and simpler: {why}; the one-standard-error rule picks the "
                          "simpler candidate" + (f" (all: {others})" if others else ""))
    if enc is not None and enc.val_kappa is not None:
        where = (f"the encoder's validation rows (the calibration slice of the training rows, {len(val_idx)} rows)"
                 if val_idx is not None else "the encoder's validation rows")
        if winner is None:
            winner, sel.reason = "encoder", f"encoder is the only candidate with a validation kappa ({enc.val_kappa:.3f})"
        else:
            lin = sel.candidates[winner]
            if lin.val_kappa is not None and enc.val_kappa > lin.val_kappa + TIE:
                sel.reason = (f"encoder ({enc.val_kappa:.3f}) beats the cross-validated winner {winner} "
                              f"({lin.val_kappa:.3f}, its out-of-fold predictions) on {where}; before that: {sel.reason}")
                winner = "encoder"
            else:
                got = f"{lin.val_kappa:.3f}" if lin.val_kappa is not None else "n/a"
                sel.reason += (f"; the encoder ({enc.val_kappa:.3f}) does not beat it by more than {TIE} on {where} "
                               f"({winner} {got} there)")
        sel.compared_on += f", then the encoder against the winner on {where}"
    sel.winner = winner
    return winner


def refit(metric: Any, sel: Selection, kind: str, max_length: int) -> Any:
    """The winner refit on all the selection's rows: a LinearModel (linear or hybrid)."""
    from ..evaluator._linear import LinearHead, LinearModel

    n = len(sel.labels)
    heads, blocks = {}, {}
    for b in (sel.candidates["hybrid"].params["stacked"] if kind == "hybrid" else (kind,)):
        if b not in sel.features and b in sel.deferred:
            sel.features[b] = sel.deferred.pop(b)()
        block, x = sel.features[b]
        c = float(sel.candidates[b].params.get("C", 1.0))
        heads[b] = LinearHead.from_sklearn(_lr(c, sel.seed).fit(x, sel.y), n)
        blocks[b] = block
    stack = None
    if kind == "hybrid":
        stack = pool_head(sel.features["hybrid"], sel.y, n, STACK_C)
    return LinearModel(metric, blocks, heads, stack, max_length)


# --- orchestration: what ``train`` calls ----------------------------------------------------------
def set_seeds(seed: int) -> None:
    """Seed python, numpy, torch (and transformers) before any weight or head is created."""
    from ._loop import seed_everything

    seed_everything(seed)
    try:
        from transformers import set_seed

        set_seed(seed)
    except ImportError:  # pragma: no cover - transformers is part of the train extra
        pass


def fit_and_select(cfg: Any, metric: Any, train_rows: list[dict[str, Any]], fit_rows: list[dict[str, Any]],
                   cal_rows: list[dict[str, Any]], target_prior: dict[str, float] | None, *,
                   group_by: str | None = None, progress: bool = True, status: Status | None = None,
                   should_stop: Callable[[], bool] | None = None) -> tuple[Any, dict[str, Any], dict[str, Any],
                                                                            dict[str, Any] | None]:
    """Train the configured candidates on the training rows, pick one, calibrate it.

    Returns (evaluator, training stats, calibration, selection summary or None when there was one
    candidate). The neural candidate (``encoder``: the family in ``model:``) trains on ``fit_rows`` and
    is validated and calibrated on ``cal_rows``; linear candidates are cross-validated on all
    ``train_rows``, the winner refit on all of them and calibrated on its out-of-fold logits.
    """
    from ..data import row_hash
    from ..evaluator import Evaluator
    from ..evaluator._linear import EMBED_KINDS
    from ._calibrate import calibrate
    from ._loop import train_loop

    status = status or (lambda *a: None)
    t = cfg.train
    if t.num_threads:  # every candidate, not only the neural one: the embeddings are a torch forward too
        from .._cpu import apply_threads

        apply_threads(t.num_threads)
    kinds = list(dict.fromkeys(t.candidates))
    present = sorted({r["label"] for r in train_rows})
    if len(present) < 2:
        from ..errors import AssayError

        raise AssayError("training rows of at least two labels", f"only {present or 'no rows'}",
                         "add labeled rows of the other labels (or generate them)", code="too_few_rows")
    linear = [k for k in kinds if k != "encoder"]
    set_seeds(t.seed)  # before any weight or head exists
    neural = None
    if "encoder" in kinds:  # built first: a bad base or label tokens fail before any other work
        status("preparing", 0.5, f"loading the {cfg.model.family} base model {cfg.model.base_name}")
        neural = Evaluator.create(metric, cfg.model, device=t.device, precision=t.precision)
    sel: Selection | None = None
    if linear:
        status("selecting", 0.0, f"cross-validating {', '.join(linear)} on {len(train_rows)} training rows")

        def embed() -> Any:
            from ..evaluator._base_models import resolve_base
            from ..evaluator._linear import EmbedFeatures

            base_name = cfg.model.base_name if cfg.model.family == "encoder" else "minilm"
            return EmbedFeatures(metric, resolve_base(base_name), cfg.model.max_length, t.eval_batch_size,
                                 grounding=t.grounding, keep_end=keeps_end(metric))

        def contrastive() -> Any:
            from ..evaluator._base_models import resolve_base
            from ..evaluator._linear import ContrastiveFeatures

            base_name = cfg.model.base_name if cfg.model.family == "encoder" else "minilm"
            length = min(cfg.model.max_length, t.contrastive_max_length)
            return ContrastiveFeatures(metric, resolve_base(base_name), length, t.eval_batch_size,
                                       grounding=t.grounding, keep_end=keeps_end(metric))

        sel = cross_validate(metric, train_rows, linear, folds=t.cv_folds, seed=t.seed, group_by=group_by,
                             embed=embed, contrastive=contrastive, status=status,
                             tuning={"steps": t.contrastive_steps, "batch_size": t.contrastive_batch_size,
                                     "lr": t.contrastive_lr})
    stats: dict[str, Any] = {}
    if neural is not None:
        set_seeds(t.seed)  # the same batches and dropout whatever ran before
        status("training", 0.0, f"training on {len(fit_rows)} rows")
        t0 = time.perf_counter()
        stats = train_loop(neural, fit_rows, t, progress=progress, on_status=status, should_stop=should_stop)
        seconds = time.perf_counter() - t0
        if sel is not None:
            cand = Candidate("encoder", seconds=seconds, params={"family": cfg.model.family,
                                                                 "lora": bool(cfg.model.lora)},
                             validated_on=f"one held-back slice of {len(cal_rows)} training rows (the calibration "
                                          f"rows; trained on the other {len(fit_rows)})")
            if len(cal_rows) >= 2:
                k = len(metric.labels)
                yv = np.array([list(metric.labels).index(r["label"]) for r in cal_rows])
                pv = decide(neural.predict_logits(cal_rows, t.eval_batch_size))
                cand.val_kappa = selection_score(yv, pv, k)
                cand.cv_kappa = cand.val_kappa
                cand.ci = selection_interval(yv, pv, k, t.seed)
            else:
                cand.error = "no validation rows (too few training rows for a calibration slice)"
            sel.candidates["encoder"] = cand
    if sel is None:  # the encoder alone: no selection
        assert neural is not None
        cal = calibrate(neural, cal_rows, t.threshold_objective, t.threshold_target, t.eval_batch_size, target_prior,
                        **_review(t))
        stats["eval_batch_size"] = t.eval_batch_size
        return neural, stats, cal, None
    val_idx = None
    if neural is not None and "encoder" in sel.candidates and sel.candidates["encoder"].val_kappa is not None:
        pos = {row_hash(r): i for i, r in enumerate(train_rows)}
        val_idx = np.array([pos[row_hash(r)] for r in cal_rows if row_hash(r) in pos], dtype=int)
    if not sel.folds:  # no CV: a hybrid cannot be stacked
        kinds = [k for k in kinds if k != "hybrid"] or ["tfidf"]
    winner = choose(sel, kinds, val_idx)
    if winner == "encoder":
        cal = calibrate(neural, cal_rows, t.threshold_objective, t.threshold_target, t.eval_batch_size, target_prior,
                        **_review(t))
        stats["eval_batch_size"] = t.eval_batch_size
        return neural, stats, cal, sel.summary()
    status("training", 0.5, f"refitting {winner} on all {len(train_rows)} training rows")
    t0 = time.perf_counter()
    model = refit(metric, sel, winner, cfg.model.max_length)
    info = {"family": model.family, "linear": {"kind": winner, "blocks": list(model.blocks),
                                              "max_lengths": {b: model.blocks[b].max_length for b in EMBED_KINDS
                                                              if b in model.blocks},
                                              "grounding": {b: model.blocks[b].context for b in EMBED_KINDS
                                                            if b in model.blocks and model.blocks[b].context},
                                              "keep_end": {b: True for b in EMBED_KINDS
                                                           if b in model.blocks and model.blocks[b].keep_end}},
            "model": cfg.model.model_dump(mode="json")}
    embedder = next((model.blocks[b] for b in EMBED_KINDS if b in model.blocks), None)
    if embedder is not None:
        info["base"] = embedder.base.to_dict()
    ev = Evaluator(metric, model, info=info, device="cpu")
    stats = {"family": model.family, "kind": winner, "rows": len(train_rows), "steps": 0,
             "seconds": round(time.perf_counter() - t0, 2), "eval_batch_size": t.eval_batch_size,
             "device": "cpu", "selection_seconds": round(sum(c.seconds for c in sel.candidates.values()), 2)}
    oof = sel.candidates[winner].oof_logits
    if oof is not None:
        cal = calibrate(ev, train_rows, t.threshold_objective, t.threshold_target, t.eval_batch_size, target_prior,
                        logits=oof, source=f"out-of-fold scores of the {len(sel.folds)}-fold cross-validation "
                                           "(every training row)", **_review(t))
    else:
        cal = calibrate(ev, [], t.threshold_objective, t.threshold_target, t.eval_batch_size, target_prior,
                        source="no rows (no cross-validation was possible)", **_review(t))
    return ev, stats, cal, sel.summary()
