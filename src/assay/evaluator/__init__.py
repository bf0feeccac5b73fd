"""Evaluator models: the decoder (causal LM + LoRA, one-token verdict) and encoder (MiniLM + head) families."""

from ._base_models import BaseRef, assay_home, model_cache, resolve_base
from ._contract import Calibration, EvaluatorLike, Score, decide, scores_from_probs
from ._device import select_device, select_dtype
from ._evaluator import Evaluator, read_info

__all__ = ["BaseRef", "Calibration", "Evaluator", "EvaluatorLike", "Score", "assay_home", "decide", "scores_from_probs",
           "model_cache", "read_info", "resolve_base", "select_device", "select_dtype"]
