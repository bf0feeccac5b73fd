"""Evaluator models: the decoder (causal LM + LoRA, one-token verdict) and encoder (MiniLM + head) families."""

from ._artifact import (
    ADAPTER_CONFIG_FILE,
    ADAPTER_FILE,
    ARTIFACT_FILES,
    CARD_FILE,
    CONFIG_FILE,
    CONTRASTIVE_FILE,
    FORMAT_VERSION,
    FULL_FILE,
    HEAD_FILE,
    INFO_FILE,
    LINEAR_FILE,
    REPORT_FILES,
    REPORT_HTML,
    REPORT_JSON,
    REPORT_MD,
    SPLIT_FILE,
    VOCAB_FILE,
    WEIGHT_FILES,
    EvaluatorInfo,
    read_info,
)
from ._base_models import BaseRef, assay_home, model_cache, resolve_base
from ._contract import Calibration, EvaluatorLike, Score, decide, decide_rows, scores_from_probs
from ._device import select_device, select_dtype
from ._evaluator import Evaluator

__all__ = ["BaseRef", "Calibration", "Evaluator", "EvaluatorInfo", "EvaluatorLike", "Score", "assay_home", "decide", "decide_rows",
           "scores_from_probs", "model_cache", "read_info", "resolve_base", "select_device", "select_dtype",
           # the artifact's file names (evaluator/_artifact.py) and evaluator.json's format version
           "ADAPTER_CONFIG_FILE", "ADAPTER_FILE", "ARTIFACT_FILES", "CARD_FILE", "CONFIG_FILE", "CONTRASTIVE_FILE",
           "FORMAT_VERSION", "FULL_FILE", "HEAD_FILE", "INFO_FILE", "LINEAR_FILE", "REPORT_FILES", "REPORT_HTML",
           "REPORT_JSON", "REPORT_MD", "SPLIT_FILE", "VOCAB_FILE", "WEIGHT_FILES"]
