"""What both model families share: encoded rows, batching, LoRA wrapping and weight files."""

from __future__ import annotations

import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Hashable, Iterator, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from ..config import LoraConfig as LoraSettings
from ..errors import AssayError
from ..metrics import MetricSpec, render
from ._artifact import ADAPTER_CONFIG_FILE, ADAPTER_FILE, FULL_FILE
from ._chunks import padded_width

TRUNCATION_POLICY = (
    "Fields are fitted to max_length tokens before scoring: the judged field (output; input for "
    "single-message metrics) is never cut unless it alone exceeds max_length; the other fields are "
    "cut first, largest first, keeping 2/3 head and 1/3 tail around ' [...] '. Encoder, pair encoding "
    "(input_output, rag, tools): a context longer than the room left by the judged field is read in "
    "overlapping windows (model.context_chunks), not cut; the judged field and request are cut only past "
    "3/4 of max_length."
)


@contextmanager
def quiet_loading() -> Iterator[None]:
    """Load base models without transformers' progress bars and deprecation chatter."""
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            yield
    finally:
        hf_logging.set_verbosity(level)
        if bars:
            hf_logging.enable_progress_bar()


@dataclass
class Encoded:
    """One row as model input: token ids, the row's token count, and whether any of it was left out.

    A row may be read as several sequences (``views``): overlapping windows of a long context, or a
    pairwise row in both orders (``swapped``: responses A and B exchanged). The model scores each
    view and pools them into the row's logits (:meth:`LabelModel.pool_views`).
    """

    ids: list[int]
    tokens: int
    truncated: bool
    views: list[list[int]] | None = None  # None: the row is the one sequence ``ids``
    swapped: list[bool] | None = None  # per view: A and B exchanged (pairwise)

    def sequences(self) -> list[list[int]]:
        return self.views or [self.ids]


def render_fitted(metric: MetricSpec, row: Mapping[str, Any], budget: int, tokenizer: Any,
                  keep_end: bool = False) -> tuple[str, bool]:
    """The rendered prompt within ``budget`` tokens, and whether the policy had to cut a field."""
    text = render(metric, row, budget=max(budget, 1), tokenizer=tokenizer, keep_end=keep_end)
    return text, text != render(metric, row)


class LabelModel(nn.Module):
    """A family's network: rows in, one logit per label out (``forward`` -> [batch, n_labels])."""

    family: str = ""
    pad_left: bool = False
    chunk_aggregation: str = "mean"  # several context windows -> one row: mean of logits, or per-label max

    def __init__(self, metric: MetricSpec, tokenizer: Any, max_length: int):
        super().__init__()
        self.metric = metric
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.swap_perm = metric.swap_permutation()  # pairwise: labels of (B, A) in terms of (A, B)

    def encode(self, rows: Sequence[Mapping[str, Any]]) -> list[Encoded]:
        raise NotImplementedError

    def collate(self, batch: Sequence[Encoded], device: Any) -> dict[str, torch.Tensor]:
        """Pad a batch (left for decoders so the last position is the prompt's end).

        Rows read as several views add ``owner`` (the row of each sequence) and ``swapped``.
        """
        seqs: list[list[int]] = []
        owner: list[int] = []
        swapped: list[bool] = []
        for i, e in enumerate(batch):
            views = e.sequences()
            seqs += views
            owner += [i] * len(views)
            swapped += list(e.swapped or [False] * len(views))
        width = max(len(s) for s in seqs)
        if not self.pad_left:  # right padding leaves every real token's position as it was
            config = getattr(getattr(self, "net", None), "config", None)
            width = padded_width(width, getattr(config, "max_position_embeddings", None))
        pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
        mask = torch.zeros((len(seqs), width), dtype=torch.long)
        for i, s in enumerate(seqs):
            n = len(s)
            sl = slice(width - n, width) if self.pad_left else slice(0, n)
            ids[i, sl] = torch.tensor(s, dtype=torch.long)
            mask[i, sl] = 1
        out = {"input_ids": ids.to(device), "attention_mask": mask.to(device)}
        if len(seqs) != len(batch) or any(swapped):
            out["owner"] = torch.tensor(owner, dtype=torch.long, device=device)
            out["swapped"] = torch.tensor(swapped, dtype=torch.bool, device=device)
        return out

    def pool_views(self, logits: torch.Tensor, owner: torch.Tensor | None,
                   swapped: torch.Tensor | None) -> torch.Tensor:
        """Per-sequence logits [n_seqs, n_labels] -> per-row logits [n_rows, n_labels].

        A swapped pairwise view's logits are mapped back (a <-> b) first; the views of a row are
        then averaged (pairwise orders always; context windows by ``chunk_aggregation``: the mean,
        or each label's maximum over the windows).
        """
        if owner is None:
            return logits
        if swapped is not None and self.swap_perm is not None and bool(swapped.any()):
            perm = torch.tensor(self.swap_perm, dtype=torch.long, device=logits.device)
            logits = torch.where(swapped.unsqueeze(-1), logits[:, perm], logits)
        n_rows = int(owner.max()) + 1
        index = owner.unsqueeze(-1).expand_as(logits)
        if self.chunk_aggregation == "max" and self.swap_perm is None:
            out = torch.full((n_rows, logits.shape[1]), float("-inf"), dtype=logits.dtype, device=logits.device)
            return out.scatter_reduce(0, index, logits, reduce="amax", include_self=True)
        total = torch.zeros((n_rows, logits.shape[1]), dtype=logits.dtype, device=logits.device)
        total = total.scatter_add(0, index, logits)
        count = torch.bincount(owner, minlength=n_rows).clamp(min=1).to(logits.dtype)
        return total / count.unsqueeze(-1)

    def describe(self) -> dict[str, Any]:
        """Family-specific facts for evaluator.json."""
        return {}

    # --- weights ------------------------------------------------------------------------------
    def save_weights(self, folder: Path) -> list[str]:
        raise NotImplementedError

    def load_weights(self, folder: Path) -> None:
        raise NotImplementedError


