"""``train(config)``: data -> (generation) -> training -> calibration -> report -> artifact."""

from __future__ import annotations

import json
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import yaml

from .. import synth
from .._memory import StagePeaks
from .._preflight import preflight
from ..config import Config, budget_seconds, load_config
from ..data import exclude_groups, held_out_overlap, load_rows, row_hash, rows_hash, split_rows
from ..errors import AssayError
from ..evaluator._artifact import CONFIG_FILE, INFO_FILE, SPLIT_FILE
from ..providers import ProviderError, answer_counts, provider_from_config
from ..report import Report, evaluate, write_report
from ._calibrate import MIN_ROWS, smoothed_prior
from ._fit import fit_and_select, out_of_fold
from ._loop import Cancelled

Status = Callable[[str, "float | None", str], None]


@dataclass
class TrainResult:
    """What ``train`` made: the artifact folder, the held-out report and the loaded evaluator."""

    artifact_dir: Path
    report: dict[str, Any]
    evaluator: Any
    training: dict[str, Any] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)


def _check_output(out: Path, data_dir: Path | None = None) -> None:
    """The output may be new, empty, an earlier artifact, or hold only what `assay generate` wrote
    for this config (its data folder): `generate` then `train` works with the defaults."""
    if not out.exists():
        return
    if out.is_dir():
        others = [p for p in out.iterdir() if data_dir is None or p.resolve() != data_dir.resolve()]
        if not others or (out / INFO_FILE).exists():
            return
    raise AssayError("an empty folder or an earlier assay artifact for the output", f"{out} holds other files",
                     "choose another output (--output or `output:` in the config)", code="output_exists")


def _dedupe(rows: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], int]:
    seen, out = set(), []
    for r in rows:
        key = (row_hash(r), r.get("label"))
        if key not in seen:
            seen.add(key)
            out.append(r)
    return out, len(rows) - len(out)


def _generate(cfg: Config, seeds: list[dict[str, Any]], held_out: list[dict[str, Any]], status: Status):
    result = synth.generate_training_set(cfg, seeds, held_out, on_status=status)  # read at call time: tests stand in
    rows = getattr(result, "rows", result)
    details = result.summary() if hasattr(result, "summary") else (
        result.to_dict() if hasattr(result, "to_dict") else {})
    return list(rows), details if isinstance(details, dict) else {}


def _target_prior(cfg: Config, metric: Any, seeds: list[dict[str, Any]]) -> dict[str, float] | None:
    """The label mix scored rows are expected to have (see train.prior); None: the training rows' own."""
    prior = cfg.train.prior
    if isinstance(prior, dict):
        unknown = sorted(set(prior) - set(metric.labels))
        if unknown or not any(v > 0 for v in prior.values()):
            raise AssayError(f"train.prior shares for the labels {list(metric.labels)}", f"{prior}",
                             "give a positive share per label, or use prior: seeds", code="invalid_config")
        return {lab: float(prior.get(lab, 0.0)) for lab in metric.labels}
    if prior == "seeds" and seeds:
        return smoothed_prior([r["label"] for r in seeds], metric.labels)
    return None


def _calibration_split(rows: list[dict[str, Any]], fraction: float, seed: int, group_by: str | None = None):
    """(rows to train on, rows to calibrate on): stratified, disjoint by group (``data.group_by``)."""
    if fraction <= 0 or round(fraction * len(rows)) < MIN_ROWS:
        return rows, []
    s = split_rows(rows, fraction, seed, group_by=group_by)
    return s.held_out, s.seeds


