"""``assay retrain NAME``: the reviewed verdicts of a registered metric folded into a new run of it.

Locally it reads the monitor store (``--monitor-db``, default ``$ASSAY_HOME/monitor.db``) and queues
the run in the registry (``--db``); with ``--url`` the server does both with its own monitor store.
"""

from __future__ import annotations

import sys
from collections import Counter
from typing import Any

import click

from ..errors import AssayError
from ._app import cli, emit
from ._serve import _with_backend


def _confirm(question: str, yes: bool, as_json: bool) -> None:
    if yes:
        return
    if as_json or not sys.stdin.isatty():
        raise AssayError("--yes to queue a retrain without a terminal to ask at", "no --yes",
                         "pass --yes (-y)", code="needs_confirmation")
    if not click.confirm(question, default=False):
        raise SystemExit(1)


def _local(name: str, monitor_db: str | None, yes: bool, as_json: bool, db: str | None,
           artifacts: str | None) -> dict[str, Any]:
    from ..monitor import retrain, reviewed_rows
    from ..monitor._retrain import _open_store
    from ..registry import Registry
    from ..registry._retrain import no_new_reviews, reviews_text, triage_reviews

    reg = Registry(db, artifacts, allow_local_paths=True)
    version = reg.metrics.get(name)
    store = _open_store(monitor_db)
    try:
        rows = reviewed_rows(store, version, reg) if store is not None else []
    finally:
        if store is not None:
            store.close()
    if rows:  # none: retrain() below says so, with where it looked
        kept, triage = triage_reviews(reg, version, rows)
        if not triage["new"]:
            raise no_new_reviews(version.full_name, triage)
        counts = ", ".join(f"{k} {v}" for k, v in sorted(Counter(str(r.get("label")) for r in kept).items()))
        _confirm(f"Queue a new run of {version.full_name}'s config with {reviews_text(triage, version.full_name)} "
                 f"added as training rows ({counts})?", yes, as_json)
    return retrain(name, monitor_db=monitor_db, registry=reg).model_dump(mode="json")


@cli.command("retrain")
@click.argument("name")
@click.option("--monitor-db", type=click.Path(dir_okay=False), default=None,
              help="The monitor store with the reviews (default: $ASSAY_HOME/monitor.db). Not with --url.")
@click.option("--yes", "-y", is_flag=True, help="Queue without asking.")
@_with_backend
def retrain_cmd(name: str, monitor_db: str | None, yes: bool, db: str | None, artifacts: str | None,
                url: str | None, api_key: str | None, as_json: bool) -> None:
    """Queue a new run of registered metric NAME with its reviewed verdicts as extra training rows.

    The run uses NAME's run config (same test set, same held-out rows) plus one training dataset of
    the verdicts people labelled (`assay review label`). When a worker has trained it, its report
    compares it with NAME's version on the same held-out rows; `assay register RUN_ID` then makes
    the next version (NAME-vN+1)."""
    if url:
        if monitor_db:
            raise AssayError("no --monitor-db with --url", "--monitor-db", "drop it: the server reads its own "
                             "monitor store", code="invalid_input")
        from ..client import Client

        _confirm(f"Queue a retrain of {name} from the reviews in {url}'s monitor store?", yes, as_json)
        run = Client(url, api_key=api_key).retrain(name)
    else:
        run = _local(name, monitor_db, yes, as_json, db, artifacts)
    from ..registry._retrain import reviews_text

    origin = run.get("retrain_of") or {}
    added = (reviews_text(origin["reviews"], str(origin.get("version"))) if origin.get("reviews")
             else f"{origin.get('reviewed_rows')} reviewed verdicts")
    emit(run, as_json,
         f"queued run {run['id']} ({run['name']}): {origin.get('version')}'s config + {added} as training rows\n"
         f"next: a worker trains it (`assay worker`); its report compares it with {origin.get('version')} on the "
         f"same held-out rows; then `assay register {run['id']}` makes the next version of {origin.get('metric')}")
