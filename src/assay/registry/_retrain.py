"""Retrain from reviews, the registry's half: queue a new run of a registered metric with people's
labels added as training rows, and (in the worker) compare the new evaluator with the previous version.

- :func:`queue_retrain`: the registered version's run config, unchanged (same test set, same split, so
  the same held-out rows), plus one ``train`` dataset of reviewed rows in ``data.extra_train_sets``
  (training rows only: never split, never held out). A dataset of reviews an earlier retrain added is
  replaced, since the rows given are all the reviews so far. The run records what it started from
  (``Run.retrain_of``); registering it without a name makes the next version of the same metric.
- :func:`triage_reviews`: before queueing, each reviewed row is sorted against what the version held out
  and trained on (rebuilt from its run's config, as training rebuilds it): one that repeats a held-out
  row or shares its group is left out (training would drop it: it would leak into the held-out
  figures), one the version already trained on with the same label adds nothing, the rest are new.
  ``retrain_of["reviews"]`` keeps the counts; with nothing new no run is queued (``no_new_reviews``):
  it would train on the same rows and give the same model.
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

__all__ = ["RETRAIN_OF", "add_comparison", "no_reviews", "queue_retrain", "reviews_text", "triage_reviews"]


def no_reviews(metric: str, where: str) -> AssayError:
    return AssayError(f"reviewed verdicts of '{metric}' (people's labels of its routed verdicts) to add to "
                      "the training rows", f"0 reviewed verdicts in {where}",
                      "label routed verdicts first (`assay review list`, then `assay review label TRACE_ID LABEL`), "
                      "then retrain", code="no_reviews")


def _previous_rows(reg: Any, version: Any) -> dict[str, Any]:
    """What ``version`` held out (rows, grouping) and trained on (``(row hash, label)`` pairs of its
    training files and, when it trained on them, its seeds; plus split.json's ``trained_on`` hashes, which
    also cover rows it generated), rebuilt from its run's config in a scratch folder."""
    import tempfile

    from ..data import load_rows, row_hash

    with tempfile.TemporaryDirectory(prefix="assay-retrain-") as tmp:
        cfg = reg.runs.resolve_config(reg.runs.get(version.run_id, history=False), Path(tmp), Path(tmp) / "out")
        metric = cfg.metric_spec()
        split = cfg.prepare_test_set(metric).split
        d = cfg.data
        trained = list(split.seeds) if d.train_on_seeds else []
        if d.train_set:
            trained += load_rows(cfg.path(d.train_set), metric, columns=d.columns, label_map=d.label_map,
                                 limit=d.limit, encoding=d.encoding).rows
        for extra in d.extra_train_sets:  # an earlier retrain's reviews among them
            trained += load_rows(cfg.path(extra), metric, encoding=d.encoding).rows
    hashes = _split_hashes(Path(reg.storage.local_dir(version.artifact_location)), "trained_on") \
        if reg.storage.local else None
    return {"held_out": list(split.held_out), "group_by": split.group_by,
            "pairs": {(row_hash(r), str(r.get("label"))) for r in trained},
            "labeled": {row_hash(r) for r in trained}, "hashes": hashes or set()}


def triage_reviews(reg: Any, version: Any, rows: Sequence[Mapping[str, Any]]) -> tuple[list[dict[str, Any]],
                                                                                        dict[str, Any]]:
    """(the reviewed rows to add, the counts): see the module docstring. The counts: ``reviewed``,
    ``new`` (rows the version did not train on), ``already_trained`` (it trained on the same content with
    the same label), ``held_out`` (left out: a held-out row of the version, or its group); ``checked``:
    False when the version's rows could not be rebuilt (every row is then added and counted as new)."""
    from ..data import exclude_groups, row_hash

    rows = [dict(r) for r in rows]
    try:
        prev = _previous_rows(reg, version)
    except Exception as exc:  # noqa: BLE001 -- a version whose data cannot be rebuilt: add them all, say so
        log.warning("retrain of %s: reviewed rows not checked against its rows: %s", version.full_name, exc)
        return rows, {"reviewed": len(rows), "new": len(rows), "already_trained": 0, "held_out": 0,
                      "checked": False}
    kept, _ = exclude_groups(rows, prev["held_out"], prev["group_by"])
    kept_hashes = {row_hash(r) for r in kept}
    kept = [r for r in rows if row_hash(r) in kept_hashes]  # the rows as given, in their order

    def trained(r: Mapping[str, Any]) -> bool:
        h = row_hash(r)
        return (h, str(r.get("label"))) in prev["pairs"] or (h in prev["hashes"] and h not in prev["labeled"])

    old = sum(trained(r) for r in kept)
    return kept, {"reviewed": len(rows), "new": len(kept) - old, "already_trained": old,
                  "held_out": len(rows) - len(kept), "checked": True}


