"""assay: distill an LLM-as-judge metric into a small, fast, calibrated evaluator.

The main calls, from a config to a monitored evaluator::

    import assay
    from assay.train import train

    result = train("config.yaml")                            # model selection, calibration, report
    ev = assay.Evaluator.from_pretrained(result.artifact_dir)
    report = assay.evaluate(ev, rows)                        # kappa, F1, AUROC, ECE, speed
    assay.Monitor([ev], store).process(traces)                # score, route and store every trace
    assay.Client("http://127.0.0.1:8000").score("toxicity", rows)   # a served evaluator
    assay.retrain("toxicity")                                 # reviewed verdicts -> a new run of the metric

``train`` (the training package: ``assay.train.train`` is the pipeline), ``Evaluator``, ``evaluate``, ``Monitor``
and ``retrain`` are imported on first use, so ``import assay`` stays light (no torch until a model is needed).
"""

from typing import Any

from ._version import __version__
from .client import Client
from .config import Config, load_config
from .data import load_rows, prepare, split_rows, validate_rows
from .errors import AssayError
from .metrics import InputShape, MetricSpec, get_preset, list_presets, load_metric, render

_LAZY = {"Evaluator": ("assay.evaluator", "Evaluator"), "evaluate": ("assay.report", "evaluate"),
         "Monitor": ("assay.monitor", "Monitor"), "train": ("assay.train", None),
         "retrain": ("assay.monitor", "retrain"),
         "tune_judge": ("assay.judge", "tune_judge"), "judge_consistency": ("assay.judge", "judge_consistency"),
         "discover": ("assay.judge", "discover")}


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'assay' has no attribute '{name}'")
    import importlib

    module, attr = _LAZY[name]
    value = importlib.import_module(module)
    return value if attr is None else getattr(value, attr)  # train: the package (its train(): the pipeline)


__all__ = [
    "AssayError",
    "Client",
    "Config",
    "Evaluator",
    "InputShape",
    "MetricSpec",
    "Monitor",
    "evaluate",
    "get_preset",
    "list_presets",
    "load_config",
    "load_metric",
    "load_rows",
    "prepare",
    "render",
    "retrain",
    "split_rows",
    "train",
    "validate_rows",
    "__version__",
]
