"""assay: distill an LLM-as-judge metric into a small, fast, calibrated evaluator."""

from .client import Client
from .config import Config, load_config
from .data import load_rows, split_rows, validate_rows
from .errors import AssayError
from .metrics import InputShape, MetricSpec, get_preset, list_presets, load_metric, render

__version__ = "0.1.0"

__all__ = [
    "AssayError",
    "Client",
    "Config",
    "InputShape",
    "MetricSpec",
    "get_preset",
    "list_presets",
    "load_config",
    "load_metric",
    "load_rows",
    "render",
    "split_rows",
    "validate_rows",
    "__version__",
]
