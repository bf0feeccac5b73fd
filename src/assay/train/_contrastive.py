"""Contrastive fine-tuning of an embedding body: SetFit's recipe, read top to bottom.

Few labels are the product's starting point. Frozen sentence embeddings already separate many
metrics; pulling rows of one label together and pushing rows of different labels apart, with pairs
drawn from the labeled rows, separates them further (Tunstall et al. 2022, "Efficient Few-Shot
Learning Without Prompts"). A logistic-regression head is then fitted on the tuned embeddings, as
for the frozen ``embed`` candidate.

- Pairs: the rows in a shuffled order, each row as anchor once per round; one positive (another row
  of its label, target cosine 1) and one negative (a row of another label, target cosine 0) per
  anchor, until ``steps * batch_size`` pairs exist. The pair set depends only on the labels and the seed.
- Loss: mean squared error between the pair's cosine similarity and its target (SetFit's
  ``CosineSimilarityLoss``), on mean-pooled last hidden states.
- AdamW, linear warm-up over the first 10% of steps then linear decay; dropout on while tuning.
"""

from __future__ import annotations

import math
import random
import time
from typing import Any, Sequence

import numpy as np

WARMUP = 0.1


def contrastive_pairs(y: Sequence[int], n_pairs: int, seed: int) -> list[tuple[int, int, float]]:
    """``n_pairs`` (i, j, target) index pairs over rows with labels ``y``: half positive, half negative."""
    rng = random.Random(seed)
    by_label: dict[int, list[int]] = {}
    for i, lab in enumerate(y):
        by_label.setdefault(int(lab), []).append(i)
    if len(by_label) < 2:
        return []
    pairs: list[tuple[int, int, float]] = []
    while len(pairs) < n_pairs:
        order = list(range(len(y)))
        rng.shuffle(order)
        for i in order:
            same = by_label[int(y[i])]
            if len(same) > 1:
                j = i
                while j == i:
                    j = rng.choice(same)
                pairs.append((i, j, 1.0))
            other = rng.choice([lab for lab in by_label if lab != int(y[i])])
            pairs.append((i, rng.choice(by_label[other]), 0.0))
            if len(pairs) >= n_pairs:
                break
    return pairs[:n_pairs]


def tune_body(block: Any, encoded: Sequence[Any], y: Sequence[int], *, steps: int, batch_size: int, lr: float,
              seed: int) -> dict[str, Any]:
    """Fine-tune ``block.net`` (an ``EmbedFeatures``) in place on contrastive pairs of ``encoded`` rows."""
    import torch

    torch.manual_seed(seed)
    pairs = contrastive_pairs(y, steps * batch_size, seed)
    t0 = time.perf_counter()
    if not pairs:
        return {"steps": 0, "pairs": 0, "note": "one label only: the body is not tuned"}
    net = block.net
    net.train()
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=0.01)
    total = math.ceil(len(pairs) / batch_size)
    warmup = max(1, int(WARMUP * total))
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: (s + 1) / (warmup + 1) if s < warmup else max(0.0, 1.0 - (s - warmup) / max(1, total - warmup)))
    losses: list[float] = []
    for step in range(total):
        batch = pairs[step * batch_size:(step + 1) * batch_size]
        left = block.pooled([encoded[i] for i, _, _ in batch])
        right = block.pooled([encoded[j] for _, j, _ in batch])
        target = torch.tensor([t for _, _, t in batch], dtype=left.dtype)
        loss = torch.nn.functional.mse_loss(torch.nn.functional.cosine_similarity(left, right), target)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()
        sched.step()
        losses.append(float(loss.detach()))
    net.eval()
    k = max(1, len(losses) // 5)
    return {"steps": total, "pairs": len(pairs), "batch_size": batch_size, "learning_rate": lr,
            "loss_first": round(float(np.mean(losses[:k])), 4), "loss_last": round(float(np.mean(losses[-k:])), 4),
            "seconds": round(time.perf_counter() - t0, 2)}
