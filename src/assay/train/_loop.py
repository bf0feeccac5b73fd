"""The training loop, top to bottom: seed, validation slice, batch, forward, weighted cross-entropy,
AdamW, warm-up + decay schedule, early stopping with the best weights restored.

The model returns one logit per label (the decoder's label-token logits, the encoder's head), so
the loss is a plain cross-entropy over the labels only, whatever the family.
"""

from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import numpy as np
from tqdm.auto import tqdm

from .._cpu import apply_threads
from .._memory import release_heap
from ..config import TrainingConfig
from ..data import split_rows
from ..errors import AssayError, Cancelled
from ..evaluator._common import merge_lora
from ..evaluator._device import autocast

# Learning rates that work for the shipped bases (tuned on the examples; override with train.learning_rate).
DEFAULT_LR = {("encoder", True): 1e-3, ("encoder", False): 5e-5,
              ("decoder", True): 2e-4, ("decoder", False): 2e-5}
PROBE = (2, 8)  # steps timed (the 3rd to the 8th: the first ones also build kernels) before the loop decides
# how many steps fit a deadline
# At most this many padded tokens in one training forward + backward. MiniLM's full fine-tune peaked at 3.4 GB RSS on
# a 16 x 256-token batch of the toxicity 2k rows (eager and sdpa attention alike; attention grows with the square of
# the width), so a longer batch runs in parts (train_step). Parts of 2 x 256 tokens held 450 MiB above the model
# against 800 MiB for 4 x 256, at the same step time (3.7 s for the 16 rows); the result is the whole batch's.
TRAIN_MAX_TOKENS = 512
HEAP_SLACK = 384 << 20  # the freed heap is given back once the resident size has grown by this much
MIN_SHARE = 0.25  # fewer of the planned steps fitting the deadline: the candidate is skipped, not undertrained


class OverBudget(AssayError):
    """The planned steps cannot fit the time left (``train.budget``): the candidate is skipped."""

    def __init__(self, found: str):
        super().__init__(f"at least {MIN_SHARE:.0%} of the planned training steps within train.budget", found,
                         "raise train.budget (or 'best': no limit), or lower train.epochs / max_steps",
                         code="over_budget")


def steps_within(done: int, total: int, per_step: float, left: float) -> tuple[int, str | None]:
    """How many steps of ``total`` fit: ``done`` steps are done, a step takes ``per_step`` seconds and
    ``left`` remain. The steps are cut to what fits (the schedule decays over the new count);
    :class:`OverBudget` when fewer than ``MIN_SHARE`` of them fit. Returns (steps, a note or None)."""
    fits = done + int(max(0.0, left) / per_step) if per_step > 0 else total
    if fits >= total:
        return total, None
    need = f"{total} steps at {per_step:.2f} s a step need about {total * per_step:.0f} s"
    if fits < MIN_SHARE * total:
        raise OverBudget(f"{need}; {max(0.0, left):.0f} s of the budget were left ({fits} steps)")
    return fits, f"cut from {total} to {fits} steps by train.budget ({need})"


# The encoder's fresh label head learns faster than the adapters, and much faster than pretrained weights.
HEAD_LR_SCALE = {True: 3.0, False: 20.0}  # by LoRA / full fine-tune


def seed_everything(seed: int) -> None:
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)


def class_weights(y: Sequence[int], n_labels: int, mode: str) -> list[float]:
    """Per-label loss weights, mean 1 over the labels present.

    ``balanced`` = n / (k * count); ``sqrt`` = its square root (milder: fully balanced weights make a
    rare label predicted far more often than it occurs); ``effective`` = (1 - beta) / (1 - beta^count)
    with beta = 1 - 1/n (Cui et al. 2019: between none and balanced); ``none`` = 1.
    """
    counts = np.bincount(np.asarray(y, dtype=int), minlength=n_labels).astype(float)
    if mode == "none":
        return [1.0] * n_labels
    if mode == "effective":
        beta = 1.0 - 1.0 / max(2, len(y))
        w = np.where(counts > 0, (1 - beta) / (1 - beta ** np.maximum(counts, 1)), 0.0)
    else:
        w = np.where(counts > 0, len(y) / (n_labels * np.maximum(counts, 1)), 0.0)
    if mode == "sqrt":
        w = np.sqrt(w)
    present = w[counts > 0]
    return (w / present.mean()).tolist() if present.size else [1.0] * n_labels


