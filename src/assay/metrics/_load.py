"""``load_metric``: a metric from whatever names one (a preset, a YAML file, a mapping, a MetricSpec)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .._files import read_yaml
from ..errors import AssayError
from ._presets import get_preset, list_presets
from ._spec import MetricSpec, metric_from_dict


def load_metric(source: str | Path | dict[str, Any] | MetricSpec) -> MetricSpec:
    """A metric from a preset name, a YAML file path, a mapping, or a MetricSpec."""
    if isinstance(source, MetricSpec):
        return source
    if isinstance(source, dict):
        if "preset" in source:
            if not isinstance(source["preset"], str):
                raise AssayError("metric.preset as a preset name", f"a {type(source['preset']).__name__}",
                                 "use one of the presets " + ", ".join(list_presets()), code="invalid_metric")
            base = get_preset(source["preset"]).to_dict()
            base.update({k: v for k, v in source.items() if k != "preset"})
            return metric_from_dict(base, f"metric (preset {source['preset']})")
        return metric_from_dict(source)
    text = str(source)
    if text in list_presets():
        return get_preset(text)
    path = Path(text)
    if path.suffix in (".yaml", ".yml", ".json") or path.exists():
        data = read_yaml(path, "a metric YAML file")
        if isinstance(data, dict) and "metric" in data and "prompt" not in data:
            data = data["metric"]
        return load_metric(data) if isinstance(data, dict) else metric_from_dict(data, str(path))
    raise AssayError(
        "a preset name or a metric YAML path",
        f"'{text}'",
        "use one of the presets " + ", ".join(list_presets()) + " or a path to a YAML file",
        code="not_found",
    )
