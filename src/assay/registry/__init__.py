"""The registry: projects, datasets, runs, registered metrics, reviews and API keys, in SQLite
(default, ``$ASSAY_HOME/assay.db``) or PostgreSQL, with artifacts on a folder or fsspec URL.

:class:`Registry` composes one component per concern: ``reg.projects`` (:class:`Projects`),
``reg.datasets`` (:class:`Datasets`), ``reg.runs`` (:class:`Runs`), ``reg.metrics``
(:class:`Metrics`) and ``reg.keys`` (:class:`Keys`), over a shared :class:`Core`.
:func:`queue_retrain` queues a new run of a registered metric with reviewed rows added to its training rows.

Needs the ``registry`` extra: ``pip install 'assay[registry]'``.
"""

from ._base import Core, InvalidRows
from ._datasets import Datasets
from ._db import assay_home, default_url, make_engine
from ._keys import Keys, KeyScope
from ._metrics import Metrics
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
from ._projects import Projects
from ._retrain import add_comparison, queue_retrain
from ._runs import RunLost, Runs
from ._service import Registry
from ._storage import Storage
from ._tunings import Tunings
from ._worker import Cancelled, Executor, LocalExecutor, RunJob, Worker

__all__ = [
    "ApiKey",
    "Cancelled",
    "Core",
    "Dataset",
    "Datasets",
    "Executor",
    "InvalidRows",
    "KeyScope",
    "Keys",
    "LocalExecutor",
    "MIGRATIONS",
    "Metric",
    "MetricVersion",
    "Metrics",
    "Project",
    "Projects",
    "Registry",
    "ReviewItem",
    "Run",
    "RunEvent",
    "RunJob",
    "RunLost",
    "Runs",
    "SCHEMA_VERSION",
    "ScoreResult",
    "Status",
    "Storage",
    "Tunings",
    "Validated",
    "Worker",
    "add_comparison",
    "assay_home",
    "default_url",
    "make_engine",
    "migrate",
    "queue_retrain",
]