def length_grouped_batches(lengths: Sequence[int], batch_size: int, rng: random.Random) -> list[list[int]]:
    """Shuffled batches of similar-length rows (less padding), in a shuffled order."""
    idx = list(range(len(lengths)))
    rng.shuffle(idx)
    mega = batch_size * 32
    batches = []
    for s in range(0, len(idx), mega):
        chunk = sorted(idx[s:s + mega], key=lambda i: lengths[i])
        batches += [chunk[j:j + batch_size] for j in range(0, len(chunk), batch_size)]
    rng.shuffle(batches)
    return batches


def default_learning_rate(family: str, lora: bool) -> float:
    return DEFAULT_LR[(family, lora)]


def lr_factor(step: int, total: int, warmup: int, schedule: str) -> float:
    """The learning-rate multiplier at ``step``: linear warm-up, then linear or cosine decay to 0 (or flat)."""
    if step < warmup:
        return (step + 1) / (warmup + 1)
    progress = (step - warmup) / max(1, total - warmup)
    if schedule == "constant":
        return 1.0
    if schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
    return max(0.0, 1.0 - progress)


def validation_slice(rows: Sequence[Mapping[str, Any]], cfg: TrainingConfig, group_by: str | None = None):
    """(rows to fit, rows to validate on) for early stopping: a stratified, grouped slice of the
    training rows (never held-out rows); no slice when it would be smaller than min_validation_rows."""
    es = cfg.early_stopping
    if es is None or round(es.validation_fraction * len(rows)) < es.min_validation_rows:
        return list(rows), []
    s = split_rows(rows, es.validation_fraction, cfg.seed + 1, group_by=group_by)
    if len({r["label"] for r in s.held_out}) < 2:
        return list(rows), []
    return s.held_out, s.seeds


def train_loop(
    evaluator: Any,
    rows: Sequence[Mapping[str, Any]],
    cfg: TrainingConfig,
    *,
    progress: bool = True,
    on_status: Callable[[str, float | None, str], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    group_by: str | None = None,
    deadline: float | None = None,
) -> dict[str, Any]:
    """Fine-tune ``evaluator.model`` on labeled ``rows``; returns what happened (steps, losses, time).

    ``deadline`` (a ``time.perf_counter()`` time, from ``train.budget``): once the steps in ``PROBE`` are
    timed, the planned steps are cut to what fits before it (:func:`steps_within`; :class:`OverBudget` when too few
    fit), and training stops at it whatever the estimate said.

    With ``cfg.early_stopping`` a slice of ``rows`` (grouped by ``group_by``) is kept out of training
    and scored during it; training stops when its loss has not improved for ``patience`` evaluations
    and the weights of the best evaluation are restored.
    """
    import torch

    apply_threads(cfg.num_threads)  # train.num_threads, else at most the cores this process may use
    seed_everything(cfg.seed)
    model = evaluator.model
    train_lora_apart(model)
    data = _Data.of(evaluator, rows, cfg, group_by)  # a validation slice, tokenised once; class weights
    opt, lr = adamw(model, cfg)

    # --- schedule: linear warm-up, then linear / cosine decay to 0 over `total` (cut or not) ---------
    steps_per_epoch = max(1, math.ceil(math.ceil(len(data.fit_rows) / cfg.batch_size) / cfg.gradient_accumulation))
    total = planned = cfg.max_steps or max(1, cfg.min_steps, math.ceil(cfg.epochs * steps_per_epoch))
    warmup = int(cfg.warmup_ratio * total)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, total, warmup, cfg.lr_schedule))
    budget = _Deadline(deadline)
    early = _EarlyStopping(evaluator, data, cfg, steps_per_epoch)
    next_batch = batches_forever([e.tokens for e in data.encoded], cfg.batch_size, random.Random(cfg.seed))

    model.train()
    losses: list[float] = []
    start = time.perf_counter()
    bar = tqdm(total=total, desc="training", disable=not progress, unit="step")
    step = -1
    while step + 1 < total:
        step += 1
        if should_stop is not None and should_stop():
            raise Cancelled(f"stopped at step {step} of {total}")
        total, stop = budget.check(step, total)
        bar.total = total
        if stop:
            break
        step_loss = train_step(evaluator, data, next_batch, opt, sched, cfg, step)
        release_heap(HEAP_SLACK)  # each batch shape leaves freed heap behind: give it back (assay._memory)
        losses.append(step_loss)
        bar.update(1)
        bar.set_postfix(loss=f"{step_loss:.4f}")
        if on_status is not None:
            eta = (time.perf_counter() - start) / (step + 1) * (total - step - 1)
            on_status("training", (step + 1) / total, f"step {step + 1}/{total} loss {step_loss:.4f}, about "
                      f"{eta:.0f} s left")
        if early.stops_after(step + 1, total):
            break
    bar.close()
    early.restore_best(model, len(losses))
    model.eval()
    seconds = time.perf_counter() - start
    return {"steps": len(losses), "max_steps": total, "planned_steps": planned, "budget": budget.note,
            **_summary(evaluator, data, cfg, early, losses, seconds, lr)}


