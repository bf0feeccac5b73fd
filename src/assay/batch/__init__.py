"""Batch scoring: every row of a file (or of rows in memory) scored with one evaluator, in this process
or on a local Ray Data actor pool, with the same batches and the same results (``assay score``).

- ``score_file`` / ``score_rows``: the engine (``engine="local"`` or ``"ray"``), a ``BatchResult``.
- ``score_metrics``: several evaluators over the same rows (local), metrics on one frozen body sharing its
  forward, a ``BatchResult`` each.
- ``read_dataset``: traces from a trace export, a golden set or a table (``rows_for`` makes the rows);
  ``read_rows``: the rows ``assay score`` scores (canonical rows or a trace export's), bad lines counted.
- ``open_artifact``: the default way an evaluator reference is opened (an artifact folder); the
  monitor's ``load_evaluator`` also opens registered metric names (``assay.monitor.score_file``).
"""

from ._engine import (BatchResult, Engine, Loader, init_local_ray, open_artifact, prepare_rows, score_file,
                      score_metrics, score_rows)
from ._read import TABULAR, RowsRead, read_dataset, read_rows

__all__ = ["TABULAR", "BatchResult", "Engine", "Loader", "RowsRead", "init_local_ray", "open_artifact", "prepare_rows",
           "read_dataset", "read_rows", "score_file", "score_metrics", "score_rows"]
