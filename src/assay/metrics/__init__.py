"""Metrics: judge prompt, output type, input shape, presets and prompt rendering."""

from ._load import load_metric
from ._presets import get_preset, list_presets
from ._render import field_text, fit, judged_field, judged_fields, render, swap_pair
from ._spec import (BOOLEAN_LABELS, PAIR_LABELS, REQUIRED_FIELDS, SPAN_KINDS, InputShape, MetricSpec, SpanTarget,
                    metric_from_dict)

__all__ = [
    "BOOLEAN_LABELS",
    "PAIR_LABELS",
    "REQUIRED_FIELDS",
    "SPAN_KINDS",
    "InputShape",
    "MetricSpec",
    "SpanTarget",
    "field_text",
    "fit",
    "get_preset",
    "judged_field",
    "judged_fields",
    "list_presets",
    "load_metric",
    "metric_from_dict",
    "render",
    "swap_pair",
]