@dataclass
class _Data:
    """What the loop trains on: label indices, the fit / validation rows tokenised once, class weights."""

    labels: list[str]
    fit_rows: list[Mapping[str, Any]]
    val_rows: list[Mapping[str, Any]]
    y: list[int]
    encoded: list[Any]
    val_encoded: list[Any]
    val_y: Any  # a tensor of the validation rows' label indices
    weights: Any  # a tensor of per-label loss weights, on the model's device

    @classmethod
    def of(cls, evaluator: Any, rows: Sequence[Mapping[str, Any]], cfg: TrainingConfig,
           group_by: str | None) -> "_Data":
        import torch

        labels = list(evaluator.labels)
        y_all = [labels.index(r["label"]) for r in rows]
        if len(set(y_all)) < 2:
            raise AssayError("training rows of at least two labels",
                             f"only '{labels[y_all[0]]}'" if y_all else "no rows",
                             "add labeled rows of the other labels (or generate them)", code="too_few_rows")
        fit_rows, val_rows = validation_slice(rows, cfg, group_by)
        y = [labels.index(r["label"]) for r in fit_rows]
        encoded = evaluator.encode(fit_rows)
        val_encoded = evaluator.encode(val_rows) if val_rows else []
        val_y = torch.tensor([labels.index(r["label"]) for r in val_rows], dtype=torch.long)
        weights = torch.tensor(class_weights(y, len(labels), cfg.class_weighting), dtype=torch.float32,
                               device=evaluator.device)
        return cls(labels, fit_rows, val_rows, y, encoded, val_encoded, val_y, weights)


def train_lora_apart(model: Any) -> None:
    """An evaluator loaded for scoring has its LoRA adapters merged: train them apart."""
    if hasattr(model, "net"):

        merge_lora(model.net, merged=False)


def adamw(model: Any, cfg: TrainingConfig) -> tuple[Any, float]:
    """(AdamW, its base rate): no decay on biases and norms; the encoder's head gets ``HEAD_LR_SCALE``
    times the rate."""
    import torch

    lora = bool(getattr(model, "lora", None))
    lr = cfg.learning_rate or default_learning_rate(model.family, lora)
    head = getattr(model, "head", None)
    head_ids = {id(p) for p in head.parameters()} if head is not None else set()
    groups: dict[tuple[bool, bool], list[Any]] = {}
    for p in model.parameters():
        if p.requires_grad:
            groups.setdefault((id(p) in head_ids, p.ndim >= 2), []).append(p)
    opt = torch.optim.AdamW(
        [{"params": ps, "lr": lr * (HEAD_LR_SCALE[lora] if is_head else 1.0),
          "weight_decay": cfg.weight_decay if decay else 0.0} for (is_head, decay), ps in groups.items()],
        lr=lr,
    )
    return opt, lr


