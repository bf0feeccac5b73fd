"""``--precision`` for the commands that score (``score``, ``serve``, ``monitor``): the option, the
check of what this machine and the artifact can do (before any model loads), and the loading.

``auto`` is the evaluator's own choice (bf16 on a CPU with AMX / AVX512-BF16 or a bf16 GPU, else
fp32: :func:`assay.evaluator._device.select_dtype`); ``fp32``; ``bf16`` (refused on a CPU that would
only emulate it, slower than fp32); ``int8`` (dynamic quantisation, CPU, encoder family only).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from ..errors import AssayError

PRECISION_CHOICES = ("auto", "fp32", "bf16", "int8")
INT8_FAMILIES = ("encoder",)

precision_option = click.option(
    "--precision", type=click.Choice(PRECISION_CHOICES), default="auto", show_default=True,
    help="Scoring precision: auto (bf16 on a CPU with AMX/AVX512-BF16 or a bf16 GPU, else fp32), fp32, "
         "bf16, or int8 (CPU, encoder family).")


def _cuda() -> tuple[bool, bool]:
    """(a CUDA GPU is seen, it does bf16)."""
    try:
        import torch
    except ImportError:  # pragma: no cover - scoring needs torch anyway
        return False, False
    if not torch.cuda.is_available():
        return False, False
    return True, bool(torch.cuda.is_bf16_supported())


def check_machine(precision: str) -> None:
    """Refuse a precision this machine cannot run natively (what the artifact can do is
    :func:`check_artifact`'s part)."""
    if precision not in PRECISION_CHOICES:
        raise AssayError(f"--precision one of {', '.join(PRECISION_CHOICES)}", f"'{precision}'",
                         "pass --precision auto", code="invalid_input")
    gpu, gpu_bf16 = _cuda()
    if precision == "bf16":
        if gpu:
            if not gpu_bf16:
                raise AssayError("a GPU with bf16 for --precision bf16", "a CUDA GPU without bf16 support",
                                 "pass --precision auto (fp16 or fp32 there)", code="invalid_input")
            return
        from .._cpu import BF16_FLAGS, native_bf16

        if not native_bf16():
            raise AssayError(f"a CPU with {' or '.join(BF16_FLAGS)} for --precision bf16 (elsewhere torch "
                             "emulates bf16, slower than fp32)", "a CPU without either flag in /proc/cpuinfo",
                             "pass --precision auto (fp32 on this CPU) or int8 (encoder family)",
                             code="invalid_input")
    if precision == "int8" and gpu:
        raise AssayError("the CPU for --precision int8 (dynamic quantisation)", "a CUDA GPU, which scoring would use",
                         "pass --precision auto (bf16 or fp16 on the GPU), or hide the GPU "
                         "(CUDA_VISIBLE_DEVICES=)", code="invalid_input")


def artifact_family(folder: str | Path) -> str | None:
    """The family recorded in an artifact's ``evaluator.json`` (None where it cannot be read)."""
    from ..evaluator._artifact import read_info

    try:
        return read_info(Path(folder)).family
    except AssayError:
        return None


def check_artifact(precision: str, folder: str | Path, name: str | None = None) -> None:
    """Refuse a precision the artifact's family cannot score in (int8: encoder family only)."""
    if precision != "int8":
        return
    family = artifact_family(folder)
    if family is not None and family not in INT8_FAMILIES:
        raise AssayError("an encoder-family evaluator for --precision int8",
                         f"{name or folder}: family {family} (int8 embeddings moved a linear evaluator's "
                         "probabilities by up to 0.45)",
                         "pass --precision auto, fp32 or bf16 (on a CPU with AMX/AVX512-BF16)",
                         code="invalid_input")


def open_at(folder: str | Path, version: Any = None, precision: str = "auto") -> Any:
    """The evaluator of a resolved artifact at ``precision``, checked against this machine and the
    artifact first, deciding with the registered version's threshold and operator
    (:func:`assay.monitor._checks.open_evaluator`)."""
    from ..monitor._checks import open_evaluator

    check_machine(precision)
    check_artifact(precision, folder, getattr(version, "full_name", None))
    return open_evaluator(Path(folder), version, precision)


def serve_loader(precision: str) -> Any:
    """The registry's evaluator loader for ``assay serve --precision`` (None: the registry's own, at auto).
    A registered version's threshold is applied by the registry itself, not the loader."""
    if precision == "auto":
        return None

    def load(path: str) -> Any:
        check_artifact(precision, path)
        from ..evaluator import Evaluator

        return Evaluator.from_pretrained(path, precision=precision)

    return load