def reviews_text(counts: Mapping[str, Any], version: str) -> str:
    """The counts of :func:`triage_reviews` in words."""
    if not counts:
        return ""
    text = f"{counts.get('new')} new of {counts.get('reviewed')} reviewed verdicts"
    parts = []
    if counts.get("already_trained"):
        parts.append(f"{counts['already_trained']} already training rows of {version} (same content and label)")
    if counts.get("held_out"):
        parts.append(f"{counts['held_out']} left out: they repeat {version}'s held-out rows (or share their "
                     "group) and would leak into the held-out figures")
    if counts.get("checked") is False:
        parts.append(f"not checked against {version}'s rows (its data could not be rebuilt)")
    return text + (f" ({'; '.join(parts)})" if parts else "")


def no_new_reviews(version: str, counts: Mapping[str, Any]) -> AssayError:
    return AssayError(f"reviewed verdicts {version} did not train on, to retrain it with",
                      f"none: {reviews_text(counts, version)}; a retrain would train on the same rows and give "
                      "the same model", "review other routed verdicts (`assay review list`), then retrain",
                      code="no_new_reviews")


def queue_retrain(reg: Any, name: str, rows: Sequence[Mapping[str, Any]], *, source: str = "reviewed verdicts"
                  ) -> Run:
    """Queue a new run of metric ``name`` (its latest version, or ``name-vN``) in its project, with
    ``rows`` (canonical rows with the human label) as an extra training dataset: the rows
    :func:`triage_reviews` keeps; none of them new: an ``AssayError`` (``no_new_reviews``), and no run."""
    version = reg.metrics.get(name)
    if not rows:
        raise no_reviews(version.name, source)
    rows, counts = triage_reviews(reg, version, rows)
    if not counts["new"]:
        raise no_new_reviews(version.full_name, counts)
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
              "reviewed_labels": dict(Counter(str(r.get("label")) for r in rows)), "reviews": counts,
              "source": source}
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
    model = Report.from_file(report_file)
    report = model.to_dict()  # written back below, with the comparison section
    reviews = _reviews_used(reg, origin, Path(artifact_dir))
    reviews_note = _reviews_note(reviews, str(origin["version"]))
    report["notes"] = [reviews_note, *(report.get("notes") or [])]  # what it trained on, never more
    try:
        version = reg.metrics.get(origin["version"])
        previous = reg.metrics.evaluator(version)  # files checked against the registered hashes; deciding as registered
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
                     "registry holds no other golden set); no reviewed verdict is among them")
        report["comparison"] = compare_versions(
            previous, new, {"held_out": rows}, previous_name=version.full_name, new_name=f"run {run.id}",
            bootstrap=int((model.settings or {}).get("bootstrap") or 0), notes=[reviews_note, *notes])
        report["comparison"]["reviews"] = reviews
    except Exception as exc:  # noqa: BLE001 -- the run keeps its own report; the comparison says why it is missing
        reason = str(exc) if isinstance(exc, AssayError) else f"{type(exc).__name__}: {exc}"
        log.warning("run %s: no comparison with %s: %s", run.id, origin.get("version"), reason)
        report["comparison"] = {"previous": origin.get("version"), "new": f"run {run.id}", "sets": {},
                                "skipped": reason, "reviews": reviews}
    write_report(report, artifact_dir)


def _reviews_used(reg: Any, origin: Mapping[str, Any], artifact_dir: Path) -> dict[str, Any]:
    """The queue-time counts of the reviewed rows (``retrain_of["reviews"]``), with, when the new artifact
    records its training rows (split.json ``trained_on``), how many of the reviewed rows it trained on."""
    from ..data import row_hash

    counts = dict(origin.get("reviews") or {"reviewed": origin.get("reviewed_rows"), "new": None})
    trained = _split_hashes(artifact_dir, "trained_on")
    if trained is not None and origin.get("reviewed_dataset"):
        try:
            rows = reg.datasets.rows(origin["reviewed_dataset"])
        except AssayError:
            rows = None
        if rows is not None:
            counts["trained_on"] = sum(row_hash(r) in trained for r in rows)
            counts["not_trained_on"] = len(rows) - counts["trained_on"]
    return counts


def _reviews_note(counts: Mapping[str, Any], version: str) -> str:
    """What the retrain took from the reviews, in words (never more than it used)."""
    if counts.get("new") is None:  # a run queued before the counts were kept
        return f"{counts.get('reviewed')} reviewed verdicts were added to the training rows (not checked against " \
               f"{version}'s rows)"
    text = "retrain from reviews: " + reviews_text(counts, version)
    if counts.get("not_trained_on"):
        text += (f"; training left out {counts['not_trained_on']} of the reviewed rows it was given (they repeat a "
                 "held-out row or share its group)")
    return text


def _load(reg: Any, artifact_dir: Path) -> Any:
    from ._metrics import open_version

    return open_version(artifact_dir, loader=reg.metrics._load_evaluator)
