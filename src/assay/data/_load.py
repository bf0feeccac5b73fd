"""One call from a file to validated rows (:func:`load_rows`), and to validated, split rows (:func:`prepare`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from ..metrics import MetricSpec
from ._io import read_records, to_rows
from ._split import SEED_FRACTION, Split, split_test_set
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


@dataclass
class Prepared:
    """A labeled test set read, validated and split: what every stage starts from."""

    test: Validation  # the validated rows (``test.rows``) and their warnings
    split: Split  # seeds (may reach generation and training) / held out (never does)

    @property
    def seeds(self) -> list[dict[str, Any]]:
        return self.split.seeds

    @property
    def held_out(self) -> list[dict[str, Any]]:
        return self.split.held_out


def prepare(
    path: str | Path,
    metric: MetricSpec,
    *,
    columns: Mapping[str, str] | None = None,
    label_map: Mapping[Any, str] | None = None,
    limit: int | None = None,
    encoding: str | None = None,
    seed_fraction: float = SEED_FRACTION,
    split_seed: int = 0,
    group_by: str | None = "auto",
) -> Prepared:
    """Load + validate + group + split a labeled test set: the one way ``train``, ``generate`` and
    the test doubles get their seeds and held-out rows (see :func:`split_test_set` for the rule)."""
    test = load_rows(path, metric, columns=columns, label_map=label_map, limit=limit, encoding=encoding)
    split = split_test_set(test.rows, metric.shape, seed_fraction=seed_fraction, split_seed=split_seed,
                           group_by=group_by)
    return Prepared(test, split)
