"""``POST /v1/metrics/{name}/retrain``: reviewed verdicts folded into a new run of the same metric.

The reviews come from the server's own monitor store, never from a path the caller names:
``app.state.monitor`` (the open :class:`assay.monitor.Store`) or ``app.state.monitor_db`` (the
operator's ``--monitor-db`` / ``$ASSAY_MONITOR_DB``), else ``$ASSAY_HOME/monitor.db``
(:func:`assay.monitor.default_db`). Only reviews of verdicts that belong to the metric's project are
read (a caller limited to projects never gets reviews no project owns). The UI's "Retrain from
reviews" button calls :func:`retrain_metric` too.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from ..registry import Run
from . import _access as acc
from ._deps import _ERRORS, _metric, _reg

router = APIRouter(prefix="/v1")
WHERE = "the server's monitor database"


def monitor_source(app: Any) -> dict[str, Any]:
    """How the server finds its monitor store: ``{"store": Store}`` (already open) or ``{"monitor_db": path}``
    (None: the default)."""
    store = getattr(app.state, "monitor", None) or getattr(app.state, "monitor_store", None)
    if store is not None:
        return {"store": store}
    return {"monitor_db": getattr(app.state, "monitor_db", None)}


def retrain_metric(request: Request, name: str) -> Run:
    """Check the caller may edit the metric's project (404 for a stranger), then queue the retrain."""
    from ..monitor import retrain

    _metric(request, name, "edit")
    sc = acc.scope(request)
    return retrain(name, registry=_reg(request), where=WHERE, unowned=sc is None or bool(sc.global_role),
                   **monitor_source(request.app))


def reviewed_count(request: Request, version: Any) -> int | None:
    """How many reviewed rows a retrain of ``version`` would add now (None: no monitor store yet)."""
    from ..monitor import Store, default_db, reviewed_rows
    from ..monitor._sql import store_exists, store_target

    src = monitor_source(request.app)
    store = src.get("store")
    path = store_target(src.get("monitor_db") or default_db())
    if store is None and not store_exists(path):
        return None
    st = store or Store(path)
    try:
        sc = acc.scope(request)
        return len(reviewed_rows(st, version, _reg(request), unowned=sc is None or bool(sc.global_role)))
    finally:
        if store is None:
            st.close()


@router.post("/metrics/{name}/retrain", response_model=Run, status_code=201, tags=["metrics"], responses=_ERRORS)
def retrain(name: str, request: Request) -> Run:
    """Queue a new run of the metric (its latest version, or name-vN) in its project: the version's run
    config with the verdicts people reviewed in the server's monitor store added as a training dataset
    (never held out). Its report compares it with that version on the same held-out rows; register it
    with ``POST /v1/runs/{run_id}/register`` and no name to get the next version. No reviewed verdicts:
    400 ``no_reviews``; none the version did not already train on (or hold out): 400 ``no_new_reviews``;
    either way no run. The run's ``retrain_of.reviews`` counts the reviewed rows: new, already trained
    on, left out as held-out rows."""
    return retrain_metric(request, name)
