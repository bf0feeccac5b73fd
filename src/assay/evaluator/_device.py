"""Device and precision choice, the same for training and scoring."""

from __future__ import annotations

import contextlib
from typing import Any

from ..errors import AssayError


def select_device(name: str | None = "auto") -> Any:
    """``auto``: the first CUDA GPU, else Apple MPS, else the CPU; or a torch device string."""
    import torch

    name = (name or "auto").strip()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise AssayError("a device: auto, cpu, cuda, cuda:N or mps", f"'{name}'",
                         "set train.device to one of those", code="invalid_config") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise AssayError("a CUDA GPU for device 'cuda'", "torch sees no CUDA device",
                         "set train.device: auto (or cpu), or install a CUDA build of torch",
                         code="invalid_config")
    if dev.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise AssayError("an Apple GPU for device 'mps'", "MPS is not available",
                         "set train.device: auto (or cpu)", code="invalid_config")
    return dev


PRECISIONS = ("auto", "fp32", "bf16", "fp16", "int8")


def select_dtype(precision: str, device: Any, *, training: bool = False) -> Any:
    """The autocast dtype (None: fp32) for ``precision`` on ``device``.

    ``auto``: bf16 on a CUDA GPU that supports it; on the CPU, bf16 (training and scoring) where the CPU
    does bf16 natively (AMX or AVX512-BF16 in its flags, :func:`assay._cpu.native_bf16`), else fp32.
    Training in bf16 there halves the step time (MiniLM, 16 x 256 tokens, one thread: 1.7 -> 0.9 s with
    LoRA, 2.4 -> 1.2 s full) with the same kappa within noise (``benchmarks/results/LATEST.md`` notes);
    the weights then differ slightly from an fp32 run's, so ``fp32`` is the setting for the same weights
    on every CPU. The artifact records the precision it trained at. ``int8``
    (scoring on the CPU only, encoder family) runs in fp32 autocast-wise: the Linear layers are
    quantised instead (:func:`quantize_int8`).
    """
    import torch

    if precision not in PRECISIONS:
        raise AssayError(f"a precision: {', '.join(PRECISIONS)}", f"'{precision}'", "set precision: auto",
                         code="invalid_config")
    if precision == "auto":
        if device.type == "cuda" and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        if device.type == "cpu":
            from .._cpu import native_bf16

            return torch.bfloat16 if native_bf16() else None
        return None
    if precision == "fp32":
        return None
    if precision == "int8":
        if training:
            raise AssayError("a training precision: auto, fp32, bf16 or fp16", "precision int8 (scoring only)",
                             "set train.precision: auto, and score with precision int8", code="invalid_config")
        if device.type != "cpu":
            raise AssayError("the CPU for precision int8 (dynamic quantisation)", f"device {device}",
                             "score with device cpu, or use precision auto on a GPU", code="invalid_config")
        return None
    if device.type == "cpu" and precision == "fp16":
        raise AssayError("fp32 or bf16 on the CPU", "precision fp16", "set train.precision: auto",
                         code="invalid_config")
    return torch.bfloat16 if precision == "bf16" else torch.float16


def quantize_int8(net: Any) -> Any:
    """``net`` with its Linear layers dynamically quantised to int8 (weights int8, activations quantised
    per batch), in place; LoRA adapters are merged into the base weights first. CPU only."""
    import warnings

    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # peft's "already merged", torch.ao.quantization's deprecation notice
        if hasattr(net, "merge_and_unload"):  # peft: fold the adapters in, plain Linear layers remain
            net = net.merge_and_unload()
        from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

        # per output channel: measured closer to fp32 than one scale per tensor (max |dp| 0.06 vs 0.09)
        return quantize_dynamic(net, {torch.nn.Linear: per_channel_dynamic_qconfig}, dtype=torch.qint8, inplace=True)


def autocast(device: Any, dtype: Any):
    """Mixed precision context for ``device`` (a no-op for fp32)."""
    import torch

    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)