def wrap_lora(model: nn.Module, lora: LoraSettings, targets: Any, base_name: str) -> nn.Module:
    """``model`` with LoRA adapters on ``targets`` (a list of module names or a regex)."""
    from peft import LoraConfig, get_peft_model

    cfg = LoraConfig(r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout, target_modules=targets,
                     bias="none")
    try:
        return get_peft_model(model, cfg)
    except ValueError as exc:
        raise AssayError(
            f"LoRA target modules that exist in the base model {base_name}",
            f"none of {targets} ({str(exc).splitlines()[0][:120]})",
            "set model.lora.target_modules to the names of its linear layers, or model.lora: null",
            code="invalid_config",
        ) from None


def merge_lora(net: nn.Module, merged: bool = True) -> bool:
    """Fold a peft model's LoRA adapters into its base weights for scoring (``merged``), or take them
    back out for training; the adapter weights stay as they are, so saving is unchanged. Returns
    whether ``net`` has adapters."""
    layers = [m for m in net.modules() if hasattr(m, "merged") and hasattr(m, "lora_A")]
    if not layers:
        return False
    if merged and not all(m.merged for m in layers):
        net.merge_adapter()
    elif not merged and any(m.merged for m in layers):
        net.unmerge_adapter()
    return True


def save_tensors(tensors: Mapping[str, torch.Tensor], path: Path, metadata: Mapping[str, str] | None = None) -> None:
    """Write a safetensors file whose bytes depend only on its contents (see :func:`canonical_bytes`)."""
    from safetensors.torch import save

    raw = save({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, metadata=dict(metadata or {}))
    Path(path).write_bytes(canonical_bytes(raw))


def canonical_bytes(raw: bytes) -> bytes:
    """A safetensors file with its JSON header's keys sorted.

    safetensors keeps ``__metadata__`` in a hash map, so two metadata keys come out in either order
    from one save to the next; readers use the explicit data offsets, not the key order, so sorting
    keeps the file valid and makes the same tensors and metadata always give the same bytes.
    """
    import json
    import struct

    n = struct.unpack("<Q", raw[:8])[0]
    header = json.dumps(json.loads(raw[8:8 + n]), sort_keys=True, separators=(",", ":")).encode()
    header += b" " * (-len(header) % 8)
    return struct.pack("<Q", len(header)) + header + raw[8 + n:]


def save_adapter(peft_model: nn.Module, folder: Path) -> list[str]:
    from peft import get_peft_model_state_dict

    save_tensors(get_peft_model_state_dict(peft_model), folder / ADAPTER_FILE, {"format": "pt"})
    peft_model.peft_config["default"].save_pretrained(str(folder))
    return [ADAPTER_FILE, ADAPTER_CONFIG_FILE]


def load_adapter(peft_model: nn.Module, folder: Path) -> None:
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    path = folder / ADAPTER_FILE
    if not path.exists():
        raise AssayError(f"{ADAPTER_FILE} in the artifact", f"no such file in {folder}",
                         "point at a complete artifact directory (re-run assay train)", code="invalid_artifact")
    result = set_peft_model_state_dict(peft_model, load_file(str(path)))
    missing = [k for k in getattr(result, "unexpected_keys", []) if "lora_" in k]
    if missing:
        raise AssayError("adapter weights that match the base model", f"unexpected keys like {missing[0]}",
                         "load the artifact with the base model it was trained on", code="invalid_artifact")


def save_full(model: nn.Module, folder: Path, name: str = FULL_FILE) -> list[str]:
    from safetensors.torch import save_model

    path = folder / name
    save_model(model, str(path), metadata={"format": "pt"})  # tied weights stored once, as load_model expects
    path.write_bytes(canonical_bytes(path.read_bytes()))
    return [name]


def load_full(model: nn.Module, folder: Path, name: str = FULL_FILE) -> None:
    from safetensors.torch import load_model

    path = folder / name
    if not path.exists():
        raise AssayError(f"{name} in the artifact", f"no such file in {folder}",
                         "point at a complete artifact directory (re-run assay train)", code="invalid_artifact")
    load_model(model, str(path), strict=True)


def memoised(cache: dict[Any, np.ndarray], keys: Sequence[Hashable], encoded: Sequence[Any],
             compute: Callable[[Sequence[Any]], np.ndarray], dim: int) -> np.ndarray:
    """The rows' vectors from ``cache`` by ``keys`` (one per row of ``encoded``); the rows not in it are
    computed in one ``compute`` call and stored. The feature blocks' opt-in memos (benchmarks)."""
    todo = [i for i, k in enumerate(keys) if k not in cache]
    if todo:
        for i, v in zip(todo, compute([encoded[i] for i in todo])):
            cache[keys[i]] = v
    return np.stack([cache[k] for k in keys]) if keys else np.zeros((0, dim), dtype=np.float32)
