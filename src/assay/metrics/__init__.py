"""Metrics: judge prompt, output type, input shape, presets and prompt rendering."""

from ._presets import get_preset, list_presets
from ._render import field_text, fit, render, judged_field
from ._spec import BOOLEAN_LABELS, REQUIRED_FIELDS, InputShape, MetricSpec, load_metric, metric_from_dict

__all__ = [
    "BOOLEAN_LABELS",
    "REQUIRED_FIELDS",
    "InputShape",
    "MetricSpec",
    "field_text",
    "fit",
    "get_preset",
    "judged_field",
    "list_presets",
    "load_metric",
    "metric_from_dict",
    "render",
]