def batches_forever(lengths: Sequence[int], batch_size: int, rng: random.Random) -> Callable[[], list[int]]:
    """The next batch's row indices, endlessly: a fresh length-grouped shuffle at each epoch's end."""
    queue: list[list[int]] = []

    def next_batch() -> list[int]:
        if not queue:
            queue.extend(length_grouped_batches(lengths, batch_size, rng))
        return queue.pop()

    return next_batch


def train_step(evaluator: Any, data: _Data, next_batch: Callable[[], list[int]], opt: Any, sched: Any,
               cfg: TrainingConfig, step: int) -> float:
    """One optimizer step over ``cfg.gradient_accumulation`` batches: forward, weighted cross-entropy,
    backward, clip to norm 1, AdamW, schedule. Returns the step's loss.

    A batch is run in parts of at most ``TRAIN_MAX_TOKENS`` padded tokens (:func:`token_parts`), each part's
    summed loss divided by the whole batch's weight: the gradient of the batch's weighted mean, whatever the
    split, with the activations of one part in memory at a time."""
    import torch
    import torch.nn.functional as F

    model, device = evaluator.model, evaluator.device
    step_loss = 0.0
    for _ in range(cfg.gradient_accumulation):
        idx = next_batch()
        labels = torch.tensor([data.y[i] for i in idx], device=device)
        total = float(data.weights[labels].sum()) * cfg.gradient_accumulation  # the batch's weighted-mean divisor
        for part in token_parts(idx, [data.encoded[i].tokens for i in idx]):
            batch = model.collate([data.encoded[i] for i in part], device)
            target = torch.tensor([data.y[i] for i in part], device=device)
            with autocast(device, evaluator.dtype):
                logits = model(**batch)
            loss = F.cross_entropy(logits.float(), target, weight=data.weights, reduction="sum") / total
            loss.backward()
            step_loss += float(loss.detach())
    torch.nn.utils.clip_grad_norm_([p for g in opt.param_groups for p in g["params"]], 1.0)
    opt.step()
    sched.step()
    opt.zero_grad(set_to_none=True)
    if not math.isfinite(step_loss):
        raise AssayError("a finite training loss", f"{step_loss} at step {step + 1}",
                         "lower train.learning_rate or use train.precision: fp32", code="training_diverged")
    return step_loss


def token_parts(idx: Sequence[int], tokens: Sequence[int], max_tokens: int | None = None) -> list[list[int]]:
    """``idx`` cut into as few parts as keep each one's padded tokens (rows x its longest row's tokens) within
    ``max_tokens`` (default ``TRAIN_MAX_TOKENS``), rows sorted by length so that each part pads little."""
    limit = max_tokens or TRAIN_MAX_TOKENS
    order = sorted(range(len(idx)), key=lambda j: tokens[j])
    parts: list[list[int]] = [[]]
    for j in order:  # ascending: the row joining a part is its longest so far
        if parts[-1] and (len(parts[-1]) + 1) * tokens[j] > limit:
            parts.append([])
        parts[-1].append(idx[j])
    return parts


class _Deadline:
    """``train.budget`` inside the loop: the steps in ``PROBE`` are timed, the planned steps cut to what
    fits (:func:`steps_within`), and the loop stopped at the deadline whatever the estimate said."""

    def __init__(self, deadline: float | None):
        self.deadline = deadline
        self.probe_start = 0.0
        self.note: str | None = None  # what the budget did to the run (None: nothing)

    def check(self, step: int, total: int) -> tuple[int, bool]:
        """(the steps planned now, whether to stop before ``step``)."""
        if self.deadline is None:
            return total, False
        if step == PROBE[0]:
            self.probe_start = time.perf_counter()
        elif step == PROBE[1] and self.note is None:
            now = time.perf_counter()
            per_step = (now - self.probe_start) / (PROBE[1] - PROBE[0])
            total, self.note = steps_within(step, total, per_step, self.deadline - now)
        if step > 0 and time.perf_counter() > self.deadline:
            self.note = f"stopped by train.budget at step {step} of {total}"
            return total, True
        return total, False


