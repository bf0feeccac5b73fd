"""Retrain from reviews: people's labels of routed verdicts, folded into a new run of the same metric.

>>> run = assay.retrain("toxicity")          # the default registry and $ASSAY_HOME/monitor.db
>>> # a worker trains it; its report compares it with toxicity-v1 on the same held-out rows
>>> Registry().metrics.register(run.id)      # toxicity-v2: no name needed

The reviewed verdicts of the metric (the monitor stores them under the metric's spec name; the
registered name is read too when it differs) become canonical rows with the people's label (each
reviewer's latest label, the majority of several; ties left out, see :func:`golden_rows`), then
:func:`assay.registry.queue_retrain` queues the run.
The CLI (``assay retrain``), the API (``POST /v1/metrics/{name}/retrain``) and the UI's "Retrain
from reviews" button all call :func:`retrain`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..data import row_hash
from ..review import golden_rows
from ._sql import store_exists, store_target
from ._store import Store, default_db

__all__ = ["retrain", "reviewed_rows"]


def _owner(reg: Any, checks: dict[str, dict[str, Any]], key: str) -> str | None:
    """The project a monitored metric's verdicts belong to: the one whose registered artifact (or run
    artifact) the monitor loaded, else the one that registered a metric of that name; None: unknown."""
    from ..errors import AssayError

    src = (checks.get(key) or {}).get("source")
    if src and reg.storage.local:
        target = Path(src).expanduser().resolve()
        places = [(v.artifact_location, v.project_id) for m in reg.metrics.list() for v in m.versions]
        places += [(r.artifact_location, r.project_id) for r in reg.runs.list(limit=100_000) if r.artifact_location]
        for location, project_id in places:
            if Path(reg.storage.local_dir(location)).resolve() == target:
                return project_id
    try:
        return reg.metrics.get(key).project_id
    except AssayError:
        return None


def reviewed_rows(store: Store, version: Any, registry: Any = None, *, unowned: bool = True
                  ) -> list[dict[str, Any]]:
    """The reviewed verdicts of a registered metric version's metric as labeled canonical rows.

    The monitor stores verdicts under the metric's spec name (the registered name is read too when it
    differs). With ``registry``, a name whose verdicts belong to another project is skipped, and one of
    unknown ownership only with ``unowned`` (a server passes False for a caller limited to projects)."""
    checks = store.checks()
    keys = dict.fromkeys([str(version.spec.get("name") or version.name), version.name])
    rows: dict[str, dict[str, Any]] = {}
    for key in keys:
        if (checks.get(key) or {}).get("kind") == "gate":
            continue
        if registry is not None:
            owner = _owner(registry, checks, key)
            if (owner is None and not unowned) or (owner is not None and owner != version.project_id):
                continue
        for r in golden_rows(store, key):
            rows[row_hash(r)] = r  # the same trace content under both names: one row
    return list(rows.values())


def _open_store(monitor_db: str | Path | None) -> Store | None:
    target = store_target(monitor_db) if monitor_db else default_db()
    return Store(target) if store_exists(target) else None


def retrain(name: str, *, monitor_db: str | Path | None = None, store: Store | None = None,
            registry: Any = None, where: str | None = None, unowned: bool = True) -> Any:
    """Queue a new run of registered metric ``name`` (latest version, or ``name-vN``) with its reviewed
    verdicts added as a training dataset; returns the queued :class:`assay.registry.Run`.

    ``store`` (or ``monitor_db``, default ``$ASSAY_HOME/monitor.db``): where the reviews are;
    ``registry``: default :class:`assay.registry.Registry` (``$ASSAY_DATABASE_URL`` or
    ``$ASSAY_HOME/assay.db``); ``where``: how messages and the run name the store (a server names no path);
    ``unowned``: also read reviews of a monitored metric no project owns (see :func:`reviewed_rows`).
    No reviewed verdicts: an ``AssayError`` (code ``no_reviews``), and no run. Reviewed rows that repeat the
    version's held-out rows are left out and those it already trained on add nothing
    (:func:`assay.registry._retrain.triage_reviews`; the counts are the run's ``retrain_of["reviews"]``);
    none new: ``no_new_reviews``, and no run."""
    from ..registry import Registry, queue_retrain
    from ..registry._retrain import no_reviews

    reg = registry if registry is not None else Registry(allow_local_paths=True)
    version = reg.metrics.get(name)
    own = store is None
    st = store if store is not None else _open_store(monitor_db)
    if where is None:
        where = f"the monitor database {st.path}" if st is not None else \
            f"the monitor database {Path(monitor_db).expanduser() if monitor_db else default_db()} (no such file)"
    try:
        rows = reviewed_rows(st, version, reg, unowned=unowned) if st is not None else []
    finally:
        if own and st is not None:
            st.close()
    if not rows:
        raise no_reviews(version.name, where)
    return queue_retrain(reg, name, rows, source=f"{len(rows)} reviewed verdicts from {where}")
