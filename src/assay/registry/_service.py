"""The Registry: one service object used by the REST API, the CLI, the worker and the UI.

It composes a :class:`~assay.registry._base.Core` (database, storage, providers, clock) with one
component per concern: ``reg.projects``, ``reg.datasets`` (with the row review), ``reg.runs``
(with the worker's verbs and the queue), ``reg.metrics`` (registering and scoring), ``reg.keys`` and
``reg.tunings`` (judge-prompt tuning jobs).
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Any, Callable

from sqlalchemy.engine import Engine

from ._base import Core
from ._datasets import Datasets
from ._keys import Keys
from ._metrics import Metrics
from ._projects import Projects
from ._runs import Runs
from ._storage import Storage
from ._tunings import Tunings


class Registry:
    """Projects, datasets, runs, registered metrics, reviews and API keys.

    >>> reg = Registry()                       # SQLite at $ASSAY_HOME/assay.db
    >>> reg = Registry("postgresql://u@h/db", artifacts="s3://bucket/assay")
    >>> run = reg.runs.create("demo", config)  # reg.projects, .datasets, .runs, .metrics, .keys, .tunings
    """

    def __init__(self, url: str | None = None, artifacts: str | None = None, *,
                 load_evaluator: Callable[[str], Any] | None = None, allow_local_paths: bool = False,
                 auto_migrate: bool = True, providers: Any = None):
        self.core = Core(url, artifacts, allow_local_paths=allow_local_paths, auto_migrate=auto_migrate,
                         providers=providers)
        self.projects = Projects(self.core)
        self.datasets = Datasets(self.core, self.projects)
        self.runs = Runs(self.core, self.projects, self.datasets)
        self.metrics = Metrics(self.core, self.projects, self.runs, load_evaluator=load_evaluator)
        self.keys = Keys(self.core, self.projects)
        self.tunings = Tunings(self.core)

    def __repr__(self) -> str:
        return f"Registry({self.engine.url.render_as_string(hide_password=True)!r}, {self.storage.root!r})"

    # --- the core's settings, read (and, where a caller may change them, written) through ---------
    @property
    def url(self) -> str:
        return self.core.url

    @property
    def engine(self) -> Engine:
        return self.core.engine

    @property
    def dialect(self) -> str:
        return self.core.dialect

    @property
    def storage(self) -> Storage:
        return self.core.storage

    @storage.setter
    def storage(self, value: Storage) -> None:
        self.core.storage = value

    @property
    def providers(self) -> Any:
        return self.core.providers

    @providers.setter
    def providers(self, value: Any) -> None:
        self.core.providers = value

    @property
    def allow_local_paths(self) -> bool:
        return self.core.allow_local_paths

    @allow_local_paths.setter
    def allow_local_paths(self, value: bool) -> None:
        self.core.allow_local_paths = value

    def tx(self) -> AbstractContextManager[Any]:
        """A transaction on the registry database (a SQLAlchemy connection)."""
        return self.core.tx()

    def close(self) -> None:
        self.metrics.unload()
        self.core.close()
