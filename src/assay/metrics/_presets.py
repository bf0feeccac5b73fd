"""The preset library: ready-made judge metrics shipped as YAML files."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import yaml

from ..errors import AssayError
from ._spec import MetricSpec, metric_from_dict

_DIR = Path(__file__).parent / "presets"


def list_presets() -> list[str]:
    """Names of the shipped presets."""
    return sorted(p.stem for p in _DIR.glob("*.yaml"))


@lru_cache(maxsize=None)
def get_preset(name: str) -> MetricSpec:
    """The preset metric called ``name``."""
    path = _DIR / f"{name}.yaml"
    if not isinstance(name, str) or name not in list_presets():  # a name, never a path ({preset: ../../x})
        raise AssayError(
            "a preset metric name",
            f"'{name}'",
            "use one of " + ", ".join(list_presets()),
            code="not_found",
        )
    return metric_from_dict(yaml.safe_load(path.read_text()), f"preset {name}")
