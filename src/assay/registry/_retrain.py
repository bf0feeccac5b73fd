"""Retrain from reviews, the registry's half: queue a new run of a registered metric with people's
labels added as training rows, and (in the worker) compare the new evaluator with the previous version.

- :func:`queue_retrain`: the registered version's run config, unchanged (same test set, same split, so
  the same held-out rows), plus one ``train`` dataset of reviewed rows in ``data.extra_train_sets``
  (training rows only: never split, never held out). A dataset of reviews an earlier retrain added is
  replaced, since the rows given are all the reviews so far. The run records what it started from
  (``Run.retrain_of``); registering it without a name makes the next version of the same metric.
- :func:`add_comparison`: once the run has trained, both evaluators are scored on the previous
  version's held-out rows (rebuilt from its own config, checked against its ``split.json``), minus any
  row the new evaluator trained on; the figures go into the report's ``comparison`` section.

Reading the reviews (the monitor store) is the monitor's part: :func:`assay.monitor.retrain`.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from pathlib import Path
from typing import Any, Mapping, Sequence

from ..errors import AssayError
from ..metrics import load_metric
from ._models import Run
from ._runs import RETRAIN_OF

log = logging.getLogger("assay.registry")

__all__ = ["RETRAIN_OF", "add_comparison", "no_reviews", "queue_retrain"]


def no_reviews(metric: str, where: str) -> AssayError:
    return AssayError(f"reviewed verdicts of '{metric}' (people's labels of its routed verdicts) to add to "
                      "the training rows", f"0 reviewed verdicts in {where}",
                      "label routed verdicts first (`assay review list`, then `assay review label TRACE_ID LABEL`), "
                      "then retrain", code="no_reviews")


def queue_retrain(reg: Any, name: str, rows: Sequence[Mapping[str, Any]], *, source: str = "reviewed verdicts"
                  ) -> Run:
    """Queue a new run of metric ``name`` (its latest version, or ``name-vN``) in its project, with
    ``rows`` (canonical rows with the human label) as an extra training dataset."""
    version = reg.metrics.get(name)
    if not rows:
        raise no_reviews(version.name, source)
    spec = load_metric(version.spec)
    data = reg.runs.config_for_rerun(version.run_id)
    previous = (reg.runs.get(version.run_id, history=False).retrain_of or {}).get("reviewed_dataset")
    body = "".join(json.dumps(dict(r), ensure_ascii=False, default=str) + "\n" for r in rows).encode()
    ds = reg.datasets.add(version.project_id, body, f"{version.full_name}-reviews.jsonl", metric=spec.to_dict(),
                          kind="train", name=f"reviewed verdicts for {version.full_name}")
    d = data.setdefault("data", {})
    extras = [x for x in d.get("extra_train_sets") or [] if not previous or x != f"dataset:{previous}"]
    d["extra_train_sets"] = [*extras, f"dataset:{ds.id}"]
    origin = {"metric": version.name, "version": version.full_name, "metric_id": version.id,
              "run_id": version.run_id, "reviewed_dataset": ds.id, "reviewed_rows": ds.rows,
              "reviewed_labels": dict(Counter(str(r.get("label")) for r in rows)), "source": source}
    return reg.runs.create(version.project_id, data, name=f"{version.name} retrain from reviews",
                           retrain_of=origin)


# --- in the worker, after training -------------------------------------------------------------------
def _split_hashes(location: Path, key: str) -> set[str] | None:
    f = location / "split.json"
    try:
        found = json.loads(f.read_text()).get(key) if f.exists() else None
    except (OSError, ValueError):
        return None
    return set(found) if isinstance(found, list) else None


def _previous_held_out(reg: Any, version: Any, workdir: Path) -> tuple[list[dict[str, Any]], list[str]]:
    """The previous version's held-out rows, from its run's config (the split it trained with)."""
    from ..data import row_hash

    prev_run = reg.runs.get(version.run_id, history=False)
    cfg = reg.runs.resolve_config(prev_run, workdir / "previous", workdir / "previous" / "out")
    held_out = list(cfg.prepare_test_set().split.held_out)
    notes = []
    recorded = _split_hashes(Path(reg.storage.local_dir(version.artifact_location)), "held_out")
    if recorded is not None and recorded != {row_hash(r) for r in held_out}:
        notes.append(f"the held-out rows rebuilt from {version.full_name}'s config differ from those its "
                     "split.json records (its test set changed?)")
    return held_out, notes


def add_comparison(reg: Any, run: Run, artifact_dir: Path, new_evaluator: Any, workdir: Path) -> None:
    """Write the ``comparison`` section into the run's report (json, md, html) in ``artifact_dir``."""
    from ..data import row_hash
    from ..report import Report, compare_versions, write_report

    origin = run.retrain_of or {}
    report_file = Path(artifact_dir) / "report.json"
    if not origin.get("version") or not report_file.exists():
        return
    report = Report.from_file(report_file).to_dict()
    try:
        version = reg.metrics.get(origin["version"])
        previous = reg.metrics.evaluator(version)  # its files checked against the registered hashes
        new = new_evaluator if new_evaluator is not None else _load(reg, artifact_dir)
        rows, notes = _previous_held_out(reg, version, Path(workdir))
        trained = _split_hashes(Path(artifact_dir), "trained_on")
        if trained:
            kept = [r for r in rows if row_hash(r) not in trained]
            if len(kept) < len(rows):
                notes.append(f"{len(rows) - len(kept)} of the previous held-out rows are training rows of the new "
                             "evaluator and were left out")
            rows = kept
        notes.append(f"compared on {version.full_name}'s held-out rows: rows neither version trained on (the "
                     f"registry holds no other golden set); the {origin.get('reviewed_rows')} reviewed verdicts are "
                     "not among them, since the new evaluator trained on them")
        threshold = version.threshold if version.threshold is not None and len(version.labels) == 2 else None
        report["comparison"] = compare_versions(
            previous, new, {"held_out": rows}, previous_name=version.full_name, new_name=f"run {run.id}",
            previous_threshold=threshold, bootstrap=int((report.get("settings") or {}).get("bootstrap") or 0),
            notes=notes)
    except Exception as exc:  # noqa: BLE001 -- the run keeps its own report; the comparison says why it is missing
        reason = str(exc) if isinstance(exc, AssayError) else f"{type(exc).__name__}: {exc}"
        log.warning("run %s: no comparison with %s: %s", run.id, origin.get("version"), reason)
        report["comparison"] = {"previous": origin.get("version"), "new": f"run {run.id}", "sets": {},
                                "skipped": reason}
    write_report(report, artifact_dir)


def _load(reg: Any, artifact_dir: Path) -> Any:
    loader = reg.metrics._load_evaluator
    if loader is not None:
        return loader(str(artifact_dir))
    from ..evaluator import Evaluator

    return Evaluator.from_pretrained(artifact_dir)
