"""Batch scoring with the monitor's sources: ``assay.batch``'s engine, where the evaluator may also be a
registered metric name (``_checks.load_evaluator``: its file hashes checked, its version's threshold
applied) and the rows a monitor database (``_eval.load_dataset``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

from .. import batch
from ._checks import load_evaluator
from ._eval import load_dataset
from ._store import Store


def score_file(evaluator: Any, rows: Any, **kwargs: Any) -> batch.BatchResult:
    """:func:`assay.batch.score_file` with ``load=load_evaluator`` and files read by ``load_dataset``."""
    if isinstance(rows, (str, Path, Store)):
        rows = load_dataset(rows)
    return batch.score_file(evaluator, rows, **{"load": load_evaluator, **kwargs})


def score_rows(evaluator: Any, rows: Iterable[dict[str, Any]], **kwargs: Any) -> list[dict[str, Any]]:
    """``score_file(...).scores`` for rows already in memory."""
    return score_file(evaluator, list(rows), **kwargs).scores