class _EarlyStopping:
    """The validation slice's loss every ``steps_per_epoch / evaluations_per_epoch`` steps (and at the
    last); stop when it has not improved for ``patience`` evaluations; the best evaluation's weights are kept."""

    def __init__(self, evaluator: Any, data: _Data, cfg: TrainingConfig, steps_per_epoch: int):
        self.evaluator, self.data, self.cfg = evaluator, data, cfg
        es = cfg.early_stopping
        self.every = max(1, steps_per_epoch // es.evaluations_per_epoch) if data.val_rows and es else 0
        self.curve: list[tuple[int, float]] = []
        self.best: tuple[float, int, dict[str, Any] | None] = (math.inf, 0, None)  # loss, step, weights
        self.stopped = False

    def validation_loss(self) -> float:
        import torch
        import torch.nn.functional as F

        logits = torch.from_numpy(self.evaluator.logits_of(self.data.val_encoded, self.cfg.eval_batch_size))
        self.evaluator.model.train()
        return float(F.cross_entropy(logits, self.data.val_y, weight=self.data.weights.cpu()))

    def stops_after(self, done: int, total: int) -> bool:
        """Evaluate after ``done`` steps when one is due; True: stop training."""
        if not self.every or not (done % self.every == 0 or done == total):
            return False
        v = self.validation_loss()
        self.curve.append((done, round(v, 5)))
        if v < self.best[0]:
            model = self.evaluator.model
            self.best = (v, done, {k: p.detach().clone() for k, p in model.named_parameters() if p.requires_grad})
        elif len(self.curve) - 1 - [s for s, _ in self.curve].index(self.best[1]) >= self.cfg.early_stopping.patience:
            self.stopped = True
        return self.stopped

    def restore_best(self, model: Any, steps: int) -> None:
        """Put back the best evaluation's weights (unless it was the last step's)."""
        import torch

        if self.best[2] is None or self.best[1] == steps:
            return
        with torch.no_grad():
            for k, p in model.named_parameters():
                if k in self.best[2]:
                    p.copy_(self.best[2][k])

    def summary(self) -> dict[str, Any] | str:
        if self.data.val_rows:
            return {"best_step": self.best[1], "best_validation_loss": round(self.best[0], 5),
                    "stopped_early": self.stopped, "validation_curve": self.curve}
        if self.cfg.early_stopping is None:
            return "off"
        return f"off: fewer than {self.cfg.early_stopping.min_validation_rows} validation rows"


def _summary(evaluator: Any, data: _Data, cfg: TrainingConfig, early: _EarlyStopping, losses: list[float],
             seconds: float, lr: float) -> dict[str, Any]:
    """train_loop's record of the run, after its step counts: epochs, rows, rates, losses, time, tokens."""
    model, dtype, steps = evaluator.model, evaluator.dtype, len(losses)
    lora = bool(getattr(model, "lora", None))
    return {
        "epochs": round(steps * cfg.gradient_accumulation * cfg.batch_size / max(1, len(data.fit_rows)), 3),
        "rows": len(data.fit_rows),
        "validation_rows": len(data.val_rows),
        "early_stopping": early.summary(),
        "learning_rate": lr,
        "head_learning_rate": lr * HEAD_LR_SCALE[lora] if getattr(model, "head", None) is not None else None,
        "class_weights": dict(zip(data.labels, [round(float(w), 4) for w in data.weights.tolist()])),
        "loss_first": losses[0],
        "loss_last": losses[-1],
        "loss_curve": _downsample(losses, 50),
        "seconds": round(seconds, 2),
        "seconds_per_step": round(seconds / steps, 4),
        "device": str(evaluator.device),
        "precision": str(dtype).replace("torch.", "") if dtype is not None else "fp32",
        "truncated_rows": sum(e.truncated for e in data.encoded),
        "multi_window_rows": sum(len(e.sequences()) > 1 for e in data.encoded),
        "mean_tokens": round(float(np.mean([e.tokens for e in data.encoded])), 1),
    }


def _downsample(values: list[float], n: int) -> list[float]:
    if len(values) <= n:
        return [round(v, 5) for v in values]
    k = len(values) / n
    return [round(float(np.mean(values[int(i * k):int((i + 1) * k)])), 5) for i in range(n)]
