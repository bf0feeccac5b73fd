"""The encoder family: a sentence encoder (MiniLM) + mean pooling + a linear label head.

Two input forms, both without the judge prompt's instructions (they are the same for every row, so
an encoder learns nothing from them and they would only use up tokens):

* compact (``message``, ``trace``, ``session``, ``pairwise``): the row's fields, judged field first
  (``output: ... [SEP] input: ... [SEP] context: ...``), fitted with :func:`assay.metrics.render`'s
  truncation policy;
* pair (``input_output``, ``rag``, ``tools`` with ``model.pair_encoding``): the judged field (with the
  request for ``rag``/``tools``) as the tokenizer's first segment and its context (``input``,
  ``context`` or ``tools``) as the second. A context that does not fit is read in up to
  ``model.context_chunks`` overlapping windows, each window scored with the whole first segment, and
  the window logits pooled (``model.chunk_aggregation``: mean, or per-label max), the same way in
  training and scoring.

Pairwise rows are read in both orders (A, B) and (B, A) and the two logit vectors averaged, the
second mapped back a <-> b, so a score never depends on which response came first.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
from torch import nn

from ..config import ModelConfig
from ..errors import AssayError
from ..metrics import InputShape, MetricSpec, field_text, judged_field, render, swap_pair
from ._artifact import HEAD_FILE
from ._base_models import BaseRef
from ._common import (Encoded, LabelModel, load_adapter, load_full, render_fitted, save_adapter, save_full,
                      save_tensors, wrap_lora)

# Attention and MLP projections of BERT-like encoders, not the unused pooler.
DEFAULT_TARGETS = r"^(?!.*pooler).*\.(query|key|value|dense)$"
# The context field of each shape that is read as the second segment (pair encoding).
CONTEXT_FIELD = {InputShape.input_output: "input", InputShape.rag: "context", InputShape.tools: "tools"}
MIN_CONTEXT_SHARE = 4  # the first segment leaves at least 1/4 of max_length to the context
CHUNK_OVERLAP = 4  # consecutive context windows overlap by 1/4 of a window
FIT_SLACK = 2  # tokens below max_length (plus one per field) under which a row is tokenised only once
FIT_CHARS = 8  # characters per token above which a row is not tried whole (it would not fit)


def compact_metric(metric: MetricSpec, sep: str, drop: tuple[str, ...] = ()) -> MetricSpec:
    """The metric with its prompt replaced by its fields only, judged field first (``drop``: left out)."""
    judged = judged_field(metric)
    order = [judged] + (["output_b"] if metric.shape == InputShape.pairwise else [])
    fields = order + [f for f in metric.fields if f not in order]
    template = f" {sep} ".join(f"{f}: {{{f}}}" for f in fields if f in metric.fields and f not in drop)
    return metric.model_copy(update={"prompt": template})


def pair_template(tokenizer: Any) -> tuple[list[int], list[int], list[int]]:
    """The special tokens the tokenizer puts before, between and after two segments ([CLS], [SEP], [SEP])."""
    ids = tokenizer("x", "y")["input_ids"]
    x = tokenizer("x", add_special_tokens=False)["input_ids"]
    y = tokenizer("y", add_special_tokens=False)["input_ids"]
    i = next(k for k in range(len(ids)) if ids[k:k + len(x)] == x)
    j = next(k for k in range(i + len(x), len(ids)) if ids[k:k + len(y)] == y)
    return ids[:i], ids[i + len(x):j], ids[j + len(y):]


def windows(n: int, size: int, max_windows: int) -> tuple[list[int], bool]:
    """Start offsets of at most ``max_windows`` windows of ``size`` over ``n`` tokens, overlapping by
    ``size // CHUNK_OVERLAP`` and spread evenly; and whether some tokens fall between windows."""
    if n <= size:
        return [0], False
    stride = max(1, size - size // CHUNK_OVERLAP)
    k = min(max_windows, 1 + -(-(n - size) // stride))
    if k == 1:
        return [0], True
    starts = [round(i * (n - size) / (k - 1)) for i in range(k)]
    return starts, any(b - a > size for a, b in zip(starts, starts[1:]))


class EncoderModel(LabelModel):
    family = "encoder"
    pad_left = False

    def __init__(self, metric: MetricSpec, base: BaseRef, model_cfg: ModelConfig):
        from transformers import AutoModel, AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(base.path)
        tokenizer.model_max_length = 1 << 30  # counting long fields is fine; max_length is enforced here
        super().__init__(metric, tokenizer, model_cfg.max_length)
        encoder = AutoModel.from_pretrained(base.path, dtype=torch.float32)
        limit = getattr(encoder.config, "max_position_embeddings", None)
        if limit and model_cfg.max_length > limit:
            raise AssayError(f"model.max_length at most {limit} for {base.name}", f"{model_cfg.max_length}",
                             f"set model.max_length: {min(limit, 512)}", code="invalid_config")
        self.sep = tokenizer.sep_token or "\n"
        self.view = compact_metric(metric, self.sep)
        self.context_field = CONTEXT_FIELD.get(metric.shape) if model_cfg.pair_encoding else None
        if self.context_field not in metric.fields:
            self.context_field = None
        self.first_view = compact_metric(metric, self.sep, drop=(self.context_field,)) if self.context_field else None
        self.context_chunks = model_cfg.context_chunks
        self.chunk_aggregation = model_cfg.chunk_aggregation
        self.pair_template = pair_template(tokenizer)
        self.n_pair_special = sum(map(len, self.pair_template))
        self.mark_ids = tokenizer(" [...] ", add_special_tokens=False)["input_ids"]
        self.lora = model_cfg.lora
        self.targets = (model_cfg.lora.target_modules or DEFAULT_TARGETS) if model_cfg.lora else None
        self.net = wrap_lora(encoder, model_cfg.lora, self.targets, base.name) if model_cfg.lora else encoder
        self.dropout = nn.Dropout(0.1)
        self.head = nn.Linear(encoder.config.hidden_size, len(metric.labels))
        n_special = len(tokenizer("x")["input_ids"]) - len(tokenizer("x", add_special_tokens=False)["input_ids"])
        self.budget = model_cfg.max_length - n_special

    # --- rows -> token ids ------------------------------------------------------------------------
    def encode(self, rows: Sequence[Mapping[str, Any]]) -> list[Encoded]:
        if self.context_field:
            return [self._encode_pair(row) for row in rows]
        out = []
        for row in rows:
            e = self._encode_compact(row)
            if self.swap_perm is not None:  # pairwise: both orders, pooled in forward
                b = self._encode_compact(swap_pair(row))
                e = Encoded(e.ids, e.tokens + b.tokens, e.truncated or b.truncated, [e.ids, b.ids], [False, True])
            out.append(e)
        return out

    def _ids(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def _encode_compact(self, row: Mapping[str, Any]) -> Encoded:
        # Tokenised once when the row clearly fits: the truncation policy counts the template and each
        # field apart, which for BERT-like tokenizers adds up to the whole text's count; the slack
        # absorbs tokenizers where a join changes a token or two, and near the limit the policy decides.
        text = render(self.view, row)
        if len(text) <= FIT_CHARS * self.max_length:  # longer text: past max_length anyway, skip the try
            ids = self.tokenizer(text)["input_ids"]
            if len(ids) <= self.max_length - FIT_SLACK - len(self.view.fields):
                return Encoded(ids, len(ids), False)
        text, cut = render_fitted(self.view, row, self.budget, self.tokenizer)
        ids = self.tokenizer(text)["input_ids"]
        if len(ids) > self.max_length:  # the judged field alone is too long: keep its start
            ids = self.tokenizer(text, truncation=True, max_length=self.max_length)["input_ids"]
            cut = True
        return Encoded(ids, len(ids), cut)

    def _encode_pair(self, row: Mapping[str, Any]) -> Encoded:
        """[CLS] judged field (+ request) [SEP] context window [SEP], one sequence per window."""
        room = self.max_length - self.n_pair_special
        value = field_text(row.get(self.context_field)).strip()
        ctx = self._ids(f"{self.context_field}: {value}") if value else []
        first_room = room - min(len(ctx), room // MIN_CONTEXT_SHARE)
        a = self._ids(render(self.first_view, row))
        cut = False
        if len(a) > first_room:  # judged field + request too long: the request is cut first, then the rest
            a = self._ids(render(self.first_view, row, budget=first_room, tokenizer=self.tokenizer))[:first_room]
            cut = True
        if not ctx:
            pre, mid, _ = self.pair_template
            ids = pre + a + mid
            return Encoded(ids, len(ids), cut)
        size = room - len(a)
        if len(ctx) > size and self.context_chunks == 1:  # one window: head 2/3 and tail 1/3 of the context
            keep = max(1, size - len(self.mark_ids))
            head = max(1, (keep * 2) // 3)
            ctx = ctx[:head] + self.mark_ids + (ctx[-(keep - head):] if keep > head else [])
            ctx, cut = ctx[:size], True
        starts, gaps = windows(len(ctx), size, self.context_chunks)
        pre, mid, post = self.pair_template
        views = [pre + a + mid + ctx[s:s + size] + post for s in starts]
        # tokens: what the model reads for the row, all windows together
        return Encoded(views[0], sum(map(len, views)), cut or gaps, views if len(views) > 1 else None)

    # --- forward -----------------------------------------------------------------------------------
    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, owner: torch.Tensor | None = None,
                swapped: torch.Tensor | None = None) -> torch.Tensor:
        hidden = self.net(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)
        return self.pool_views(self.head(self.dropout(pooled)).float(), owner, swapped)

    def describe(self) -> dict[str, Any]:
        if self.context_field:
            fmt = (f"pair: [CLS] {self.first_view.prompt} [SEP] {self.context_field}: ... [SEP]; a longer "
                   f"{self.context_field} is read in up to {self.context_chunks} overlapping windows, window "
                   f"logits pooled by {self.chunk_aggregation}")
        else:
            fmt = "fields only, judged field first: " + self.view.prompt
            if self.swap_perm is not None:
                fmt += "; both orders (A, B) and (B, A), logits averaged with a <-> b mapped back"
        return {
            "input_format": fmt,
            "pair_encoding": bool(self.context_field),
            "pooling": "mean",
            "lora_target_modules": self.targets,
            "hidden_size": self.head.in_features,
        }

    def save_weights(self, folder: Path) -> list[str]:
        files = save_adapter(self.net, folder) if self.lora else save_full(self.net, folder)
        save_tensors(self.head.state_dict(), folder / HEAD_FILE, {"format": "pt"})
        return files + [HEAD_FILE]

    def load_weights(self, folder: Path) -> None:
        from safetensors.torch import load_file

        load_adapter(self.net, folder) if self.lora else load_full(self.net, folder)
        if not (folder / HEAD_FILE).exists():
            raise AssayError(f"{HEAD_FILE} in the artifact", f"no such file in {folder}",
                             "point at a complete artifact directory (re-run assay train)", code="invalid_artifact")
        self.head.load_state_dict(load_file(str(folder / HEAD_FILE)))
