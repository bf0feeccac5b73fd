"""Datasets: read CSV/JSONL/Parquet, map columns, validate against a metric, split (``prepare`` does all four)."""

from ._io import CANONICAL, iter_records, normalize_label, read_records, row_hash, rows_hash, to_rows, write_rows
from ._load import Prepared, load_rows, prepare
from ._split import (DEFAULT_GROUP_BY, SEED_FRACTION, Split, exclude_groups, group_key, held_out_overlap,
                     resolve_group_by, split_rows, split_test_set)
from ._validate import RowProblem, Validation, validate_rows

__all__ = [
    "CANONICAL",
    "DEFAULT_GROUP_BY",
    "Prepared",
    "RowProblem",
    "Split",
    "Validation",
    "exclude_groups",
    "group_key",
    "held_out_overlap",
    "load_rows",
    "normalize_label",
    "prepare",
    "iter_records",
    "read_records",
    "resolve_group_by",
    "row_hash",
    "rows_hash",
    "split_rows",
    "split_test_set",
    "SEED_FRACTION",
    "to_rows",
    "validate_rows",
    "write_rows",
]
