"""The registry: projects, datasets, runs, registered metrics, reviews and API keys, in SQLite
(default, ``$ASSAY_HOME/assay.db``) or PostgreSQL, with artifacts on a folder or fsspec URL.

Needs the ``registry`` extra: ``pip install 'assay[registry]'``.
"""

from ._base import InvalidRows
from ._db import assay_home, default_url, make_engine
from ._migrations import LATEST as SCHEMA_VERSION
from ._migrations import MIGRATIONS, migrate
from ._models import (
    ApiKey,
    Dataset,
    Metric,
    MetricVersion,
    Project,
    ReviewItem,
    Run,
    RunEvent,
    ScoreResult,
    Status,
    Validated,
)
from ._runs import RunLost
from ._service import Registry
from ._storage import Storage
from ._worker import Cancelled, Executor, LocalExecutor, RunJob, Worker

__all__ = [
    "ApiKey",
    "Cancelled",
    "Dataset",
    "Executor",
    "InvalidRows",
    "LocalExecutor",
    "MIGRATIONS",
    "Metric",
    "MetricVersion",
    "Project",
    "Registry",
    "ReviewItem",
    "Run",
    "RunEvent",
    "RunJob",
    "RunLost",
    "SCHEMA_VERSION",
    "ScoreResult",
    "Status",
    "Storage",
    "Validated",
    "Worker",
    "assay_home",
    "default_url",
    "make_engine",
    "migrate",
]
