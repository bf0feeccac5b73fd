"""Export an encoder-family evaluator's scoring graph to ONNX, for runtimes without torch.

The graph takes ``input_ids`` and ``attention_mask`` (int64, [batch, tokens], any batch and length up
to the artifact's ``max_length``) and returns ``logits`` (float32, [batch, n_labels]): the raw label
logits of each sequence, LoRA adapters merged in. Beside ``model.onnx`` go ``model.json`` (what turns
logits into the Evaluator's scores: labels, temperature, label shift, threshold) and the tokenizer
(``model.tokenizer/``). Tokenisation and the truncation policy stay outside the graph; a row the
Evaluator reads as several sequences (context windows, a pairwise row in both orders) gives one
logit row per sequence, which the caller pools as ``model.json`` describes.
"""

from __future__ import annotations

import copy
import json
import warnings
from pathlib import Path
from typing import Any

from ..errors import AssayError, require

OPSET = 17


def _graph(model: Any) -> Any:
    """``model`` as a module of (input_ids, attention_mask) -> logits, the graph's signature."""
    import torch

    class Graph(torch.nn.Module):
        def __init__(self, inner: Any):
            super().__init__()
            self.inner = inner

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
            return self.inner(input_ids=input_ids, attention_mask=attention_mask)

    return Graph(model).eval()


def export_onnx(ev: Any, out: str | Path, opset: int = OPSET) -> dict[str, Any]:
    """Write ``ev``'s scoring graph to ``out`` (an ``.onnx`` path); returns what was written."""
    import torch

    require("onnx", "exporting an evaluator to ONNX", extra="onnx")
    if ev.family != "encoder" or not hasattr(ev.model, "net"):
        raise AssayError("an encoder-family artifact to export to ONNX", f"family {ev.family}",
                         "export an artifact trained with model.family: encoder", code="invalid_input")
    if getattr(ev, "precision", "auto") == "int8":
        raise AssayError("an fp32 evaluator to export", "one quantised to int8",
                         "load the artifact with precision fp32 to export it", code="invalid_input")
    out = Path(out).expanduser()
    if out.suffix != ".onnx":
        out = out / "model.onnx" if out.is_dir() or not out.suffix else out.with_suffix(".onnx")
    out.parent.mkdir(parents=True, exist_ok=True)
    model = copy.deepcopy(ev.model).to("cpu").float().eval()
    ids = torch.full((2, 16), int(model.tokenizer.pad_token_id or 0), dtype=torch.long)
    mask = torch.ones_like(ids)
    mask[1, 8:] = 0
    with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
        warnings.simplefilter("ignore")  # peft's "already merged", tracer notes on Python control flow
        if hasattr(model.net, "merge_and_unload"):  # peft adapters folded into plain Linear weights
            model.net = model.net.merge_and_unload()
        graph = _graph(model)
        torch.onnx.export(graph, (ids, mask), str(out), input_names=["input_ids", "attention_mask"],
                          output_names=["logits"], opset_version=opset, dynamo=False,
                          dynamic_axes={"input_ids": {0: "batch", 1: "tokens"},
                                        "attention_mask": {0: "batch", 1: "tokens"}, "logits": {0: "batch"}})
    tok_dir = out.with_suffix(".tokenizer")
    model.tokenizer.save_pretrained(str(tok_dir))
    meta = {
        "graph": {"inputs": ["input_ids", "attention_mask"], "output": "logits", "opset": opset},
        "metric": ev.metric.name,
        "labels": list(ev.labels),
        "positive": ev.metric.positive if ev.metric.is_binary else None,
        "max_length": model.max_length,
        "pad_token_id": model.tokenizer.pad_token_id,
        "tokenizer": tok_dir.name,
        "temperature": ev.temperature,
        "label_shift": (None if ev.label_shift is None else
                        {lab: float(v) for lab, v in zip(ev.labels, ev.label_shift)}),
        "threshold": ev.threshold,
        "scores": "softmax(logits / temperature + label_shift); binary: positive when P(positive) >= threshold, "
                  "else argmax",
        "views": ("a row read as several sequences (context windows, a pairwise row in both orders) gives one "
                  f"logit row per sequence: pool them by {model.chunk_aggregation} (pairwise: map the swapped "
                  f"order's labels back with swap_permutation, then average)"),
        "swap_permutation": None if model.swap_perm is None else list(model.swap_perm),
        "input_format": model.describe().get("input_format"),
    }
    meta_path = out.with_suffix(".json")
    meta_path.write_text(json.dumps(meta, indent=2, default=str) + "\n")
    return {"onnx": str(out), "metadata": str(meta_path), "tokenizer": str(tok_dir), "labels": list(ev.labels)}
