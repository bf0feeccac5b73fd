"""One call from a file to validated rows."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from ..metrics import MetricSpec
from ._io import read_records, to_rows
from ._validate import Validation, validate_rows


def load_rows(
    path: str | Path,
    metric: MetricSpec,
    *,
    columns: Mapping[str, str] | None = None,
    label_map: Mapping[Any, str] | None = None,
    labeled: bool = True,
    min_rows: int = 1,
    min_per_class: int = 0,
    limit: int | None = None,
    encoding: str | None = None,
) -> Validation:
    """Read, map and validate a data file; raises AssayError on the first bad row."""
    path = Path(path)
    records = read_records(path, encoding=encoding)
    if limit is not None:
        records = records[:limit]
    rows = to_rows(records, columns, label_map, source=path.stem)
    v = validate_rows(rows, metric, labeled=labeled, min_rows=min_rows, min_per_class=min_per_class,
                      source=path.name)
    v.raise_for_errors(path.name)
    return v