def _measure_judge(cfg: Config, metric: Any, held_out: list[dict[str, Any]]) -> tuple[Any, dict[str, Any]]:
    """The teacher (``judge:``) on the held-out rows, for the report's human vs judge vs student.

    Returns per-row probabilities when the judge gave them for every row, else its labels
    (None where unanswered, counted by the report), and a summary for the artifact.
    """
    if cfg.judge is None:
        return None, {}

    judge = provider_from_config(cfg.judge, cfg.base_dir)
    try:
        judgments = judge.judge_many(metric, held_out)
    except ProviderError as exc:  # fatal: a bad key or an unknown model
        raise AssayError(exc.expected, exc.found, f"{exc.fix} (judge: in the config)",
                         code="provider_error") from None
    labels = list(metric.labels)
    info = {"model": judge.id, "rows": len(judgments), **answer_counts(judgments), "provider": judge.stats.to_dict()}
    if judgments and all(j.ok and j.probabilities for j in judgments):
        return [[j.probabilities.get(lab, 0.0) for lab in labels] for j in judgments], info  # type: ignore[union-attr]
    return [j.label for j in judgments], info


def _evaluate(evaluator: Any, held_out: list[dict[str, Any]], train_rows: list[dict[str, Any]], cfg: Config,
              judge: Any = None, speed_seconds: float | None = None):
    extra = {"judge": judge} if judge is not None else None
    return evaluate(evaluator, held_out, train_rows=train_rows, config=cfg.report, extra_systems=extra,
                    speed_seconds=speed_seconds)


def _report_model(report: dict[str, Any]) -> Any:
    """The report as :class:`assay.report.Report` (its ``summary()`` is evaluator.json's ``report_summary``;
    the model card shows its figures)."""

    return Report.from_dict(report)


def _resolved_config(cfg: Config, out: Path) -> dict[str, Any]:
    d = cfg.to_dict()
    for key in ("test_set", "train_set"):
        if d["data"].get(key):
            d["data"][key] = str(cfg.path(d["data"][key]).resolve())
    d["data"]["extra_train_sets"] = [str(cfg.path(x).resolve()) for x in cfg.data.extra_train_sets]
    if isinstance(d["metric"], str) and d["metric"].endswith((".yaml", ".yml", ".json")):
        d["metric"] = cfg.metric_spec().to_dict()
    d["output"] = str(out.resolve())
    return d


# of train.budget kept for calibration, the held-out report and saving: 0.3 since a pooled winner scores the held-out
# rows and the speed measurement with the fine-tuned network too (0.2 let `--budget 150` on the example run 187 s)
REPORT_SHARE = 0.3


def train(config: Config | str | Path, *, progress: bool = True, on_status: Status | None = None,
          should_stop: Callable[[], bool] | None = None) -> TrainResult:
    """Run a whole training job from a config (object or YAML path); returns the artifact.

    ``train.budget`` bounds the wall-clock time: the neural candidate trains only until
    ``(1 - REPORT_SHARE)`` of it has passed since the start (:func:`fit_and_select`), and the report's
    speed measurement takes at most what is left. The peak memory of each stage is measured
    (:class:`assay._memory.StagePeaks`) and written to the report and ``evaluator.json``."""
    cfg = config if isinstance(config, Config) else load_config(config)
    started = time.perf_counter()
    budget = budget_seconds(cfg.train.budget)
    peaks = StagePeaks()
    status: Status = peaks.wrap(on_status or (lambda stage, fraction, message: None))
    try:
        return _train(cfg, status, progress=progress, should_stop=should_stop, peaks=peaks,
                      started=started, budget=budget)
    finally:
        peaks.stop()


def _count_empty(counts: dict[str, Any], empty: dict[str, int]) -> None:
    """Rows kept with an empty field (read as empty text), per field, in the report's counts."""
    if empty:
        into = counts.setdefault("empty_fields", {})
        for f, n in empty.items():
            into[f] = into.get(f, 0) + n


