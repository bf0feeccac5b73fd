"""The ``encoder`` block: the fine-tuned neural candidate as one member of a pooled evaluator.

``train`` fine-tunes the family in ``model:`` (MiniLM with LoRA by default, or SmolLM2 for the decoder
family) on the fit rows and validates it on the calibration slice, while the linear candidates are
cross-validated. When the two are within noise of each other there, their equal-weight pool usually
beats both (they read a row differently: a fine-tuned body against n-grams or frozen embeddings, and err
on different rows), and ``train/_fit.py`` ships the pool: a ``hybrid`` LinearModel whose blocks are the
cross-validated winner's and this one, its stacking head the mean of the two members' log-probabilities.

As a block, the network's label logits are its features and its head is the identity (``identity_head``),
so the LinearModel's stacking code pools it like any other block. Its weights are the family's own files
(``adapter_model.safetensors`` + ``adapter_config.json`` or ``model.safetensors``, and ``head.safetensors``
for the encoder), beside ``linear.safetensors``; ``evaluator.json`` ``linear.neural`` records the family,
its base and its model settings, which :meth:`NeuralBlock.load` rebuilds it from.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from ..config import ModelConfig
from ..errors import AssayError
from ..metrics import MetricSpec
from ._base_models import BaseRef, resolve_base
from ._chunks import network_logits
from ._common import merge_lora, quiet_loading

NEURAL = "encoder"  # the block's name: the neural candidate's name in train.candidates


class NeuralBlock:
    """A fine-tuned encoder / decoder network as a feature block: features = its label logits."""

    kind = NEURAL

    def __init__(self, metric: MetricSpec, model: Any, family: str, base: BaseRef, model_cfg: Mapping[str, Any],
                 batch_size: int = 32):
        self.metric, self.model = metric, model.eval()
        self.family, self.base, self.model_cfg = family, base, dict(model_cfg)
        self.batch_size = batch_size
        self.max_length = int(model.max_length)
        self.context: list[str] = []  # no grounding features
        self.keep_end = False
        if family == "encoder" and hasattr(model, "net"):
            merge_lora(model.net)  # one Linear per projection when scoring, as the encoder family scores

    def transform(self, rows: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """The network's raw label logits of ``rows`` [n_rows, n_labels] (batched by length, on the
        network's device, at the precision of the caller's autocast)."""
        encoded = self.model.encode(list(rows))
        with torch.inference_mode():
            z = network_logits(self.model, encoded, self.batch_size, next(self.model.parameters()).device, self.size)
        return z.astype(np.float64)

    @property
    def size(self) -> int:
        return len(self.metric.labels)

    plain_size = size

    def describe(self) -> dict[str, Any]:
        return {"family": self.family, "base": self.base.name, "max_length": self.max_length,
                "features": "the fine-tuned network's label logits (identity head)", **self.model.describe()}

    def record(self) -> dict[str, Any]:
        """``evaluator.json`` ``linear.neural``: what :meth:`load` rebuilds the network from."""
        return {"family": self.family, "base": self.base.to_dict(), "model": self.model_cfg}

    def save(self, folder: Path) -> list[str]:
        return list(self.model.save_weights(folder))

    @classmethod
    def load(cls, metric: MetricSpec, folder: Path, record: Mapping[str, Any] | None) -> "NeuralBlock":
        """The block of an artifact: the network rebuilt from ``linear.neural`` and its weight files."""
        rec = dict(record or {})
        base_rec = dict(rec.get("base") or {})
        if rec.get("family") not in ("encoder", "decoder") or not base_rec.get("name"):
            raise AssayError("linear.neural with a family (encoder or decoder) and a base in evaluator.json",
                             f"{rec or 'nothing'}", "re-run assay train", code="invalid_artifact")
        base = resolve_base(str(base_rec["name"]), hash_files=False)
        model_cfg = ModelConfig.from_artifact(dict(rec.get("model") or {}))
        with quiet_loading():
            model = build_network(metric, base, model_cfg, str(rec["family"]))
            model.load_weights(folder)
        return cls(metric, model, str(rec["family"]), base, model_cfg.model_dump(mode="json"))


def build_network(metric: MetricSpec, base: BaseRef, model_cfg: ModelConfig, family: str) -> Any:
    """The family's network (``evaluator.build_model``'s, importable from the linear family's loader)."""
    if family == "encoder":
        from ._encoder import EncoderModel

        return EncoderModel(metric, base, model_cfg)
    from ._decoder import DecoderModel  # the decoder extra: loaded only for a decoder member

    return DecoderModel(metric, base, model_cfg)

