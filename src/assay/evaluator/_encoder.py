"""The encoder family: a sentence encoder (MiniLM) + mean pooling + a linear label head.

The input is the row's fields in a compact form, judged field first
(``output: ... [SEP] input: ... [SEP] context: ...``): the judge prompt's instructions are the
same for every row, so an encoder learns nothing from them and they would only use up tokens.
The fields still go through :func:`assay.metrics.render`, so the truncation policy holds.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
from torch import nn

from ..config import ModelConfig
from ..errors import AssayError
from ..metrics import MetricSpec, judged_field
from ._base_models import BaseRef
from ._common import HEAD_FILE, Encoded, LabelModel, load_adapter, load_full, render_fitted, save_adapter, save_full, wrap_lora

# Attention and MLP projections of BERT-like encoders, not the unused pooler.
DEFAULT_TARGETS = r"^(?!.*pooler).*\.(query|key|value|dense)$"


def compact_metric(metric: MetricSpec, sep: str) -> MetricSpec:
    """The metric with its prompt replaced by its fields only, judged field first."""
    judged = judged_field(metric)
    fields = [judged] + [f for f in metric.fields if f != judged]
    template = f" {sep} ".join(f"{f}: {{{f}}}" for f in fields if f in metric.fields)
    return metric.model_copy(update={"prompt": template})


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
        self.lora = model_cfg.lora
        self.targets = (model_cfg.lora.target_modules or DEFAULT_TARGETS) if model_cfg.lora else None
        self.net = wrap_lora(encoder, model_cfg.lora, self.targets, base.name) if model_cfg.lora else encoder
        self.dropout = nn.Dropout(0.1)
        self.head = nn.Linear(encoder.config.hidden_size, len(metric.labels))
        n_special = len(tokenizer("x")["input_ids"]) - len(tokenizer("x", add_special_tokens=False)["input_ids"])
        self.budget = model_cfg.max_length - n_special

    def encode(self, rows: Sequence[Mapping[str, Any]]) -> list[Encoded]:
        out = []
        for row in rows:
            text, cut = render_fitted(self.view, row, self.budget, self.tokenizer)
            ids = self.tokenizer(text)["input_ids"]
            if len(ids) > self.max_length:  # the judged field alone is too long: keep its start
                ids = self.tokenizer(text, truncation=True, max_length=self.max_length)["input_ids"]
                cut = True
            out.append(Encoded(ids, len(ids), cut))
        return out

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.net(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)
        return self.head(self.dropout(pooled)).float()

    def describe(self) -> dict[str, Any]:
        return {
            "input_format": "fields only, judged field first: " + self.view.prompt,
            "pooling": "mean",
            "lora_target_modules": self.targets,
            "hidden_size": self.head.in_features,
        }

    def save_weights(self, folder: Path) -> list[str]:
        from safetensors.torch import save_file

        files = save_adapter(self.net, folder) if self.lora else save_full(self.net, folder)
        state = {k: v.detach().contiguous().cpu() for k, v in self.head.state_dict().items()}
        save_file(state, str(folder / HEAD_FILE), metadata={"format": "pt"})
        return files + [HEAD_FILE]

    def load_weights(self, folder: Path) -> None:
        from safetensors.torch import load_file

        load_adapter(self.net, folder) if self.lora else load_full(self.net, folder)
        if not (folder / HEAD_FILE).exists():
            raise AssayError(f"{HEAD_FILE} in the artifact", f"no such file in {folder}",
                             "point at a complete artifact directory (re-run assay train)", code="invalid_artifact")
        self.head.load_state_dict(load_file(str(folder / HEAD_FILE)))