def _training_rows(cfg: Config, metric: Any, test: Any, split: Any, status: Status,
                   counts: dict[str, Any], notes: list[str]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Every training row (uploaded, extra, seeds, generated), leaked and duplicate rows dropped."""
    d = cfg.data
    train_rows: list[dict[str, Any]] = []
    if d.train_set:
        tv = load_rows(cfg.path(d.train_set), metric, columns=d.columns, label_map=d.label_map, limit=d.limit,
                       encoding=d.encoding)
        train_rows += tv.rows
        counts["train_set"] = len(tv.rows)
        notes += tv.warnings
        _count_empty(counts, tv.empty_fields)
    for extra in d.extra_train_sets:  # canonical labeled rows (e.g. reviewed verdicts): training only
        xv = load_rows(cfg.path(extra), metric, encoding=d.encoding)
        train_rows += xv.rows
        counts["extra_train_sets"] = counts.get("extra_train_sets", 0) + len(xv.rows)
        notes += xv.warnings
    if d.train_on_seeds:
        train_rows += split.seeds
    generation: dict[str, Any] = {}
    if cfg.generate:
        status("generating", 0.0, "generating training rows from the seeds")
        generated, generation = _generate(cfg, split.seeds, split.held_out, status)
        counts["generated"] = len(generated)
        train_rows += generated
    if not d.train_set and not d.extra_train_sets and not cfg.generate:
        if not d.train_on_seeds:
            raise AssayError("training rows: data.train_set, generate:, or train_on_seeds: true",
                             "none of them", "set data.train_set or data.train_on_seeds: true", code="invalid_config")
        msg = f"no train_set and no generate: training on the {len(split.seeds)} seed rows alone"
        warnings.warn(msg, stacklevel=4)  # the caller of train()
        notes.append(msg)
    # training rows that repeat a held-out row, or share its group (data.group_by), are dropped
    train_rows, counts["leaked_dropped"] = exclude_groups(train_rows, split.held_out, split.group_by)
    if counts["leaked_dropped"]:
        notes.append(f"{counts['leaked_dropped']} training rows repeat a held-out row or share its group "
                     f"({split.group_by or 'content'}) and were dropped")
    counts["held_out_sharing_a_group"] = held_out_overlap(train_rows, split.held_out, split.group_by)[
        "held_out_rows_sharing_a_group"]
    train_rows, counts["duplicates_dropped"] = _dedupe(train_rows)
    if not train_rows:
        raise AssayError("training rows", "none left", "add data.train_set rows or more labeled rows",
                         code="too_few_rows")
    return train_rows, generation


def _data_info(cfg: Config, test: Any, split: Any, train_rows: list[dict[str, Any]], cal_rows: list[dict[str, Any]],
               counts: dict[str, Any], notes: list[str], generation: dict[str, Any], metric: Any) -> dict[str, Any]:
    d = cfg.data
    info = {
        "test_set": str(cfg.path(d.test_set)),
        "train_set": str(cfg.path(d.train_set)) if d.train_set else None,
        "extra_train_sets": [str(cfg.path(x)) for x in d.extra_train_sets],
        "counts": counts,
        "label_counts": {"test_set": test.label_counts,
                         "train_rows": {lab: sum(r["label"] == lab for r in train_rows) for lab in metric.labels}},
        "hashes": {"seeds": rows_hash(split.seeds), "held_out": rows_hash(split.held_out),
                   "train_rows": rows_hash(train_rows), "calibration_rows": rows_hash(cal_rows)},
        "seed_fraction": d.seed_fraction,
        "split_seed": d.split_seed,
        "group_by": split.group_by,  # rows sharing it stay on one side (None: each distinct row alone)
        "notes": notes,
    }
    if generation:
        info["generation"] = generation
    return info


def _train(cfg: Config, status: Status, *, progress: bool, should_stop: Callable[[], bool] | None,
           peaks: StagePeaks, started: float, budget: float | None) -> TrainResult:
    metric = cfg.metric_spec()
    out = cfg.output_dir()
    _check_output(out, cfg.data_dir() if cfg.generate else None)
    status("preparing", 0.0, "reading the labeled test set")
    prepared = cfg.prepare_test_set(metric)  # groups on one side of the seed / held-out split
    test, split = prepared.test, prepared.split
    if not split.held_out:
        raise AssayError("labeled rows left for the held-out evaluation", f"{len(test.rows)} rows, all seeds",
                         "add labeled rows to data.test_set", code="too_few_rows")
    notes: list[str] = list(test.warnings)
    notes += preflight(cfg, test)  # rows per class, base model, providers: before anything is spent
    counts: dict[str, Any] = {"test_set": len(test.rows), "seeds": len(split.seeds), "held_out": len(split.held_out)}
    _count_empty(counts, test.empty_fields)
    train_rows, generation = _training_rows(cfg, metric, test, split, status, counts, notes)
    fit_rows, cal_rows = _calibration_split(train_rows, cfg.train.calibration_fraction, cfg.train.seed,
                                          split.group_by)
    counts.update(train_rows=len(train_rows), fit_rows=len(fit_rows), calibration_rows=len(cal_rows))

    # --- candidates on the training rows only; the winner is calibrated and shipped ---------------
    deadline = started + budget * (1 - REPORT_SHARE) if budget is not None else None
    ev, stats, cal, selection = fit_and_select(
        cfg, metric, train_rows, fit_rows, cal_rows, _target_prior(cfg, metric, split.seeds),
        group_by=split.group_by, progress=progress, status=status, should_stop=should_stop, deadline=deadline)
    if (ev.family in ("linear", "hybrid") and "encoder" not in ev.model.blocks  # refit on every row, out of fold
            or out_of_fold(stats)):  # the encoder cross-validated: trained on every row too
        counts.update(fit_rows=len(train_rows), calibration_rows=0)
        cal_rows = []
    notes += [f"calibration: {w}" for w in cal.warnings]
    data_info = _data_info(cfg, test, split, train_rows, cal_rows, counts, notes, generation, metric)
    ev.info.update({"training": {**cfg.train.model_dump(mode="json"), **stats},
                    "data": data_info, "config": _resolved_config(cfg, out)})
    if selection is not None:
        ev.info["selection"] = selection
    if should_stop is not None and should_stop():

        raise Cancelled("stopped before evaluation")

    # --- report, artifact ---------------------------------------------------------------------------
    status("evaluating", 0.0, f"evaluating on {len(split.held_out)} held-out rows")
    judge_system, judge_info = None, {}
    if cfg.judge is not None:
        status("evaluating", 0.0, f"measuring the judge {cfg.judge.model} on the held-out rows")
        judge_system, judge_info = _measure_judge(cfg, metric, split.held_out)
        ev.info["judge"] = judge_info
    speed_seconds = max(5.0, started + budget - time.perf_counter()) / 2 if budget is not None else None
    report = _evaluate(ev, split.held_out, train_rows, cfg, judge_system, speed_seconds)
    status("saving", 0.0, f"writing the artifact to {out}")
    resources = {"seconds": round(time.perf_counter() - started, 1), "budget_seconds": budget,
                 "peak_rss_mib": peaks.snapshot()}
    ev.info["training"]["resources"] = resources
    _save(ev, out, report, selection, notes, split, train_rows, counts, cfg, resources)
    status("saving", 1.0, "done")
    return TrainResult(artifact_dir=out, report=report, evaluator=ev, training=stats, data=data_info)


def _save(ev: Any, out: Path, report: dict[str, Any], selection: dict[str, Any] | None, notes: list[str], split: Any,
          train_rows: list[dict[str, Any]], counts: dict[str, Any], cfg: Config, resources: dict[str, Any]) -> None:
    """The report, resolved config, split manifest and the evaluator's weights in ``out``."""
    d = cfg.data
    out.mkdir(parents=True, exist_ok=True)
    model = None
    if report:

        if selection is not None:
            report["selection"] = selection
        report["notes"] = list(notes)  # the seeds-only notice, calibration warnings, dropped rows ...
        report["resources"] = resources
        write_report(report, out)
        model = _report_model(report)
        ev.info["report_summary"] = model.summary()
    (out / CONFIG_FILE).write_text(yaml.safe_dump(ev.info["config"], sort_keys=False, allow_unicode=True))
    manifest = {**split.manifest(), "trained_on": sorted({row_hash(r) for r in train_rows}),  # for `assay evaluate`
                "seed_fraction": d.seed_fraction, "split_seed": d.split_seed,
                "counts": counts}
    (out / SPLIT_FILE).write_text(json.dumps(manifest, indent=1))
    ev.save_pretrained(out, model)
