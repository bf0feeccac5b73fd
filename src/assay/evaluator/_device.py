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


def select_dtype(precision: str, device: Any) -> Any:
    """The autocast dtype: ``auto`` is bf16 on a CUDA GPU that supports it, else fp32 (None)."""
    import torch

    if precision == "auto":
        if device.type == "cuda" and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return None
    if precision == "fp32":
        return None
    if device.type == "cpu" and precision == "fp16":
        raise AssayError("fp32 or bf16 on the CPU", "precision fp16", "set train.precision: auto",
                         code="invalid_config")
    return torch.bfloat16 if precision == "bf16" else torch.float16


def autocast(device: Any, dtype: Any):
    """Mixed precision context for ``device`` (a no-op for fp32)."""
    import torch

    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)
