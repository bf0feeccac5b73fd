"""Length-aware chunking of rows sorted by token length, shared by every scoring forward pass."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np


CHUNK_COST_TOKENS = 64  # one more forward call costs about as much as this many padded tokens
# At most this many padded tokens in one scoring forward (a row's windows and both pairwise orders count):
# MiniLM at 256 tokens a sequence holds about 0.5 GB of activations for it on the CPU, whatever the rows.
MAX_BATCH_TOKENS = 16_384
# Right-padded batches pad to a multiple of this many tokens: oneDNN (bf16 on AMX / AVX512-BF16 CPUs) and
# ideep keep kernels and scratch memory per input shape, and one width per token count made a server's
# RSS climb 21% from its 1,000th to its 10,000th one-row request (benchmarks/results/soak.md); rounded, it
# stays within 3%, at most 15 padded tokens a sequence.
PAD_MULTIPLE = 16


def length_chunks(lengths: Sequence[int], batch_size: int, call_cost: int = CHUNK_COST_TOKENS,
                  max_tokens: int | None = MAX_BATCH_TOKENS) -> list[tuple[int, int]]:
    """Split rows sorted by token length into consecutive chunks of at most ``batch_size`` rows,
    each padded to its longest row, minimising padded tokens plus ``call_cost`` per chunk: rows of
    very different lengths are not padded to the longest of a fixed-size slice (a mixed batch of
    16 server requests padded 1.75x the tokens one-by-one scoring computed), yet near-equal
    lengths share one call. A chunk also pads to at most ``max_tokens`` tokens (a row longer than that
    goes alone): the activations of one forward grow with its padded tokens, not its rows, so rows
    of long contexts read in several windows cannot make one call take gigabytes.
    Returns (start, stop) index pairs."""
    n = len(lengths)
    best = [0.0] + [float("inf")] * n
    cut = [0] * (n + 1)
    for j in range(1, n + 1):
        for i in range(j - 1, max(0, j - batch_size) - 1, -1):
            if max_tokens is not None and i < j - 1 and (j - i) * lengths[j - 1] > max_tokens:
                break  # longer chunks ending at j pad even more tokens
            c = best[i] + call_cost + (j - i) * lengths[j - 1]
            if c <= best[j]:  # on equal cost the longer chunk (smaller i), as an ascending scan keeps
                best[j], cut[j] = c, i
    out, j = [], n
    while j > 0:
        out.append((cut[j], j))
        j = cut[j]
    return out[::-1]


def length_batches(encoded: Sequence[Any], batch_size: int, max_tokens: int | None = MAX_BATCH_TOKENS) -> list[list[int]]:
    """Indices of ``encoded`` rows (anything with ``.tokens``: every token the row's sequences read) in
    batches: sorted by token length, then cut by :func:`length_chunks` (at most ``batch_size`` rows and
    ``max_tokens`` padded tokens). Each batch pads to its own longest row; scatter results back by index."""
    order = sorted(range(len(encoded)), key=lambda i: encoded[i].tokens)
    return [order[a:b] for a, b in length_chunks([encoded[i].tokens for i in order], batch_size, max_tokens=max_tokens)]


def padded_width(width: int, cap: int | None = None, multiple: int = PAD_MULTIPLE) -> int:
    """``width`` rounded up to a multiple of ``multiple``, never past ``cap`` (a model's positions) nor
    below ``width``. Only for right padding: left padding would move a decoder's last token."""
    rounded = -(-width // multiple) * multiple
    return max(width, min(rounded, cap)) if cap is not None else rounded


def network_logits(model: Any, encoded: Sequence[Any], batch_size: int, device: Any, n_labels: int) -> np.ndarray:
    """An encoder / decoder network's label logits of encoded rows [n_rows, n_labels], float32: batched by
    :func:`length_batches`, collated by the network, on ``device``. The caller holds inference mode and the
    scoring precision's autocast (the Evaluator's family scoring, the pooled evaluator's ``encoder`` block)."""
    out = np.zeros((len(encoded), n_labels), dtype=np.float32)
    for idx in length_batches(encoded, batch_size):
        out[idx] = model(**model.collate([encoded[i] for i in idx], device)).float().cpu().numpy()
    return out
